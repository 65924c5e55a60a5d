"""Schema migrations: an upgrade never loses tasks, on SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import UTC
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from tesk.models import State
from tesk.store import TaskQuery
from tesk.store.sql import MIGRATIONS, SqlTaskStore, _alembic_config, task_tags_table, tasks_table
from tests.pg import PostgresServer
from tests.store.conftest import add, make_task, sqlite_url

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()

FUTURE_REVISION = '''"""A made-up next release: rebuilds the tasks table (a SQLite batch copy) and adds a column."""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", recreate="always") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
        batch.alter_column("owner", type_=sa.String(512), existing_nullable=False)
    op.execute("UPDATE tasks SET priority = 1 WHERE state = 'RUNNING'")


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("priority")
'''


async def migrate(url: str, target: str, scripts: Path = MIGRATIONS) -> None:
    """Run Alembic to `target` the way the store does at start-up, from a chosen script folder."""

    def upgrade(connection: Connection) -> None:
        cfg = _alembic_config(connection)
        cfg.set_main_option("script_location", str(scripts))
        command.upgrade(cfg, target)

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
    finally:
        await engine.dispose()


async def scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


async def test_reopening_a_database_keeps_its_tasks(new_database_url: str) -> None:
    first = SqlTaskStore(new_database_url)
    await first.open()
    ids = [await add(first, f"n{i}", {"i": str(i)}) for i in range(5)]
    await first.update(ids[0], state=State.COMPLETE)
    await first.close()

    again = SqlTaskStore(new_database_url)
    await again.open()
    try:
        assert [t.id for t in (await again.list(TaskQuery())).tasks] == list(reversed(ids))
        assert (await again.get(ids[0])).state is State.COMPLETE  # type: ignore[union-attr]
        assert [t.id for t in (await again.list(TaskQuery(tags={"i": "3"}))).tasks] == [ids[3]]
    finally:
        await again.close()
    assert await scalar(new_database_url, "SELECT version_num FROM alembic_version") == HEAD


async def test_upgrading_a_database_of_the_first_schema_keeps_its_tasks(new_database_url: str) -> None:
    """Rows written by the first release (schema 0001) are all there after the upgrade to head."""
    await migrate(new_database_url, "0001")
    tasks = [make_task(name) for name in ("abc", "ABC", "abd")]
    engine = create_async_engine(new_database_url)
    async with engine.begin() as conn:
        for task in tasks:
            assert task.id is not None and task.creation_time is not None
            await conn.execute(
                insert(tasks_table).values(
                    id=task.id,
                    state=task.state.value,
                    name=task.name,
                    owner="alice",
                    team=None,
                    created=task.creation_time.astimezone(UTC).isoformat(),
                    body=task.model_dump_json(exclude_none=True),
                )
            )
            await conn.execute(insert(task_tags_table).values(task_id=task.id, key="old", value="yes"))
    await engine.dispose()

    store = SqlTaskStore(new_database_url)
    await store.open()
    try:
        listed = (await store.list(TaskQuery(tags={"old": "yes"}))).tasks
        assert [t.id for t in listed] == [t.id for t in reversed(tasks)]
        assert listed[0].task.name == "abd" and listed[0].owner == "alice"
        assert [t.id for t in (await store.list(TaskQuery(name_prefix="abc"))).tasks] == [tasks[0].id]
    finally:
        await store.close()
    assert await scalar(new_database_url, "SELECT version_num FROM alembic_version") == HEAD


@pytest.fixture
def future_migrations(tmp_path: Path) -> Path:
    """A copy of the migrations with one more (made-up) revision after the current head."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_future.py").write_text(FUTURE_REVISION.format(head=HEAD))
    return scripts


def copy_database(url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A copy of a database: the file for SQLite, CREATE DATABASE ... TEMPLATE for PostgreSQL."""
    if url.startswith("sqlite"):
        copy = tmp_path / "copy.db"
        shutil.copy(url.split("///", 1)[1], copy)
        return sqlite_url(copy)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(template=url.rsplit("/", 1)[1])


async def test_a_future_migration_on_a_copy_keeps_every_task(
    new_database_url: str,
    future_migrations: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Simulate the next release: its migration rebuilds the tasks table; every task, tag and index
    survives, the new server reads them, and the original database is left as it was."""
    store = SqlTaskStore(new_database_url)
    await store.open()
    ids = [await add(store, f"job-{i}", {"batch": str(i % 2)}, owner=f"user{i}") for i in range(20)]
    await store.update(ids[3], state=State.RUNNING)
    before = await store.list(TaskQuery(page_size=100))
    await store.close()

    copy = copy_database(new_database_url, request, tmp_path)
    monkeypatch.setattr("tesk.store.sql.MIGRATIONS", future_migrations)
    upgraded = SqlTaskStore(copy)
    await upgraded.open()
    try:
        after = await upgraded.list(TaskQuery(page_size=100))
        assert [(t.id, t.state, t.owner, t.body) for t in after.tasks] == [
            (t.id, t.state, t.owner, t.body) for t in before.tasks
        ]
        assert len((await upgraded.list(TaskQuery(tags={"batch": "1"}))).tasks) == 10
        assert (await upgraded.get(ids[3])).state is State.RUNNING  # type: ignore[union-attr]
    finally:
        await upgraded.close()
    assert await scalar(copy, "SELECT version_num FROM alembic_version") == "9999"
    assert await scalar(copy, "SELECT count(*) FROM tasks WHERE priority = 1") == 1

    engine = create_async_engine(copy)
    async with engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("tasks")})
    await engine.dispose()
    assert {"ix_tasks_state_id", "ix_tasks_name_id", "ix_tasks_owner_id", "ix_tasks_team_id"} <= indexes

    assert await scalar(new_database_url, "SELECT version_num FROM alembic_version") == HEAD
    assert await scalar(new_database_url, "SELECT count(*) FROM tasks") == 20


async def test_a_database_a_newer_release_migrated_is_refused_and_left_alone(
    new_database_url: str, future_migrations: Path
) -> None:
    """Rolling back to an older tesk must not touch, or half-read, a newer schema."""
    store = SqlTaskStore(new_database_url)
    await store.open()
    await add(store)
    await store.close()
    await migrate(new_database_url, "head", future_migrations)

    older = SqlTaskStore(new_database_url)
    with pytest.raises(RuntimeError, match="revision '9999', which this tesk does not know: a newer tesk"):
        await older.open()
    await older.close()
    assert await scalar(new_database_url, "SELECT version_num FROM alembic_version") == "9999"
    assert await scalar(new_database_url, "SELECT count(*) FROM tasks") == 1
