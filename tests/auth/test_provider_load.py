"""Junk tokens must not turn tesk into an amplifier against the OIDC provider.

The provider is the real one of the suite; a counting proxy on 127.0.0.1 stands in front of its
userinfo endpoint and records every call that reaches it and how many were in flight at once.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tesk.auth import Authenticator, AuthSettings, ProviderUnavailable, Unauthenticated
from tests.auth.conftest import AUDIENCE, OidcProvider, SigningKey
from tests.auth.test_tokens import Counting, bearer, refused

pytestmark = pytest.mark.oidc


class CountingProxy:
    """Forwards GET to the provider's userinfo endpoint, counting calls and the peak in flight.

    While `stalled`, calls are not forwarded: the proxy answers 401 so slowly (a byte of padding every
    50 ms, so no read timeout fires) that they stay in flight until `release()`.
    """

    def __init__(self, upstream: str) -> None:
        self.hits = 0
        self.in_flight = 0
        self.peak = 0
        self.delay = 0.0
        self.running = threading.Event()
        self.running.set()
        counts = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with counts:
                    outer.hits += 1
                    outer.in_flight += 1
                    outer.peak = max(outer.peak, outer.in_flight)
                counted = True
                try:
                    if outer.running.is_set():
                        time.sleep(outer.delay)
                        answer = httpx.get(upstream, headers={"Authorization": self.headers["Authorization"]})
                        self.send_response(answer.status_code)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(answer.content)))
                        self.end_headers()
                        self.wfile.write(answer.content[:-1])
                        self.wfile.flush()
                        # The call leaves the count before its last byte goes out: once the client has
                        # that byte it may start the next call at once, while this thread (on a loaded
                        # machine) has not yet run its bookkeeping, which then counted one call too many.
                        with counts:
                            outer.in_flight -= 1
                        counted = False
                        self.wfile.write(answer.content[-1:])
                        return
                    self.send_response(401)  # HTTP/1.0 without a length: the body ends when we close
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    while not outer.running.wait(0.05):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    self.wfile.write(b'{"error":"invalid_token"}')
                finally:
                    if counted:
                        with counts:
                            outer.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/me"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stall(self) -> None:
        self.running.clear()

    def release(self) -> None:
        self.running.set()


@pytest.fixture
def proxy(oidc_provider: OidcProvider) -> Iterator[CountingProxy]:
    counting = CountingProxy(f"{oidc_provider.url}/me")
    yield counting
    counting.release()
    counting.server.shutdown()
    counting.server.server_close()


def authenticator(provider: OidcProvider, proxy: CountingProxy, counting: Counting, **extra: Any) -> Authenticator:
    values: dict[str, Any] = {
        "profile": "auth",
        "issuer": provider.url,
        "audience": AUDIENCE,
        "userinfo_uri": proxy.url,
    }
    values.update(extra)
    return Authenticator(AuthSettings(**values), client=counting.client)


def junk() -> str:
    """An opaque token of the provider's own shape (43 base64url characters) that it never issued."""
    return secrets.token_urlsafe(32)


async def refuse_all(auth: Authenticator, tokens: list[str]) -> list[BaseException | None]:
    async def one(token: str) -> BaseException | None:
        try:
            await auth.authenticate(bearer(token))
        except (Unauthenticated, ProviderUnavailable) as error:
            return error
        return None

    return list(await asyncio.gather(*(one(token) for token in tokens)))


@pytest.fixture
def counting() -> Counting:
    return Counting()


async def test_distinct_junk_tokens_never_exceed_the_cap_and_are_asked_about_once(
    oidc_provider: OidcProvider, proxy: CountingProxy, counting: Counting
) -> None:
    proxy.delay = 0.05  # a provider with some latency, so calls overlap
    # 40 calls through 3 slots: a loaded machine must not turn the wait for a slot into a 503 here
    auth = authenticator(oidc_provider, proxy, counting, max_concurrent_calls=3, http_timeout_seconds=60)
    tokens = [junk() for _ in range(40)]
    errors = await refuse_all(auth, tokens)
    assert all(isinstance(e, Unauthenticated) and "rejected" in e.message for e in errors), errors
    assert proxy.hits == 40
    assert proxy.peak <= 3, f"{proxy.peak} calls were in flight at once; the cap is 3"
    errors = await refuse_all(auth, tokens * 3)
    assert all(isinstance(e, Unauthenticated) for e in errors)
    assert proxy.hits == 40, "refused tokens are remembered: sending them again must not reach the provider"


