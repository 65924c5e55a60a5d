"""What a request handler needs of the server: the store, backend and access checks, and the task it
names if the caller may see it."""

from __future__ import annotations

from starlette.requests import Request

from tesk.api.access import Access, Caller
from tesk.backends import Backend
from tesk.errors import task_not_found
from tesk.store import StoredTask, TaskStore


def store_of(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def access_of(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


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
