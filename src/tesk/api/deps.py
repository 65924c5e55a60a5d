"""What a request handler needs of the server: its `Services`, and the task a request names if the
caller may see it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from tesk.api.access import Access, Caller
from tesk.api.services import Services
from tesk.errors import task_not_found
from tesk.store import StoredTask, TaskStore


def services_of(request: Request) -> Services:
    """The services of the app serving this request (`tesk.api.app.TesApp.services`, given when it was built)."""
    services: Services = request.app.services
    return services


async def _services(request: Request) -> Services:
    """`services_of` as a dependency: a coroutine, so FastAPI calls it in the event loop, not its thread pool."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(_services)]
"""A handler parameter that receives the app's services."""


async def visible_task(store: TaskStore, access: Access, request: Request, task_id: str) -> tuple[Caller, StoredTask]:
    """The caller and the task, if it exists (404) and the caller may see it (403 naming the missing
    group, as TESK).

    Task ids carry 80 random bits, so a 403 tells nobody anything they could have guessed.
    """
    caller = await access.caller(request)
    # No task id holds a NUL, and PostgreSQL refuses to compare one (it answered 500).
    stored = None if "\x00" in task_id else await store.get(task_id)
    if stored is None:
        raise task_not_found(task_id)
    access.check_access(caller, task_id, stored.owner, stored.team)
    return caller, stored
