"""Bearer-token validation against an OIDC provider.

The seed called the provider's userinfo endpoint on every request. Here JWT access tokens are checked
locally (discovery -> JWKS, cached; a token naming an unknown `kid` triggers at most one JWKS refetch
per interval, which covers key rotation without letting forged kids hammer the provider). Opaque
tokens go to RFC 7662 introspection or userinfo, with the answer cached for a short TTL. When the
provider cannot be reached, tokens that need it are refused with 503: an unverifiable token never
passes. Tokens are never logged; cache keys are their SHA-256.

Anyone can send a token, so nothing a caller sends may reach the provider unbounded: tokens longer
than `TESK_OIDC_MAX_TOKEN_BYTES` are refused before any work, a refused token is remembered (by its
hash) and not asked about again, requests carrying the same unknown token share one provider call,
and at most `TESK_OIDC_MAX_CONCURRENT_CALLS` calls are in flight (a check that waits longer than the
HTTP timeout for a slot gets 503).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import httpx
import jwt

from tesk.auth.principal import ANONYMOUS, Principal, ProviderUnavailable, Unauthenticated
from tesk.config.auth import AuthSettings

log = logging.getLogger(__name__)

_BEARER = re.compile(r"^\s*bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$", re.IGNORECASE)
_CACHE_ENTRIES = 10_000
_NUMERIC_DATES = ("exp", "nbf", "iat")
"""RFC 7519 NumericDate claims: JSON numbers. PyJWT would take `"exp": "9999999999"` (it calls int())."""


_Cached = dict[str, Any] | str | Principal


class _TokenCache:
    """What was learnt about a token (principal, provider answer, refusal), per token hash, bounded
    in size and time."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[float, _Cached]] = OrderedDict()

    def get(self, key: str) -> _Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, value: _Cached, exp: Any = None, ttl: float | None = None) -> None:
        """Remember `value` until the TTL (the cache's, or `ttl`) or the token's `exp`, whichever comes first."""
        lifetime = self._ttl if ttl is None else ttl
        if isinstance(exp, int | float):
            lifetime = min(lifetime, exp - time.time())
        if lifetime <= 0:
            return
        self._entries[key] = (time.monotonic() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > _CACHE_ENTRIES:
            self._entries.popitem(last=False)


def bearer_token(headers: Mapping[str, str], max_bytes: int) -> str:
    """The token of an `Authorization: Bearer` header, or a 401 that says what is wrong with it.

    A token over `max_bytes` is refused before the header is even parsed.
    """
    value = headers.get("authorization")
    if value is None:
        raise Unauthenticated(
            "This server requires authentication: send 'Authorization: Bearer <access token>'."
        )
    if len(value) > max_bytes + len("Bearer "):
        raise Unauthenticated(
            f"The Authorization header is {len(value)} characters long; this server accepts bearer tokens of "
            f"at most {max_bytes} bytes (TESK_OIDC_MAX_TOKEN_BYTES)."
        )
    match = _BEARER.match(value)
    if match is None:
        scheme = value.strip().split(" ", 1)[0] if value.strip() else ""
        if scheme.lower() != "bearer":
            raise Unauthenticated(
                f"Authorization scheme {scheme[:20]!r} is not supported: send 'Authorization: Bearer <access token>'."
            )
        raise Unauthenticated(
            "Malformed Authorization header: expected 'Bearer <access token>' with one token."
        )
    return match.group(1)


def _jwt_header(token: str) -> dict[str, Any] | None:
    """The decoded JOSE header when the token has the shape of a JWS, else None (an opaque token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    """Refuse `exp`, `nbf` or `iat` that are not JSON numbers, before PyJWT's int() would coerce them."""
    for name in _NUMERIC_DATES:
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Unauthenticated(
                f"The token's {name!r} claim is a {type(value).__name__}; RFC 7519 makes it a JSON number "
                "(seconds since 1970): get a token from a conforming issuer."
            )


def claim_values(value: Any) -> list[str]:
    """A claim as a list of strings: a JSON list, or a space-separated string (like `scope`)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


class Authenticator:
    """Turns a request's headers into a `Principal`, or raises 401 / 503."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        needed_claims: frozenset[str] = frozenset(),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self._needed_claims = needed_claims
        self._given_client = client
        self._own_client: httpx.AsyncClient | None = None
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._metadata_lock = asyncio.Lock()
        self._jwks: list[dict[str, Any]] = []
        self._jwks_at = float("-inf")
        self._jwks_attempt_at = float("-inf")
        self._jwks_lock = asyncio.Lock()
        self._cache = _TokenCache(settings.token_cache_seconds)
        self._parsed_keys: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._calls = asyncio.Semaphore(settings.max_concurrent_calls)
        self._in_flight: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def aclose(self) -> None:
        """Close our connections; the next request (maybe in another event loop) starts afresh."""
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None
        self._metadata_lock = asyncio.Lock()
        self._jwks_lock = asyncio.Lock()
        self._calls = asyncio.Semaphore(self.settings.max_concurrent_calls)
        self._in_flight.clear()

    @property
    def _client(self) -> httpx.AsyncClient:
        """The given client, or our own, made on first use (so an app can start again after `aclose`)."""
        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            self._own_client = httpx.AsyncClient(timeout=self.settings.http_timeout_seconds)
        return self._own_client

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller of a request. With `noauth`, always the anonymous user; headers are ignored."""
        if self.settings.profile == "noauth":
            return ANONYMOUS
        token = bearer_token(headers, self.settings.max_token_bytes)
        digest = hashlib.sha256(token.encode()).hexdigest()
        known = self._cache.get("p:" + digest)
        if isinstance(known, Principal):
            return known
        header = _jwt_header(token)
        if header is not None and self.settings.issuer:
            claims = await self._verify_jwt(token, header)
        elif token.count(".") == 2 and self.settings.issuer:
            raise Unauthenticated("The bearer token looks like a JWT but its header cannot be decoded.")
        else:
            claims = await self._opaque_claims(token, digest)
        missing = {name for name in self._needed_claims if name not in claims}
        if missing:
            claims = claims | await self._supplement(token, digest, claims, missing)
        principal = self._principal(claims)
        self._cache.put("p:" + digest, principal, claims.get("exp"))
        return principal

    # --- provider metadata and keys -------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        """The issuer's discovery document (empty without an issuer), cached like the JWKS."""
        issuer = self.settings.issuer
        if not issuer:
            return {}
        if (
            self._metadata is not None
            and time.monotonic() - self._metadata_at < self.settings.jwks_cache_seconds
        ):
            return self._metadata
        async with self._metadata_lock:
            fresh = time.monotonic() - self._metadata_at < self.settings.jwks_cache_seconds
            if self._metadata is not None and fresh:
                return self._metadata
            url = issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                document = await self._get_json(url)
            except ProviderUnavailable:
                if self._metadata is not None:
                    log.warning("OIDC discovery at %s failed; keeping the cached document", url)
                    return self._metadata
                raise
            if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
                raise ProviderUnavailable(
                    f"The OIDC discovery document at {url} names issuer {document.get('issuer')!r}, not the "
                    f"configured {issuer!r}: fix TESK_OIDC_ISSUER."
                )
            self._metadata, self._metadata_at = document, time.monotonic()
            return document

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request to the provider, within the cap on calls in flight.

        Waiting for a slot is bounded by the HTTP timeout: past it the check fails with 503 rather than
        queueing without end behind a provider that is slow or flooded.
        """
        try:
            await asyncio.wait_for(self._calls.acquire(), self.settings.http_timeout_seconds)
        except TimeoutError:
            log.warning(
                "%d calls to the OIDC provider are in flight (TESK_OIDC_MAX_CONCURRENT_CALLS); a token check "
                "waited %.1f s for a slot and was refused with 503",
                self.settings.max_concurrent_calls,
                self.settings.http_timeout_seconds,
            )
            raise ProviderUnavailable(
                "Too many token checks are waiting for the OIDC provider; retry later."
            ) from None
        try:
            return await self._client.request(method, url, **kwargs)
        finally:
            self._calls.release()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._call("GET", url, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"Cannot reach the OIDC provider at {url} ({type(error).__name__}) to check the token; retry later."
            ) from error
        if response.status_code != 200:
            raise ProviderUnavailable(
                f"The OIDC provider answered {response.status_code} at {url}; tokens cannot be checked now."
            )
        try:
            document = response.json()
        except ValueError as error:
            raise ProviderUnavailable(f"The OIDC provider sent no JSON at {url}.") from error
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"The OIDC provider sent no JSON object at {url}.")
        return document

    async def _keys(self, *, refresh: bool) -> list[dict[str, Any]]:
        """The issuer's signing keys: cached for the TTL; `refresh` refetches, at most once per interval."""
        if not refresh and self._jwks and time.monotonic() - self._jwks_at < self.settings.jwks_cache_seconds:
            return self._jwks
        async with self._jwks_lock:
            now = time.monotonic()
            if self._jwks and not refresh and now - self._jwks_at < self.settings.jwks_cache_seconds:
                return self._jwks
            if self._jwks and now - self._jwks_attempt_at < self.settings.jwks_refresh_interval_seconds:
                return self._jwks
            self._jwks_attempt_at = now
            metadata = await self.metadata()
            uri = metadata.get("jwks_uri")
            if not uri:
                raise ProviderUnavailable(
                    "The OIDC discovery document has no jwks_uri; JWTs cannot be checked."
                )
            try:
                keys = (await self._get_json(uri)).get("keys")
            except ProviderUnavailable:
                if self._jwks and not refresh:
                    log.warning("Fetching the JWKS at %s failed; keeping the cached keys", uri)
                    return self._jwks
                raise
            if not isinstance(keys, list):
                raise ProviderUnavailable(f"The JWKS at {uri} has no 'keys' list.")
            self._jwks, self._jwks_at = [key for key in keys if isinstance(key, dict)], now
            self._parsed_keys.clear()
            return self._jwks

    @staticmethod
    def _pick(keys: list[dict[str, Any]], kid: str | None, alg: str) -> dict[str, Any] | None:
        candidates = [
            key
            for key in keys
            if key.get("use", "sig") == "sig"
            and key.get("alg", alg) == alg
            and (kid is None or key.get("kid") == kid)
        ]
        return candidates[0] if len(candidates) == 1 else None

    # --- JWT access tokens ----------------------------------------------------------------------

    async def _verify_jwt(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise Unauthenticated(
                f"The token is signed with algorithm {str(alg)[:20]!r}, which this server does not accept "
                f"(accepted: {', '.join(self.settings.algorithms)})."
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("The token's 'kid' header is not a string.")
        jwk = self._pick(await self._keys(refresh=False), kid, alg)
        if jwk is None:
            jwk = self._pick(await self._keys(refresh=True), kid, alg)
        if jwk is None:
            raise Unauthenticated(
                f"The token is signed with key {kid[:64] if kid else kid!r} ({alg}), which the issuer's JWKS "
                "does not hold; "
                "get a new token from the configured issuer."
            )
        metadata = await self.metadata()
        audiences = self.settings.audiences
        try:
            _check_numeric_dates(jwt.decode(token, options={"verify_signature": False}))
            key = self._parsed_keys.get((kid, alg))
            if key is None:
                key = self._parsed_keys[(kid, alg)] = jwt.PyJWK(jwk, algorithm=alg)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audiences or None,
                issuer=metadata.get("issuer", self.settings.issuer),
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": bool(audiences)},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("The token has expired: get a new one.") from error
        except jwt.ImmatureSignatureError as error:
            raise Unauthenticated("The token is not valid yet (its nbf or iat is in the future).") from error
        except jwt.InvalidIssuerError as error:
            raise Unauthenticated(
                f"The token was issued by another issuer; this server accepts {self.settings.issuer!r}."
            ) from error
        except jwt.InvalidAudienceError as error:
            raise Unauthenticated(
                f"The token is not meant for this server: its audience must include {', '.join(audiences)}."
            ) from error
        except jwt.InvalidSignatureError as error:
            raise Unauthenticated("The token's signature does not verify with the issuer's key.") from error
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"The token lacks the {error.claim!r} claim.") from error
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"The token is invalid: {error}.") from error
        return claims

    # --- opaque tokens: introspection or userinfo -----------------------------------------------

    async def _endpoint(self, configured: str | None, discovered: str) -> str | None:
        if configured:
            return configured
        return (await self.metadata()).get(discovered) if self.settings.issuer else None

    async def _opaque_claims(self, token: str, digest: str) -> dict[str, Any]:
        key = "o:" + digest
        cached = self._cache.get(key)
        if isinstance(cached, str):
            raise Unauthenticated(cached)
        if isinstance(cached, dict):
            return cached
        pending = self._in_flight.get(key)
        if pending is None:
            # Requests carrying the same unknown token share one provider call; it runs to its end even
            # if the request that started it goes away, so its answer is cached for the others.
            pending = self._in_flight[key] = asyncio.ensure_future(self._ask_provider(token, key))
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    def _settled(self, key: str, done: asyncio.Future[dict[str, Any]]) -> None:
        self._in_flight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so a check nobody waits for any more is not reported as lost

    async def _ask_provider(self, token: str, key: str) -> dict[str, Any]:
        """An opaque token's claims from introspection or userinfo; a refusal is remembered."""
        introspection = None
        if self.settings.client_id:
            introspection = await self._endpoint(self.settings.introspection_uri, "introspection_endpoint")
        try:
            if introspection:
                claims = await self._introspect(introspection, token)
            else:
                userinfo = await self._endpoint(self.settings.userinfo_uri, "userinfo_endpoint")
                if not userinfo:
                    raise Unauthenticated(
                        "The token is not a JWT, and this server has no introspection or userinfo endpoint "
                        "configured to check opaque tokens."
                    )
                claims = await self._userinfo(userinfo, token)
        except Unauthenticated as refused:
            self._cache.put(key, refused.message, ttl=self.settings.refusal_cache_seconds)
            raise
        self._cache.put(key, claims, claims.get("exp"))
        return claims

    async def _introspect(self, url: str, token: str) -> dict[str, Any]:
        secret = self.settings.client_secret.get_secret_value() if self.settings.client_secret else ""
        try:
            response = await self._call(
                "POST",
                url,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(self.settings.client_id or "", secret),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"Cannot reach the introspection endpoint {url} ({type(error).__name__}); retry later."
            ) from error
        if response.status_code in (401, 403):
            log.error("The introspection endpoint %s refused this server's client credentials", url)
            raise ProviderUnavailable(
                "The provider refused this server's introspection credentials (TESK_OIDC_CLIENT_ID / "
                "TESK_OIDC_CLIENT_SECRET); ask the operator to fix them."
            )
        if response.status_code != 200:
            raise ProviderUnavailable(f"The introspection endpoint {url} answered {response.status_code}.")
        try:
            answer = response.json()
        except ValueError as error:
            raise ProviderUnavailable(f"The introspection endpoint {url} sent no JSON.") from error
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise Unauthenticated("The token is not active (expired, revoked or unknown to the provider).")
        issuer = self.settings.issuer
        if issuer and "iss" in answer and str(answer["iss"]).rstrip("/") != issuer.rstrip("/"):
            raise Unauthenticated(f"The token was issued by another issuer; this server accepts {issuer!r}.")
        audiences = self.settings.audiences
        if audiences and not set(claim_values(answer.get("aud"))) & set(audiences):
            raise Unauthenticated(
                f"The token is not meant for this server: its audience must include {', '.join(audiences)}."
            )
        return answer

    async def _userinfo(self, url: str, token: str) -> dict[str, Any]:
        try:
            response = await self._call(
                "GET", url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
            )
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"Cannot reach the userinfo endpoint {url} ({type(error).__name__}); retry later."
            ) from error
        if response.status_code in (400, 401, 403):
            raise Unauthenticated("The provider's userinfo endpoint rejected the token: get a new one.")
        if response.status_code != 200:
            raise ProviderUnavailable(f"The userinfo endpoint {url} answered {response.status_code}.")
        try:
            claims = response.json()
        except ValueError as error:
            raise ProviderUnavailable(
                f"The userinfo endpoint {url} sent no JSON (signed userinfo is not supported)."
            ) from error
        if not isinstance(claims, dict):
            raise ProviderUnavailable(f"The userinfo endpoint {url} sent no JSON object.")
        return claims

    async def _supplement(
        self, token: str, digest: str, claims: dict[str, Any], missing: set[str]
    ) -> dict[str, Any]:
        """Claims the policy needs but the token lacks (e.g. Elixir's groups), from userinfo."""
        url = await self._endpoint(self.settings.userinfo_uri, "userinfo_endpoint")
        if not url:
            return {}
        key = "u:" + digest
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = await self._userinfo(url, token)
            except Unauthenticated:
                log.info(
                    "userinfo refused a token that verified locally; continuing without %s", sorted(missing)
                )
                cached = {}
            self._cache.put(key, cached, claims.get("exp"))
        if not isinstance(cached, dict) or ("sub" in cached and cached["sub"] != claims.get("sub")):
            return {}
        return {name: cached[name] for name in missing if name in cached}

    def _principal(self, claims: dict[str, Any]) -> Principal:
        user_id = claims.get(self.settings.user_claim)
        if not isinstance(user_id, str) or not user_id:
            raise Unauthenticated(
                f"The token does not name a user: it lacks the {self.settings.user_claim!r} claim."
            )
        groups = frozenset(claim_values(claims.get(self.settings.groups_claim)))
        return Principal(user_id=user_id, groups=groups, claims=MappingProxyType(dict(claims)))
