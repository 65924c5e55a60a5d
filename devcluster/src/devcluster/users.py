"""Who a request comes from: the user name and groups a bearer token authenticates as.

RBAC bindings name users, groups and service accounts, so the stand-in must know a token's groups as
kube-apiserver does: every authenticated user is in `system:authenticated` (the authenticator adds
it), a service account's token also puts it in `system:serviceaccounts` and
`system:serviceaccounts:<namespace>`, a request without a token is `system:anonymous` in
`system:unauthenticated`, and the kubeconfig's admin is in `system:masters` (allowed everything).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class User:
    """An authenticated identity: the name accounting reports, the groups bindings may name."""

    name: str
    groups: tuple[str, ...] = ()


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def authenticated(name: str, groups: tuple[str, ...] = ()) -> User:
    """A user a token authenticates, with `system:authenticated` added as kube-apiserver adds it."""
    return User(name, (*groups, AUTHENTICATED) if AUTHENTICATED not in groups else groups)


def service_account(namespace: str, name: str) -> User:
    """The identity of a service account's token (`system:serviceaccount:NS:NAME`)."""
    return authenticated(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}",
                         ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"))


def mint(tokens: dict[str, User], user: User) -> str:
    """A new bearer token for `user`, registered in `tokens` (what the API server authenticates against)."""
    token = secrets.token_urlsafe(32)
    tokens[token] = user
    return token
