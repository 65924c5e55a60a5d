"""Who is calling (`Principal`) and the errors of authentication and authorisation.

The errors are `ApiError`s, so the API's one error handler turns them into the seed's JSON body; the
401 also carries the `WWW-Authenticate` challenge RFC 6750 asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tesk.errors import ApiError

ANONYMOUS_USER = "anonymousUser"
"""The creator recorded for every task when authentication is off (the seed's name)."""


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a user id, the groups a provider vouches for, and the other claims."""

    user_id: str
    groups: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    authenticated: bool = True
    """False only for the `noauth` profile's anonymous caller."""


ANONYMOUS = Principal(user_id=ANONYMOUS_USER, authenticated=False)


class Unauthenticated(ApiError):
    """401: no token, or a token this server cannot trust. The message says which check failed."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class ProviderUnavailable(ApiError):
    """503: the token could not be checked because the OIDC provider did not answer as it should."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)
        self.headers = {"Retry-After": "5"}


class Forbidden(ApiError):
    """403: the caller is known but lacks the group or ownership the operation needs."""

    def __init__(self, message: str) -> None:
        super().__init__(403, message)
        self.headers: dict[str, str] = {}
