"""Issue 7: what checking a bearer token costs, against a real OIDC provider (npm oidc-provider).

(a) a JWT checked locally: first sight of each token (signature verified, JWKS cached), and the same
    token again (answered from the per-token cache)   vs the seed's way: one userinfo call per request
(b) an opaque token, introspection answer cached    vs the same with the cache off
(c) GET /tasks/{id} through `tesk serve` with auth  vs the same server without auth (sequential requests)

Usage: .venv/bin/python bench/auth.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from bench._common import tesk_server
from tesk.auth import Authenticator, AuthSettings
from tests.auth.conftest import INTROSPECTOR, OPAQUE_RESOURCE, OidcProvider, SigningKey


async def per_call(n: int, call: Callable[[], Awaitable[object]]) -> float:
    """Microseconds per call, after one warm-up call."""
    await call()
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1e6


async def token_checks(provider: OidcProvider, key: SigningKey, n: int) -> None:
    jwt_token = provider.token("alice")
    fresh = iter([f"Bearer {key.sign(provider.claims(jti=str(i)))}" for i in range(n + 1)])
    user_token = provider.login(
        "alice",
        client_id="tesk-swagger",
        redirect_uri="http://127.0.0.1/swagger-ui/oauth2-redirect.html",
        authorization_url=f"{provider.url}/auth",
        token_url=f"{provider.url}/token",
    )
    opaque = provider.token("alice", resource=OPAQUE_RESOURCE)
    base = {"profile": "auth", "issuer": provider.url}
    local = Authenticator(AuthSettings(**base))  # type: ignore[arg-type]
    seed = Authenticator(AuthSettings(**base, token_cache_seconds=0))  # type: ignore[arg-type]
    creds = {"client_id": INTROSPECTOR[0], "client_secret": INTROSPECTOR[1]}
    cached = Authenticator(AuthSettings(**base, **creds))  # type: ignore[arg-type]
    uncached = Authenticator(AuthSettings(**base, **creds, token_cache_seconds=0))  # type: ignore[arg-type]
    few = max(50, n // 10)
    first = await per_call(n, lambda: local.authenticate({"authorization": next(fresh)}))
    again = await per_call(n, lambda: local.authenticate({"authorization": f"Bearer {jwt_token}"}))
    theirs = await per_call(few, lambda: seed.authenticate({"authorization": f"Bearer {user_token}"}))
    print(
        f"(a) JWT checked locally: first sight {first:.0f} us, same token again {again:.0f} us vs a userinfo "
        f"call per request (seed) {theirs:.0f} us -> {theirs / first:.0f}x / {theirs / again:.0f}x faster"
    )
    hit = await per_call(n, lambda: cached.authenticate({"authorization": f"Bearer {opaque}"}))
    miss = await per_call(few, lambda: uncached.authenticate({"authorization": f"Bearer {opaque}"}))
    print(
        f"(b) opaque token, introspection cached: {hit:.0f} us/request vs uncached: {miss:.0f} us/request "
        f"-> {miss / hit:.1f}x faster"
    )
    for auth in (local, seed, cached, uncached):
        await auth.aclose()


def get_rate(url: str, headers: dict[str, str], n: int) -> float:
    with httpx.Client(base_url=f"{url}/ga4gh/tes/v1", headers=headers, timeout=10) as tes:
        task_id = tes.post("/tasks", json={"executors": [{"image": "alpine", "command": ["true"]}]}).json()[
            "id"
        ]
        tes.get(f"/tasks/{task_id}")
        start = time.perf_counter()
        for _ in range(n):
            assert tes.get(f"/tasks/{task_id}").status_code == 200
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = SigningKey("bench-key")
        provider = OidcProvider(Path(tmp), [key])
        provider.start()
        try:
            asyncio.run(token_checks(provider, key, args.requests))
            token = provider.token("alice")
            with tesk_server(Path(tmp) / "auth", TESK_AUTH="auth", TESK_OIDC_ISSUER=provider.url) as url:
                with_auth = get_rate(url, {"Authorization": f"Bearer {token}"}, args.requests // 2)
            with tesk_server(Path(tmp) / "noauth", TESK_AUTH="noauth") as url:
                without = get_rate(url, {}, args.requests // 2)
        finally:
            provider.stop()
    print(
        f"(c) GET /tasks/{{id}} sequential: with auth {with_auth:.0f} req/s vs noauth {without:.0f} req/s "
        f"-> {with_auth / without:.2f}x"
    )


if __name__ == "__main__":
    main()