async def test_one_junk_token_sent_by_many_requests_reaches_the_provider_once(
    oidc_provider: OidcProvider, proxy: CountingProxy, counting: Counting
) -> None:
    proxy.delay = 0.05
    auth = authenticator(oidc_provider, proxy, counting, token_cache_seconds=0)
    token = junk()
    errors = await refuse_all(auth, [token] * 50)
    assert all(isinstance(e, Unauthenticated) and "rejected" in e.message for e in errors)
    for _ in range(10):
        assert "rejected" in await refused(auth, bearer(token))
    assert proxy.hits == 1, "concurrent requests share one call, later ones hit the refusal cache"


async def test_refusal_cache_can_be_turned_off(
    oidc_provider: OidcProvider, proxy: CountingProxy, counting: Counting
) -> None:
    auth = authenticator(oidc_provider, proxy, counting, refusal_cache_seconds=0)
    token = junk()
    for _ in range(3):
        await refused(auth, bearer(token))
    assert proxy.hits == 3


async def test_a_stalled_provider_holds_at_most_the_cap_and_the_rest_get_503(
    oidc_provider: OidcProvider, proxy: CountingProxy, counting: Counting
) -> None:
    auth = authenticator(oidc_provider, proxy, counting, max_concurrent_calls=2, http_timeout_seconds=0.5)
    await auth.metadata()  # discovery is done; what follows is only userinfo
    proxy.stall()
    held = asyncio.gather(*(auth.authenticate(bearer(junk())) for _ in range(2)), return_exceptions=True)
    while proxy.in_flight < 2:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    waiting = await refuse_all(auth, [junk() for _ in range(6)])
    assert time.monotonic() - started < 3
    for error in waiting:
        assert isinstance(error, ProviderUnavailable), error
        assert error.status_code == 503 and error.headers["Retry-After"]
        assert "Too many token checks" in error.message
    assert proxy.hits == 2, "checks that found no free slot must not reach the provider"
    proxy.release()
    assert all(isinstance(e, Unauthenticated) for e in await held)


async def test_a_1_mb_token_is_refused_without_any_provider_call(
    oidc_provider: OidcProvider, proxy: CountingProxy, counting: Counting
) -> None:
    auth = authenticator(oidc_provider, proxy, counting)
    message = await refused(auth, bearer("a" * 1024 * 1024))
    assert "TESK_OIDC_MAX_TOKEN_BYTES" in message and "8192" in message
    assert message.count("a" * 20) == 0, "the token must not be echoed"
    assert counting.paths == [] and proxy.hits == 0


async def test_the_token_size_bound_is_exact(
    oidc_provider: OidcProvider, proxy: CountingProxy, counting: Counting
) -> None:
    auth = authenticator(oidc_provider, proxy, counting, max_token_bytes=64)
    assert "rejected" in await refused(auth, bearer("a" * 64))
    assert "at most 64 bytes" in await refused(auth, bearer("a" * 65))
    assert proxy.hits == 1


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_numeric_date_claims_must_be_json_numbers(
    oidc_provider: OidcProvider, provider_key: SigningKey, counting: Counting, claim: str
) -> None:
    auth = Authenticator(
        AuthSettings(profile="auth", issuer=oidc_provider.url, audience=AUDIENCE), client=counting.client
    )
    now = int(time.time())
    good = oidc_provider.claims()
    assert (await auth.authenticate(bearer(provider_key.sign(good)))).user_id == "alice"
    value = {"exp": now + 300, "nbf": now - 10, "iat": now - 10}[claim]
    for bad in (str(value), True, [value]):
        token = provider_key.sign(oidc_provider.claims(**{claim: bad}))
        message = await refused(auth, bearer(token))
        assert repr(claim) in message or f"({claim})" in message, message
    await auth.aclose()
