"""Authentication and authorisation settings.

The seed (TESK's Java API) is configured with `SPRING_PROFILES_ACTIVE`, `SECURITY_OAUTH2_RESOURCE_*`,
`TESK_API_AUTHORISATION_*` and `TESK_API_SWAGGER_OAUTH_*`; those names keep their meaning here so an
existing deployment's environment carries over. Our own names (`TESK_AUTH`, `TESK_OIDC_*`) cover what
the seed never had: local JWT validation, introspection and the simpler owner model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tesk.config.values import comma_list

ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Signature algorithms that verify with a public key; only these may ever be allowed."""

ELIXIR_GROUP_PREFIX = "urn:geant:elixir-europe.org:group:elixir:"
ELIXIR_GROUP_SUFFIX = "#perun.elixir-czech.cz"


def _profile(value: str) -> str:
    """Accept Spring's comma-separated profile list, as long as it names exactly one of auth/noauth."""
    names = {part.lower() for part in comma_list(value)}
    chosen = names & {"auth", "noauth"}
    if len(chosen) != 1:
        raise ValueError(
            f"authentication profile {value!r} must name exactly one of 'auth' or 'noauth' "
            "(set TESK_AUTH or SPRING_PROFILES_ACTIVE)"
        )
    return chosen.pop()


class AuthSettings(BaseSettings):
    """Who may call the API: bearer-token validation (OIDC) and the authorisation model."""

    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    profile: Literal["noauth", "auth"] = Field(
        "noauth",
        alias="TESK_AUTH",
        validation_alias=AliasChoices("TESK_AUTH", "SPRING_PROFILES_ACTIVE"),
        description="`noauth` (everything open, creator `anonymousUser`) or `auth` (bearer token required). "
        "The seed's `SPRING_PROFILES_ACTIVE` is read too.",
    )
    issuer: str | None = Field(
        None,
        alias="TESK_OIDC_ISSUER",
        description="OIDC issuer URL; its `/.well-known/openid-configuration` gives the JWKS, userinfo and "
        "introspection endpoints. Tokens must carry exactly this `iss`.",
    )
    audience: str | None = Field(
        None,
        alias="TESK_OIDC_AUDIENCE",
        description="Required `aud` of access tokens (comma-separated for several accepted values). "
        "Unset: the audience is not checked (as in the seed, which accepted tokens of any Elixir client).",
    )
    userinfo_uri: str | None = Field(
        None,
        alias="SECURITY_OAUTH2_RESOURCE_USER_INFO_URI",
        validation_alias=AliasChoices("SECURITY_OAUTH2_RESOURCE_USER_INFO_URI", "TESK_OIDC_USERINFO_URI"),
        description="Userinfo endpoint (also `TESK_OIDC_USERINFO_URI`): validates opaque tokens and supplies "
        "groups a token lacks. Default: from discovery.",
    )
    introspection_uri: str | None = Field(
        None,
        alias="TESK_OIDC_INTROSPECTION_URI",
        description="RFC 7662 introspection endpoint for opaque tokens. Default: from discovery, used when "
        "a client id is set.",
    )
    client_id: str | None = Field(
        None,
        alias="TESK_OIDC_CLIENT_ID",
        description="Client id this API uses to call the introspection endpoint.",
    )
    client_secret: SecretStr | None = Field(
        None, alias="TESK_OIDC_CLIENT_SECRET", description="Client secret for the introspection endpoint."
    )
    user_claim: str = Field(
        "sub",
        alias="TESK_OIDC_USER_CLAIM",
        description="Claim that holds the user id recorded as task creator.",
    )
    algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ASYMMETRIC_ALGORITHMS),
        alias="TESK_OIDC_ALGORITHMS",
        description="Accepted JWT signature algorithms (comma-separated); asymmetric ones only.",
    )
    leeway_seconds: float = Field(
        30, alias="TESK_OIDC_LEEWAY_SECONDS", description="Clock skew tolerated on `exp`, `nbf` and `iat`."
    )
    jwks_cache_seconds: float = Field(
        3600, alias="TESK_OIDC_JWKS_CACHE_SECONDS", description="How long discovery and the JWKS are cached."
    )
    jwks_refresh_interval_seconds: float = Field(
        60,
        alias="TESK_OIDC_JWKS_REFRESH_INTERVAL_SECONDS",
        description="At most one JWKS refetch per this interval when a token names an unknown `kid` "
        "(key rotation), so forged kids cannot hammer the provider.",
    )
    token_cache_seconds: float = Field(
        60,
        alias="TESK_OIDC_TOKEN_CACHE_SECONDS",
        description="How long a checked token (JWT, userinfo or introspection answer) is remembered, never "
        "past its `exp`; 0 checks every request anew.",
    )
    refusal_cache_seconds: float = Field(
        60,
        ge=0,
        alias="TESK_OIDC_REFUSAL_CACHE_SECONDS",
        description="How long a token the provider refused is remembered (by its SHA-256), so repeating "
        "it does not reach the provider again; 0 asks every time.",
    )
    http_timeout_seconds: float = Field(
        5, alias="TESK_OIDC_HTTP_TIMEOUT_SECONDS", description="Timeout of each call to the provider."
    )
    max_token_bytes: int = Field(
        8192,
        gt=0,
        alias="TESK_OIDC_MAX_TOKEN_BYTES",
        description="Longest bearer token accepted; longer ones get 401 before anything else is done "
        "(8 KiB is also what common proxies let through in one header).",
    )
    max_concurrent_calls: int = Field(
        8,
        gt=0,
        alias="TESK_OIDC_MAX_CONCURRENT_CALLS",
        description="Calls to the provider (userinfo, introspection, discovery, JWKS) in flight at once; a "
        "token check that finds no free slot within the HTTP timeout gets 503, so a flood of unknown "
        "tokens cannot be relayed to the provider at any rate.",
    )
    model: Literal["elixir", "owner"] = Field(
        "elixir",
        alias="TESK_API_AUTHORISATION_MODEL",
        description="`elixir` (TESK's group model) or `owner` (each user sees their own tasks; admins "
        "by claim see all).",
    )
    groups_claim: str = Field(
        "eduperson_entitlement",
        alias="TESK_API_AUTHORISATION_GROUPS_CLAIM",
        description="Claim (token or userinfo) listing the user's groups.",
    )
    group_prefix: str = Field(
        ELIXIR_GROUP_PREFIX,
        alias="TESK_API_AUTHORISATION_GROUP_PREFIX",
        description="Text before each group name.",
    )
    group_suffix: str = Field(
        ELIXIR_GROUP_SUFFIX,
        alias="TESK_API_AUTHORISATION_GROUP_SUFFIX",
        description="Text after each group name.",
    )
    delimiter: str = Field(
        ":", alias="TESK_API_AUTHORISATION_DELIMITER", description="Separator of nested group names."
    )
    parent_group: str = Field(
        "GA4GH:GA4GH-CAP",
        alias="TESK_API_AUTHORISATION_PARENT_GROUP",
        description="Base group of all TESK installations.",
    )
    env_subgroup: str = Field(
        "EBI",
        alias="TESK_API_AUTHORISATION_ENV_SUBGROUP",
        description="Subgroup of the base group for this installation; its subgroups are the teams.",
    )
    admin_subgroup: str = Field(
        "ADMIN",
        alias="TESK_API_AUTHORISATION_ADMIN_SUBGROUP",
        description="Subgroup name of admins: under the environment = super admins, under a team = team admins.",
    )
    admin_claim: str = Field(
        "groups",
        alias="TESK_API_AUTHORISATION_ADMIN_CLAIM",
        description="Owner model: claim checked for the admin value (a list, or a space-separated string).",
    )
    admin_value: str | None = Field(
        None,
        alias="TESK_API_AUTHORISATION_ADMIN_VALUE",
        description="Owner model: users whose admin claim contains this value see and cancel every task. "
        "Unset: owner only.",
    )
    metrics_require_auth: bool = Field(
        False,
        alias="TESK_METRICS_REQUIRE_AUTH",
        description="With `auth`, also require a valid token on `/metrics`.",
    )
    swagger_client_id: str | None = Field(
        None,
        alias="TESK_API_SWAGGER_OAUTH_CLIENT_ID",
        description="Client id of Swagger UI's Authorize button (a public client; unset: no button).",
    )
    swagger_client_secret: SecretStr | None = Field(
        None,
        alias="TESK_API_SWAGGER_OAUTH_CLIENT_SECRET",
        description="Client secret shown to Swagger UI (only for providers that refuse public clients).",
    )
    swagger_authorization_endpoint: str | None = Field(
        None,
        alias="TESK_API_SWAGGER_OAUTH_AUTHORIZATION_ENDPOINT",
        description="Authorization endpoint for Swagger UI. Default: from discovery.",
    )
    swagger_token_endpoint: str | None = Field(
        None,
        alias="TESK_API_SWAGGER_OAUTH_TOKEN_ENDPOINT",
        description="Token endpoint for Swagger UI. Default: from discovery.",
    )
    swagger_scopes: str = Field(
        "openid:Standard openid,profile:Identity info about user,email:Email,"
        "eduperson_entitlement:Group memberships",
        alias="TESK_API_SWAGGER_OAUTH_SCOPES",
        description="Scopes offered by Swagger UI, `name:description` comma-separated (as in the seed).",
    )
    swagger_implicit: bool = Field(
        False,
        alias="TESK_API_SWAGGER_OAUTH_IMPLICIT",
        description="Offer the implicit flow instead of authorization code with PKCE (discouraged).",
    )
    swagger_pkce: bool = Field(
        True, alias="TESK_API_SWAGGER_OAUTH_PKCE", description="Use PKCE with the authorization code flow."
    )

    @field_validator("profile", mode="before")
    @classmethod
    def _parse_profile(cls, value: object) -> object:
        return _profile(value) if isinstance(value, str) else value

    @field_validator("algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return comma_list(value)
        return value

    @field_validator("algorithms")
    @classmethod
    def _only_asymmetric(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"algorithms {refused} are not allowed: only asymmetric ones ({', '.join(ASYMMETRIC_ALGORITHMS)}) "
                "can be verified with a provider's public keys"
            )
        if not value:
            raise ValueError("at least one signature algorithm must be allowed")
        return value

    @model_validator(mode="after")
    def _auth_needs_a_provider(self) -> AuthSettings:
        if self.profile == "auth" and not (self.issuer or self.userinfo_uri or self.introspection_uri):
            raise ValueError(
                "the auth profile needs TESK_OIDC_ISSUER (or at least SECURITY_OAUTH2_RESOURCE_USER_INFO_URI "
                "or TESK_OIDC_INTROSPECTION_URI) to validate tokens"
            )
        return self

    @property
    def audiences(self) -> list[str]:
        return comma_list(self.audience)

    def swagger_scope_map(self) -> dict[str, str]:
        """The `name:description,...` scope list as a mapping, for the OpenAPI security scheme."""
        scopes: dict[str, str] = {}
        for item in self.swagger_scopes.split(","):
            name, _, description = item.strip().partition(":")
            if name:
                scopes[name] = description or name
        return scopes
