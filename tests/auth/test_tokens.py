"""Bearer-token validation against a real OIDC provider, and forged tokens that must be refused."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest
from pydantic import ValidationError

from tesk.auth import ANONYMOUS, Authenticator, AuthSettings, ProviderUnavailable, Unauthenticated
from tests.auth.conftest import (
    AUDIENCE,
    INTROSPECTOR,
    OPAQUE_RESOURCE,
    USERS,
    OidcProvider,
    SigningKey,
    b64url,
    entitlement,
)
from tests.conftest import free_port

pytestmark = pytest.mark.oidc


class Counting:
    """An httpx client that counts requests per path, to see what the authenticator asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []

        async def record(request: httpx.Request) -> None:
            self.paths.append(request.url.path)

        self.client = httpx.AsyncClient(timeout=5, event_hooks={"request": [record]})

    def count(self, suffix: str) -> int:
        return sum(1 for path in self.paths if path.endswith(suffix))


def settings(issuer: str, **extra: Any) -> AuthSettings:
    values: dict[str, Any] = {"profile": "auth", "issuer": issuer, "audience": AUDIENCE}
    values.update(extra)
    return AuthSettings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def refused(auth: Authenticator, headers: dict[str, str]) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate(headers)
    assert caught.value.status_code == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    return caught.value.message


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def auth(oidc_provider: OidcProvider, counting: Counting) -> Authenticator:
    return Authenticator(
        settings(oidc_provider.url),
        needed_claims=frozenset({"eduperson_entitlement"}),
        client=counting.client,
    )


async def test_provider_issued_jwt_gives_user_and_groups(
    auth: Authenticator, user_tokens: dict[str, str]
) -> None:
    principal = await auth.authenticate(bearer(user_tokens["heidi"]))
    assert principal.user_id == "heidi"
    assert principal.groups == frozenset(USERS["heidi"])
    assert principal.authenticated


async def test_keys_are_fetched_once_for_many_tokens(
    auth: Authenticator, counting: Counting, user_tokens: dict[str, str]
) -> None:
    for token in user_tokens.values():
        await auth.authenticate(bearer(token))
    assert counting.count("/jwks") == 1
    assert counting.count("/.well-known/openid-configuration") == 1


async def test_no_header(auth: Authenticator) -> None:
    assert "Authorization: Bearer" in await refused(auth, {})


@pytest.mark.parametrize(
    "value",
    ["Bearer", "Bearer ", "Bearer a b", "Basic Tm9uZTpOb25l", "bearer\tx\ty", "Token abc", "Bearer ä"],
)
async def test_malformed_header(auth: Authenticator, value: str) -> None:
    message = await refused(auth, {"authorization": value})
    assert "Bearer" in message


async def test_jwt_shaped_garbage(auth: Authenticator) -> None:
    assert "cannot be decoded" in await refused(auth, bearer("abc.def.ghi"))


async def test_expired(auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey) -> None:
    now = int(time.time())
    token = provider_key.sign(oidc_provider.claims(iat=now - 600, exp=now - 120))
    assert "expired" in await refused(auth, bearer(token))


