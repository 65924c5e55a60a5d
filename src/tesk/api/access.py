"""Who is calling and what they may touch: the seam between the API and `tesk.auth`.

The API asks an `Access` object four questions. `tesk.auth.fastapi.AuthAccess` answers them: with
`noauth` everyone is `anonymousUser`, sees everything, creates tasks with no team, and any
Authorization header is ignored (some clients always send one: py-tes sends `Basic None:None`);
with `auth` a bearer token and the configured authorisation model decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.requests import Request

from tesk.auth.principal import Principal as Caller
from tesk.store import Visibility

__all__ = ["Access", "Caller"]


class Access(Protocol):
    async def caller(self, request: Request) -> Caller:
        """Identify the caller; raise `tesk.errors.ApiError` (401/503) when that is impossible."""

    def team_for_create(self, caller: Caller, tags: Mapping[str, str]) -> str | None:
        """The team a new task belongs to; raise ApiError(403) when the caller may not create."""

    def visibility(self, caller: Caller) -> Visibility:
        """Which tasks the caller may list; raise ApiError(403) when they may list none."""

    def check_access(self, caller: Caller, task_id: str, owner: str, team: str | None) -> None:
        """Raise ApiError(403), naming what is missing, unless the caller may see and cancel the task."""

    async def aclose(self) -> None:
        """Release connections to the identity provider."""
