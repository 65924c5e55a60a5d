"""`tesk.auth` inside the FastAPI app: the API's `Access` seam and what Swagger UI's OAuth button needs.

`AuthAccess` is what `tesk.api` asks who is calling and what they may do. The errors it raises are
`tesk.errors.ApiError`s (401 / 403 / 503), so the API's one handler renders them as
`{"message": ..., "status_code": N}`. The Swagger UI Authorize button uses the authorization code flow
with PKCE (or the implicit flow when configured) against the provider named in the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from tesk.auth.policy import Policy, build_policy
from tesk.auth.principal import ANONYMOUS, Principal
from tesk.config.auth import AuthSettings
from tesk.auth.tokens import Authenticator
from tesk.store import Visibility

log = logging.getLogger(__name__)

OAUTH_SCHEME = "oidc"
BEARER_SCHEME = "bearer"
_BEARER_DEFINITION = {"type": "http", "scheme": "bearer", "description": "An access token from the provider."}


class AuthAccess:
    """The API's access checks, backed by an `Authenticator` and a `Policy`."""

    def __init__(self, settings: AuthSettings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.policy: Policy = build_policy(settings)
        self.authenticator = Authenticator(settings, needed_claims=self.policy.needed_claims, client=client)
        self._open = settings.profile == "noauth"

    async def caller(self, request: Request) -> Principal:
        """The request's principal, authenticated once per request (401 / 503 otherwise)."""
        if self._open:  # noauth: nothing of the request is looked at, not even its headers
            return ANONYMOUS
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            principal = await self.authenticator.authenticate(request.headers)
            request.state.principal = principal
        return principal

    def team_for_create(self, caller: Principal, tags: Mapping[str, str]) -> str | None:
        return self.policy.team_for_create(caller, tags)

    def visibility(self, caller: Principal) -> Visibility:
        return self.policy.visibility(caller)

    def check_access(self, caller: Principal, task_id: str, owner: str, team: str | None) -> None:
        self.policy.check_access(caller, task_id, owner, team)

    async def aclose(self) -> None:
        await self.authenticator.aclose()


@dataclass(frozen=True)
class SwaggerOAuth:
    """What Swagger UI needs for its Authorize button."""

    security_schemes: dict[str, Any]
    init_oauth: dict[str, Any]


def swagger_oauth(settings: AuthSettings, *, timeout: float | None = None) -> SwaggerOAuth | None:
    """The OpenAPI security schemes and Swagger UI `initOAuth` parameters (None with `noauth`).

    Endpoints not configured are read from the issuer's discovery document once, at start-up; when the
    provider cannot be reached then, the button offers bearer tokens only (and says so in the log).
    """
    if settings.profile != "auth":
        return None
    schemes: dict[str, Any] = {BEARER_SCHEME: _BEARER_DEFINITION}
    if not settings.swagger_client_id:
        return SwaggerOAuth(schemes, {})
    authorize = settings.swagger_authorization_endpoint
    token = settings.swagger_token_endpoint
    if (not authorize or not token) and settings.issuer:
        url = settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = httpx.get(url, timeout=timeout or settings.http_timeout_seconds)
            response.raise_for_status()
            document = response.json()
            authorize = authorize or document.get("authorization_endpoint")
            token = token or document.get("token_endpoint")
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            log.warning("Swagger UI login disabled: discovery at %s failed (%s)", url, type(error).__name__)
    if not authorize or (not token and not settings.swagger_implicit):
        log.warning(
            "Swagger UI login disabled: set TESK_API_SWAGGER_OAUTH_AUTHORIZATION_ENDPOINT and _TOKEN_ENDPOINT "
            "(or TESK_OIDC_ISSUER)"
        )
        return SwaggerOAuth(schemes, {})
    scopes = settings.swagger_scope_map()
    flows: dict[str, dict[str, Any]]
    if settings.swagger_implicit:
        flows = {"implicit": {"authorizationUrl": authorize, "scopes": scopes}}
    else:
        flows = {"authorizationCode": {"authorizationUrl": authorize, "tokenUrl": token, "scopes": scopes}}
    schemes[OAUTH_SCHEME] = {"type": "oauth2", "flows": flows}
    init: dict[str, Any] = {
        "clientId": settings.swagger_client_id,
        "scopes": " ".join(scopes),
        "usePkceWithAuthorizationCodeGrant": settings.swagger_pkce and not settings.swagger_implicit,
    }
    if settings.swagger_client_secret:
        init["clientSecret"] = settings.swagger_client_secret.get_secret_value()
    return SwaggerOAuth(schemes, init)


def build_access(settings: AuthSettings) -> AuthAccess:
    """Access checks from the auth section (`TESK_AUTH` / `SPRING_PROFILES_ACTIVE`, `TESK_OIDC_*`, ...)."""
    return AuthAccess(settings)
