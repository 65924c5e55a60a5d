"""Store fixtures: every store test runs on SQLite (a file, WAL) and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tesk.models import Executor, State, Task
from tesk.store import new_task_id
from tesk.store.sql import SqlTaskStore


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty database of each kind."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "tasks.db")
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlTaskStore]:
    opened = SqlTaskStore(database_url)
    await opened.open()
    yield opened
    await opened.close()


_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def make_task(name: str | None = "task", tags: dict[str, str] | None = None, state: State = State.QUEUED) -> Task:
    """A task as the API would hand it to the store: id, state and creation time set."""
    return Task(
        id=new_task_id(),
        state=state,
        name=name,
        tags=tags,
        executors=[Executor(image="alpine", command=["true"])],
        creation_time=_EPOCH + timedelta(seconds=1),
    )


async def add(
    store: SqlTaskStore,
    name: str | None = "task",
    tags: dict[str, str] | None = None,
    state: State = State.QUEUED,
    owner: str = "anonymousUser",
    team: str | None = None,
) -> str:
    task = make_task(name, tags, state)
    await store.create(task, owner, team)
    assert task.id is not None
    return task.id
