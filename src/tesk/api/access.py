"""Who is calling and what they may touch: the seam between the API and `tesk.auth`.

The API asks an `Access` object three questions; `OpenAccess` is the `noauth` answer (everyone is
`anonymousUser`, sees everything, creates tasks with no team) and ignores any Authorization header,
because some clients always send one (py-tes sends `Basic None:None`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request

from tesk.store import EVERYONE, Visibility

ANONYMOUS = "anonymousUser"


@dataclass(frozen=True)
class Caller:
    """The minimum the API needs to know about a caller."""

    user_id: str
    claims: dict[str, object] = field(default_factory=dict)


class Access(Protocol):
    async def caller(self, request: Request) -> Caller:
        """Identify the caller; raise `tesk.errors.ApiError` (401/503) when that is impossible."""

    def team_for_create(self, caller: Caller, tags: dict[str, str]) -> str | None:
        """The team a new task belongs to; raise ApiError(403) when the caller may not create."""

    def visibility(self, caller: Caller) -> Visibility:
        """Which tasks the caller may see and cancel."""


class OpenAccess:
    """`noauth`: no checks at all."""

    async def caller(self, request: Request) -> Caller:
        return Caller(ANONYMOUS)

    def team_for_create(self, caller: Caller, tags: dict[str, str]) -> str | None:
        return None

    def visibility(self, caller: Caller) -> Visibility:
        return EVERYONE