async def test_expiry_within_leeway_passes(
    auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    token = provider_key.sign(oidc_provider.claims(exp=int(time.time()) - 5))
    assert (await auth.authenticate(bearer(token))).user_id == "alice"


async def test_not_yet_valid(
    auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    token = provider_key.sign(oidc_provider.claims(nbf=int(time.time()) + 600))
    assert "not valid yet" in await refused(auth, bearer(token))


async def test_missing_exp(
    auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    token = provider_key.sign(oidc_provider.claims(exp=None))
    assert "'exp'" in await refused(auth, bearer(token))


async def test_wrong_issuer(
    auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    token = provider_key.sign(oidc_provider.claims(iss="https://evil.example"))
    assert "another issuer" in await refused(auth, bearer(token))


async def test_wrong_audience_from_the_provider(auth: Authenticator, oidc_provider: OidcProvider) -> None:
    token = oidc_provider.token("alice", resource="urn:other:service")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "urn:other:service"
    assert AUDIENCE in await refused(auth, bearer(token))


async def test_audience_unchecked_when_not_configured(
    oidc_provider: OidcProvider, counting: Counting
) -> None:
    auth = Authenticator(settings(oidc_provider.url, audience=None), client=counting.client)
    token = oidc_provider.token("alice", resource="urn:other:service")
    assert (await auth.authenticate(bearer(token))).user_id == "alice"


async def test_bad_signature(
    auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    forger = SigningKey(provider_key.kid)  # same kid, another key
    assert "signature" in await refused(auth, bearer(forger.sign(oidc_provider.claims())))


async def test_tampered_payload(auth: Authenticator, user_tokens: dict[str, str]) -> None:
    header, payload, signature = user_tokens["alice"].split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "dave"
    forged = ".".join((header, b64url(json.dumps(claims).encode()), signature))
    assert "signature" in await refused(auth, bearer(forged))


async def test_alg_none(auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey) -> None:
    token = jwt.encode(oidc_provider.claims(), cast(Any, None), algorithm="none", headers={"kid": provider_key.kid})
    assert "'none'" in await refused(auth, bearer(token))


async def test_hs256_signed_with_the_public_key(
    auth: Authenticator, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    """The classic key-confusion forgery: HMAC keyed with the issuer's public key."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": provider_key.kid}).encode())
    payload = b64url(json.dumps(oidc_provider.claims(sub="dave")).encode())
    mac = hmac.new(provider_key.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert "'HS256'" in await refused(auth, bearer(f"{header}.{payload}.{b64url(mac)}"))


async def test_hmac_can_never_be_allowed() -> None:
    with pytest.raises(ValidationError, match="only asymmetric"):
        AuthSettings(profile="auth", issuer="http://127.0.0.1:1", algorithms="RS256,HS256")  # type: ignore[arg-type]


async def test_unknown_kid_is_refused_without_hammering_the_provider(
    auth: Authenticator, counting: Counting, oidc_provider: OidcProvider, user_tokens: dict[str, str]
) -> None:
    await auth.authenticate(bearer(user_tokens["alice"]))
    stranger = SigningKey("unknown")
    for n in range(5):
        assert "unknown-" in await refused(
            auth, bearer(stranger.sign(oidc_provider.claims(), kid=f"unknown-{n}"))
        )
    assert counting.count("/jwks") == 1, "refetches of the JWKS must be bounded by the refresh interval"


async def test_key_rotation(tmp_path: Path, counting: Counting) -> None:
    """The provider restarts with a new key: its first token (unknown kid) triggers one JWKS refetch."""
    old_key, new_key = SigningKey("rotation-old"), SigningKey("rotation-new")
    provider = OidcProvider(tmp_path, [old_key])
    provider.start()
    try:
        auth = Authenticator(
            settings(provider.url, jwks_refresh_interval_seconds=0.2), client=counting.client
        )
        assert (await auth.authenticate(bearer(provider.token("alice")))).user_id == "alice"
        provider.stop()
        provider.keys = [new_key]
        provider.start()
        await asyncio.sleep(0.2)
        rotated = provider.token("bob")
        assert jwt.get_unverified_header(rotated)["kid"] == "rotation-new"
        assert (await auth.authenticate(bearer(rotated))).user_id == "bob"
        assert counting.count("/jwks") == 2
        # Tokens signed with the retired key no longer verify once the JWKS dropped it.
        retired = old_key.sign(provider.claims())
        await asyncio.sleep(0.2)
        assert "rotation-old" in await refused(auth, bearer(retired))
    finally:
        provider.stop()


async def test_opaque_token_via_introspection(oidc_provider: OidcProvider, counting: Counting) -> None:
    auth = Authenticator(
        settings(
            oidc_provider.url,
            audience=f"{AUDIENCE},{OPAQUE_RESOURCE}",
            client_id=INTROSPECTOR[0],
            client_secret=INTROSPECTOR[1],
        ),
        needed_claims=frozenset({"eduperson_entitlement"}),
        client=counting.client,
    )
    token = oidc_provider.token("carol", resource=OPAQUE_RESOURCE)
    assert token.count(".") == 0
    for _ in range(3):
        principal = await auth.authenticate(bearer(token))
        assert principal.user_id == "carol"
        assert principal.groups == {entitlement("EBI", "SDO", "ADMIN")}
    assert counting.count("/token/introspection") == 1, "introspection answers are cached"
    assert "not active" in await refused(auth, bearer("not-a-token-the-provider-issued"))


async def test_opaque_token_audience_checked(oidc_provider: OidcProvider, counting: Counting) -> None:
    auth = Authenticator(
        settings(oidc_provider.url, client_id=INTROSPECTOR[0], client_secret=INTROSPECTOR[1]),
        client=counting.client,
    )
    assert AUDIENCE in await refused(auth, bearer(oidc_provider.token("alice", resource=OPAQUE_RESOURCE)))


async def test_introspection_with_wrong_credentials_is_503(
    oidc_provider: OidcProvider, counting: Counting
) -> None:
    auth = Authenticator(
        settings(oidc_provider.url, client_id=INTROSPECTOR[0], client_secret="wrong"), client=counting.client
    )
    with pytest.raises(ProviderUnavailable, match="TESK_OIDC_CLIENT_SECRET"):
        await auth.authenticate(bearer(oidc_provider.token("alice", resource=OPAQUE_RESOURCE)))


async def test_provider_down_is_503_never_a_pass(provider_key: SigningKey, counting: Counting) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    auth = Authenticator(settings(down), client=counting.client)
    token = provider_key.sign({"iss": down, "sub": "alice", "aud": AUDIENCE, "exp": int(time.time()) + 60})
    with pytest.raises(ProviderUnavailable) as caught:
        await auth.authenticate(bearer(token))
    assert caught.value.status_code == 503
    assert down in caught.value.message


async def test_provider_going_down(tmp_path: Path, counting: Counting) -> None:
    """Cached keys keep verifying JWTs; what needs the provider (new kid, introspection) gets 503."""
    key = SigningKey("down-key")
    provider = OidcProvider(tmp_path, [key])
    provider.start()
    auth = Authenticator(
        settings(
            provider.url,
            audience=f"{AUDIENCE},{OPAQUE_RESOURCE}",
            client_id=INTROSPECTOR[0],
            client_secret=INTROSPECTOR[1],
            jwks_refresh_interval_seconds=0,
        ),
        client=counting.client,
    )
    try:
        opaque = provider.token("alice", resource=OPAQUE_RESOURCE)
        await auth.authenticate(bearer(provider.token("alice")))
    finally:
        provider.stop()
    assert (await auth.authenticate(bearer(key.sign(provider.claims(sub="bob"))))).user_id == "bob"
    with pytest.raises(ProviderUnavailable):
        await auth.authenticate(bearer(opaque))
    with pytest.raises(ProviderUnavailable):
        await auth.authenticate(bearer(SigningKey("new-kid").sign(provider.claims())))


class Userinfo:
    """A userinfo endpoint on 127.0.0.1 that knows one token (for the groups-from-userinfo path,
    which the npm provider cannot show: it refuses JWT access tokens at its userinfo endpoint)."""

    def __init__(self, token: str, claims: dict[str, Any]) -> None:
        known, answer = token, json.dumps(claims).encode()
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.calls += 1
                ok = self.headers.get("Authorization") == f"Bearer {known}"
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer if ok else b'{"error":"invalid_token"}')

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/userinfo"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def userinfo_for() -> Iterator[Any]:
    servers: list[Userinfo] = []

    def start(token: str, claims: dict[str, Any]) -> Userinfo:
        servers.append(Userinfo(token, claims))
        return servers[-1]

    yield start
    for server in servers:
        server.server.shutdown()
        server.server.server_close()


async def test_groups_from_userinfo_when_the_token_lacks_them(
    oidc_provider: OidcProvider, provider_key: SigningKey, counting: Counting, userinfo_for: Any
) -> None:
    token = provider_key.sign(oidc_provider.claims(sub="erin"))
    userinfo = userinfo_for(token, {"sub": "erin", "eduperson_entitlement": [entitlement("EBI", "SDO")]})
    auth = Authenticator(
        settings(oidc_provider.url, userinfo_uri=userinfo.url),
        needed_claims=frozenset({"eduperson_entitlement"}),
        client=counting.client,
    )
    for _ in range(2):
        assert (await auth.authenticate(bearer(token))).groups == {entitlement("EBI", "SDO")}
    assert userinfo.calls == 1


async def test_userinfo_for_another_subject_is_ignored(
    oidc_provider: OidcProvider, provider_key: SigningKey, counting: Counting, userinfo_for: Any
) -> None:
    token = provider_key.sign(oidc_provider.claims(sub="erin"))
    userinfo = userinfo_for(token, {"sub": "dave", "eduperson_entitlement": [entitlement("EBI", "ADMIN")]})
    auth = Authenticator(
        settings(oidc_provider.url, userinfo_uri=userinfo.url),
        needed_claims=frozenset({"eduperson_entitlement"}),
        client=counting.client,
    )
    assert (await auth.authenticate(bearer(token))).groups == frozenset()


async def test_seed_style_userinfo_only(counting: Counting, userinfo_for: Any) -> None:
    """The seed's configuration: no issuer, every token checked at SECURITY_OAUTH2_RESOURCE_USER_INFO_URI."""
    userinfo = userinfo_for("opaque-token-1", {"sub": "alice", "eduperson_entitlement": USERS["alice"]})
    auth = Authenticator(AuthSettings(profile="auth", userinfo_uri=userinfo.url), client=counting.client)
    principal = await auth.authenticate(bearer("opaque-token-1"))
    assert (principal.user_id, principal.groups) == ("alice", frozenset(USERS["alice"]))
    assert "rejected" in await refused(auth, bearer("opaque-token-2"))


async def test_noauth_ignores_authorization_headers() -> None:
    auth = Authenticator(AuthSettings(profile="noauth"))
    for headers in ({}, {"authorization": "Basic Tm9uZTpOb25l"}, {"authorization": "Bearer garbage"}):
        assert await auth.authenticate(headers) == ANONYMOUS
    assert ANONYMOUS.user_id == "anonymousUser"


async def test_tokens_never_reach_logs_or_messages(
    oidc_provider: OidcProvider, provider_key: SigningKey, user_tokens: dict[str, str], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = Authenticator(
        settings(oidc_provider.url, client_id=INTROSPECTOR[0], client_secret=INTROSPECTOR[1])
    )
    tokens = [
        user_tokens["alice"],
        provider_key.sign(oidc_provider.claims(exp=int(time.time()) - 600)),
        "opaque-secret-token",
    ]
    messages = []
    for token in tokens:
        try:
            await auth.authenticate(bearer(token))
        except Unauthenticated as error:
            messages.append(error.message)
    await auth.aclose()
    text = caplog.text + "\n".join(messages)
    for token in tokens:
        assert token not in text
        assert token.split(".")[-1] not in text


@pytest.mark.parametrize(
    ("environment", "profile"),
    [
        ({"SPRING_PROFILES_ACTIVE": "auth"}, "auth"),
        ({"SPRING_PROFILES_ACTIVE": "noauth"}, "noauth"),
        ({"SPRING_PROFILES_ACTIVE": "kubernetes,auth"}, "auth"),
        ({"TESK_AUTH": "auth", "SPRING_PROFILES_ACTIVE": "noauth"}, "auth"),
        ({}, "noauth"),
    ],
)
def test_profile_from_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], profile: str
) -> None:
    monkeypatch.delenv("TESK_AUTH", raising=False)
    monkeypatch.delenv("SPRING_PROFILES_ACTIVE", raising=False)
    monkeypatch.setenv("TESK_OIDC_ISSUER", "https://login.example")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert AuthSettings().profile == profile


def test_auth_without_a_provider_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESK_OIDC_ISSUER", raising=False)
    with pytest.raises(ValidationError, match="TESK_OIDC_ISSUER"):
        AuthSettings(profile="auth")
    with pytest.raises(ValidationError, match="exactly one of 'auth' or 'noauth'"):
        AuthSettings(profile="auth,noauth")  # type: ignore[arg-type]


async def test_opaque_token_via_the_providers_userinfo(
    oidc_provider: OidcProvider, counting: Counting
) -> None:
    """A user's token from the authorization code flow, checked (and its groups read) at userinfo."""
    token = oidc_provider.login(
        "grace",
        client_id="tesk-swagger",
        redirect_uri="http://127.0.0.1:8080/swagger-ui/oauth2-redirect.html",
        authorization_url=f"{oidc_provider.url}/auth",
        token_url=f"{oidc_provider.url}/token",
    )
    auth = Authenticator(settings(oidc_provider.url), client=counting.client)
    principal = await auth.authenticate(bearer(token))
    assert (principal.user_id, principal.groups) == ("grace", frozenset(USERS["grace"]))
    assert counting.count("/me") == 1


async def test_authenticator_works_again_after_aclose(oidc_provider: OidcProvider) -> None:
    """An app may go through its lifespan twice (tests do): the provider connection is made anew."""
    auth = Authenticator(
        settings(
            oidc_provider.url,
            audience=OPAQUE_RESOURCE,
            client_id=INTROSPECTOR[0],
            client_secret=INTROSPECTOR[1],
            token_cache_seconds=0,
        )
    )
    token = oidc_provider.token("bob", resource=OPAQUE_RESOURCE)
    for _ in range(2):
        assert (await auth.authenticate(bearer(token))).user_id == "bob"
        await auth.aclose()


async def test_issuer_with_a_trailing_slash(oidc_provider: OidcProvider, user_tokens: dict[str, str]) -> None:
    """Elixir's issuer is written with a trailing slash; tokens carry what discovery says."""
    auth = Authenticator(settings(oidc_provider.url + "/"))
    assert (await auth.authenticate(bearer(user_tokens["alice"]))).user_id == "alice"
    await auth.aclose()


async def test_discovery_naming_another_issuer_is_a_clear_503(
    oidc_provider: OidcProvider, user_tokens: dict[str, str]
) -> None:
    """The provider's discovery must name the configured issuer (a proxy path or typo shows here)."""
    other = oidc_provider.url.replace("127.0.0.1", "localhost")
    auth = Authenticator(settings(other))
    with pytest.raises(ProviderUnavailable, match="fix TESK_OIDC_ISSUER"):
        await auth.authenticate(bearer(user_tokens["alice"]))
    await auth.aclose()
