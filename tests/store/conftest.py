"""Store fixtures: every store test runs on SQLite (a file, WAL) and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tesk.models import Executor, State, Task
from tesk.store import new_task_id
from tesk.store.sql import SqlTaskStore
from tests.pg import PostgresServer


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

EMPTY_TABLES = """
DO $$ BEGIN
  IF to_regclass('tasks') IS NOT NULL THEN TRUNCATE tasks, task_tags, meta, replicas; END IF;
END $$
"""


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind. On PostgreSQL it is the session's database with its tables
    emptied, since CREATE DATABASE costs most of a second; migration tests use `new_database_url`."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "tasks.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url: str = request.getfixturevalue("postgres_url")
    server.admin(EMPTY_TABLES, database=url.rsplit("/", 1)[1])
    return url


@pytest.fixture(params=KINDS)
def new_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each kind that has never been used: no tables, no migrations run."""
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


def make_task(
    name: str | None = "task", tags: dict[str, str] | None = None, state: State = State.QUEUED
) -> Task:
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
