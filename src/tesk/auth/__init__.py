"""Authentication (OIDC bearer tokens) and authorisation (Elixir groups, or owner/admin by claim).

`Authenticator.authenticate(headers) -> Principal` answers who is calling (401 / 503 otherwise);
a `Policy` answers what they may do: `team_for_create`, `visibility` (handed to the store's LIST query)
and `can_access` / `check_access` (403 naming the missing group). `tesk.auth.fastapi` plugs both into
the API. With the `noauth` profile the caller is always `anonymousUser`, who may do everything.
"""

from tesk.auth.policy import ElixirPolicy, OpenPolicy, OwnerPolicy, Policy, build_policy
from tesk.auth.principal import (
    ANONYMOUS,
    ANONYMOUS_USER,
    Forbidden,
    Principal,
    ProviderUnavailable,
    Unauthenticated,
)
from tesk.config.auth import AuthSettings
from tesk.auth.tokens import Authenticator

__all__ = [
    "ANONYMOUS",
    "ANONYMOUS_USER",
    "AuthSettings",
    "Authenticator",
    "ElixirPolicy",
    "Forbidden",
    "OpenPolicy",
    "OwnerPolicy",
    "Policy",
    "Principal",
    "ProviderUnavailable",
    "Unauthenticated",
    "build_policy",
]
