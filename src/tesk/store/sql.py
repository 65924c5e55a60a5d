"""The SQL task store (SQLAlchemy 2): SQLite (WAL) for one host, PostgreSQL (async) for clusters.

Design choices, each for a measured reason:
- The primary key is the time-ordered task id, so GET is one primary-key read and newest-first pages
  are a keyset scan (`id < last_id`) whose cost does not grow with the number of stored tasks.
- MINIMAL pages read only the `id` and `state` columns, never the JSON body.
- Creates are group-committed: concurrent POSTs share one transaction, which is what lets SQLite take
  thousands of tasks per second while each client still gets its answer only after the commit.
- State changes are compare-and-set (`only_from`), and terminal states are never left, so a late
  runner report cannot undo a cancel.
- Replicas that run tasks themselves (the local backend) hold each task by name (`held_by`) under a
  lease in `replicas`, timed by the database's clock; a runner's writes are guarded by `held_by`, and
  a takeover is a conditional update of the dead replica's row, so exactly one replica wins it.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tesk.models import TERMINAL_STATES, State, Task, TaskLog
from tesk.store import (
    HELD_STATES,
    InvalidPageToken,
    Replica,
    StoreBusy,
    StoredTask,
    TakenOver,
    TaskPage,
    TaskQuery,
    Visibility,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

metadata = MetaData()

tasks_table = Table(
    "tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("name", Text, nullable=True),
    Column("owner", String(255), nullable=False),
    Column("team", String(255), nullable=True),
    Column("created", String(40), nullable=False),
    Column("body", Text, nullable=False),
    Column("held_by", String(255), nullable=True),
    Index("ix_tasks_state_id", "state", "id"),
    Index("ix_tasks_name_id", "name", "id"),
    Index("ix_tasks_owner_id", "owner", "id"),
    Index("ix_tasks_team_id", "team", "id"),
    Index("ix_tasks_held_by_state", "held_by", "state"),
)

replicas_table = Table(
    "replicas",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("instance", String(64), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("expires", Float, nullable=False),
)

task_tags_table = Table(
    "task_tags",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_task_tags_key_value", "key", "value"),
)

idempotency_table = Table(
    "idempotency_keys",
    metadata,
    Column("owner", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("task_id", String(64), nullable=False),
    Column("created", String(40), nullable=False),
)

meta_table = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

MIGRATIONS = Path(__file__).parent / "migrations"
_TOKEN_SECRET_KEY = "page_token_secret"
_HIGHEST_CHAR = "\U0010ffff"


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    """Bring the schema to this release's head; refuse, untouched, a database a newer tesk migrated."""
    cfg = _alembic_config(connection)
    current = MigrationContext.configure(connection).get_current_revision()
    known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
    if current is not None and current not in known:
        raise RuntimeError(
            f"The task database is at schema revision {current!r}, which this tesk does not know: a newer "
            "tesk has migrated it. Run that newer tesk (or point this one at another database); the "
            "database was left unchanged."
        )
    command.upgrade(cfg, "head")


class SqlTaskStore:
    """TaskStore over SQLAlchemy; see the module docstring for why it is shaped this way."""

    def __init__(self, url: str, busy_seconds: float = 5.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.busy_seconds = busy_seconds
        """Longest a statement waits for SQLite's write lock or a PostgreSQL connection: then StoreBusy."""
        self._engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._reader: Connection | None = None
        self._writer: Connection | None = None
        self._secret = b""
        self._pending: list[
            tuple[dict[str, Any], list[dict[str, str]], dict[str, str] | None, asyncio.Future[None]]
        ] = []
        self._flusher: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._subscribers: set[asyncio.Queue[tuple[str, State]]] = set()

    async def open(self) -> None:
        """Connect, apply migrations (an upgrade never drops tasks) and load the page-token key."""
        if self.is_sqlite:
            url = make_url(self.url).set(drivername="sqlite")
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url, connect_args={"timeout": _SQLITE_LOCK_WAIT_MS / 1000, "check_same_thread": False}
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            self._sync_engine = engine
            self._writer = engine.connect()
            await self._write(_upgrade)
            self._reader = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._engine = create_async_engine(
                self.url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_timeout=self.busy_seconds
            )
            async with self._engine.begin() as conn:
                await conn.run_sync(_upgrade)
        self._secret = await self._write(_load_secret)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # -- how statements run -----------------------------------------------------------------------
    # SQLite statements run inline on the event loop over two long-lived connections (one reader in
    # autocommit, one writer): a primary-key read takes tens of microseconds there, while a hop
    # through aiosqlite's thread costs over a millisecond, which capped GET at a few hundred per
    # second. PostgreSQL statements run on the async engine; both paths run the same functions.

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._reader is not None:
            return fn(self._reader, *args)
        try:
            async with self._async_engine().connect() as conn:
                return await conn.run_sync(fn, *args)
        except _UNAVAILABLE as exc:
            raise self._busy(exc) from exc

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn` in a transaction; StoreBusy once the store has not taken it for `busy_seconds`.

        SQLite waits for another connection's write lock only `_SQLITE_LOCK_WAIT_MS` at a time, since
        the wait blocks the event loop; between tries the loop serves other requests.
        """
        if self._writer is None:
            try:
                async with self._write_lock, self._async_engine().begin() as conn:
                    return await conn.run_sync(fn, *args)
            except _UNAVAILABLE as exc:
                raise self._busy(exc) from exc
        deadline = asyncio.get_running_loop().time() + self.busy_seconds
        pause = 0.005
        async with self._write_lock:
            while True:
                try:
                    with self._writer.begin():
                        return fn(self._writer, *args)
                except sa_exc.OperationalError as exc:
                    if not _sqlite_locked(exc):
                        raise
                    if asyncio.get_running_loop().time() + pause > deadline:
                        raise self._busy(exc) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)

    def _busy(self, exc: BaseException) -> StoreBusy:
        what = "the SQLite database is locked by another connection" if self.is_sqlite else (
            "no PostgreSQL connection was free or the server did not answer")
        log.warning("task store busy for over %.1f s: %s (%s)", self.busy_seconds, what, type(exc).__name__)
        return StoreBusy(f"The task store is busy ({what} for over {self.busy_seconds:g} s); retry in a moment.")

    def _async_engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the task store is not open")
        return self._engine

    # -- writes ---------------------------------------------------------------------------------

    async def create(
        self, task: Task, owner: str, team: str | None, held_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Store a new task (group-committed); with `idempotency_key`, the key is stored in the same
        transaction, so a retried request finds the task it made (`task_for_idempotency_key`)."""
        assert task.id is not None and task.creation_time is not None
        row = {
            "held_by": held_by,
            "id": task.id,
            "state": task.state.value,
            "name": task.name,
            "owner": owner,
            "team": team,
            "created": task.creation_time.astimezone(UTC).isoformat(),
            "body": task.model_dump_json(exclude_none=True),
        }
        tags = [{"task_id": task.id, "key": k, "value": v} for k, v in (task.tags or {}).items()]
        key = None if idempotency_key is None else {
            "owner": owner, "key": idempotency_key, "task_id": task.id, "created": row["created"]}
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, tags, key, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_creates())
        await future
        self._publish(task.id, task.state)

    async def _flush_creates(self) -> None:
        """Commit every waiting create in one transaction (group commit)."""
        await asyncio.sleep(0)  # let the requests that arrived together join this batch
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write(
                    _insert_tasks,
                    [row for row, _, _, _ in batch],
                    [t for _, tags, _, _ in batch for t in tags],
                    [key for _, _, key, _ in batch if key is not None],
                )
            except Exception as exc:  # noqa: BLE001 - every waiting client must hear about the failure
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)

    async def update(
        self,
        task_id: str,
        *,
        state: State | None = None,
        logs: list[TaskLog] | None = None,
        only_from: frozenset[State] | None = None,
        held_by: str | None = None,
    ) -> StoredTask | None:
        """`held_by`: change the task only while that replica holds it (a runner's guard)."""
        result = await self._write(_update_task, task_id, state, logs, only_from, held_by, not self.is_sqlite)
        if result is None:
            return None
        stored, changed = result
        if changed:
            self._publish(task_id, stored.state)
        return stored

    # -- reads ----------------------------------------------------------------------------------

    async def task_for_idempotency_key(self, owner: str, key: str) -> str | None:
        """The task a request with this `Idempotency-Key` from this caller made, if any."""
        c = idempotency_table.c
        stmt = select(c.task_id).where(c.owner == owner, c.key == key)
        rows = await self._read(_all_rows, stmt)
        return str(rows[0][0]) if rows else None

    async def get(self, task_id: str) -> StoredTask | None:
        if self._reader is not None:
            # The hottest read of the server, straight on the driver connection (see _read).
            raw = self._reader.connection.driver_connection
            row = raw.execute(_GET_SQL, (task_id,)).fetchone()  # type: ignore[union-attr]
        else:
            row = await self._read(_get_row, task_id)
        if row is None:
            return None
        return StoredTask(row[0], State(row[1]), row[2], row[3], row[4], held_by=row[5])

    async def list(self, query: TaskQuery) -> TaskPage:
        c = tasks_table.c
        columns = [c.id, c.state, c.owner, c.team] + ([c.body] if query.with_body else [])
        conditions = self._filters(query)
        digest = self._query_digest(query)
        if query.page_token:
            conditions.append(c.id < self._read_token(query.page_token, digest))
        stmt = select(*columns).where(and_(*conditions)).order_by(c.id.desc()).limit(query.page_size + 1)
        rows = await self._read(_all_rows, stmt)
        more = len(rows) > query.page_size
        rows = rows[: query.page_size]
        tasks = [
            StoredTask(r[0], State(r[1]), r[2], r[3], r[4] if query.with_body else None) for r in rows
        ]
        token = self._make_token(rows[-1][0], digest) if more and rows else None
        return TaskPage(tasks, token)

    async def ids_in_states(self, states: Iterable[State], held_by: str | None = None) -> builtins.list[str]:
        """Ids of the tasks in these states (only those `held_by` holds, when given), oldest first."""
        c = tasks_table.c
        stmt = select(c.id).where(c.state.in_([s.value for s in states]))
        if held_by is not None:
            stmt = stmt.where(c.held_by == held_by)
        return [r[0] for r in await self._read(_all_rows, stmt.order_by(c.id))]

    # -- replicas ---------------------------------------------------------------------------------

    async def register_replica(self, replica: Replica, lease_seconds: float) -> int:
        """Start (or restart) `replica`'s lease and return its new generation; it also adopts the
        unfinished tasks no replica holds (stored before replicas held tasks)."""
        return await self._write(_register_replica, replica, lease_seconds)

    async def renew_replica(self, replica_id: str, generation: int, lease_seconds: float) -> bool:
        """Extend the lease; False when this generation lost it (another replica took its tasks over)."""
        return await self._write(_renew_replica, replica_id, generation, lease_seconds)

    async def release_replica(self, replica_id: str, generation: int) -> None:
        """End the lease now (a clean stop), so another replica takes the unfinished tasks over at once."""
        await self._write(_release_replica, replica_id, generation)

    async def take_over(self, taker: str) -> builtins.list[TakenOver]:
        """Move the unfinished tasks of every replica whose lease has expired to `taker`.

        Each dead replica is won by one conditional update of its row (its generation), so when
        several replicas try at once exactly one gets its tasks."""
        return await self._write(_take_over, taker)

    async def count_by_state(self) -> dict[State, int]:
        """Tasks per state, for metrics and the dashboard."""
        stmt = select(tasks_table.c.state, func.count()).group_by(tasks_table.c.state)
        return {State(r[0]): int(r[1]) for r in await self._read(_all_rows, stmt)}

    def _filters(self, query: TaskQuery) -> builtins.list[Any]:
        c = tasks_table.c
        conditions: builtins.list[Any] = [self._visibility(query.visibility)]
        if query.name_prefix:
            conditions += [c.name >= query.name_prefix, c.name < query.name_prefix + _HIGHEST_CHAR]
        if query.state is not None:
            conditions.append(c.state == query.state.value)
        t = task_tags_table.c
        for key, value in query.tags.items():
            match = and_(t.task_id == c.id, t.key == key)
            if value:
                match = and_(match, t.value == value)
            conditions.append(exists().where(match))
        return conditions

    @staticmethod
    def _visibility(vis: Visibility) -> Any:
        c = tasks_table.c
        if vis.all:
            return c.id.is_not(None)
        clauses: list[Any] = []
        if vis.owner is not None:
            mine = c.owner == vis.owner
            if vis.owner_teams is not None:
                mine = and_(mine, c.team.in_(sorted(vis.owner_teams)))
            clauses.append(mine)
        if vis.teams:
            clauses.append(c.team.in_(sorted(vis.teams)))
        return or_(*clauses) if clauses else false()

    # -- page tokens ------------------------------------------------------------------------------

    @staticmethod
    def _query_digest(query: TaskQuery) -> str:
        shape = [query.name_prefix, query.state, sorted(query.tags.items()), repr(query.visibility)]
        return hashlib.sha256(json.dumps(shape, default=str).encode()).hexdigest()[:16]

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:24]

    def _make_token(self, last_id: str, digest: str) -> str:
        payload = f"{last_id}|{digest}"
        raw = f"{payload}|{self._sign(payload)}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_token(self, token: str, digest: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            last_id, token_digest, signature = raw.split("|")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidPageToken("page_token is not one this server issued; start again without it") from exc
        if not hmac.compare_digest(signature, self._sign(f"{last_id}|{token_digest}")):
            raise InvalidPageToken("page_token is not one this server issued; start again without it")
        if token_digest != digest:
            raise InvalidPageToken(
                "page_token belongs to a list with other filters; repeat the same filters or start without it"
            )
        return last_id

    # -- events -----------------------------------------------------------------------------------

    def _publish(self, task_id: str, state: State) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait((task_id, state))
            except asyncio.QueueFull:
                log.warning("a state-change subscriber is too slow; dropped the event of task %s", task_id)

    async def subscribe(self) -> AsyncIterator[tuple[str, State]]:
        """State changes made through this store object, as they happen."""
        queue: asyncio.Queue[tuple[str, State]] = asyncio.Queue(maxsize=10000)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)


_GET_SQL = "SELECT id, state, owner, team, body, held_by FROM tasks WHERE id = ?"


def _get_row(conn: Connection, task_id: str) -> Any:
    c = tasks_table.c
    return conn.execute(select(c.id, c.state, c.owner, c.team, c.body, c.held_by).where(c.id == task_id)).first()


def _all_rows(conn: Connection, stmt: Any) -> list[Any]:
    return list(conn.execute(stmt).all())


def _load_secret(conn: Connection) -> bytes:
    """The key that signs page tokens: made once per store, shared by every replica using it."""
    row = conn.execute(select(meta_table.c.value).where(meta_table.c.key == _TOKEN_SECRET_KEY)).first()
    if row is not None:
        return bytes.fromhex(row[0])
    value = secrets.token_bytes(32)
    conn.execute(insert(meta_table).values(key=_TOKEN_SECRET_KEY, value=value.hex()))
    return value


def _insert_tasks(
    conn: Connection, rows: list[dict[str, Any]], tag_rows: list[dict[str, str]], key_rows: list[dict[str, str]]
) -> None:
    conn.execute(insert(tasks_table), rows)
    if tag_rows:
        conn.execute(insert(task_tags_table), tag_rows)
    if key_rows:
        # The API lets one request per key through at a time; a key another replica stored first keeps
        # its task, and this batch must not fail for it.
        dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
        conn.execute(dialect_insert(idempotency_table).on_conflict_do_nothing(), key_rows)


def _update_task(
    conn: Connection,
    task_id: str,
    state: State | None,
    logs: list[TaskLog] | None,
    only_from: frozenset[State] | None,
    held_by: str | None,
    lock_row: bool,
) -> tuple[StoredTask, bool] | None:
    """Compare-and-set of state and logs; returns the new row and whether the state changed."""
    while True:
        query = select(tasks_table).where(tasks_table.c.id == task_id)
        if lock_row:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            return None
        current = State(row["state"])
        if only_from is not None and current not in only_from:
            return None
        if held_by is not None and row["held_by"] != held_by:
            return None
        if state is not None and current in TERMINAL_STATES and state != current:
            return None
        values: dict[str, Any] = {}
        body = row["body"]
        if logs is not None:
            task = Task.model_validate_json(body)
            task.logs = logs
            body = task.model_dump_json(exclude_none=True)
            values["body"] = body
        if state is not None and state != current:
            values["state"] = state.value
        if values:
            # Guarded by the state read above: SQLite takes no row lock on that read, so another
            # process may have changed the task since; then decide again.
            guard = [tasks_table.c.id == task_id, tasks_table.c.state == current.value]
            if held_by is not None:
                guard.append(tasks_table.c.held_by == held_by)
            written = conn.execute(update(tasks_table).where(*guard).values(**values))
            if written.rowcount == 0:
                continue
        new_state = state if state is not None else current
        stored = StoredTask(task_id, new_state, row["owner"], row["team"], body, held_by=row["held_by"])
        return stored, new_state != current


def _db_now(conn: Connection) -> Any:
    """The database server's clock in seconds since the epoch: leases compare times taken on one clock."""
    if conn.dialect.name == "sqlite":
        return (func.julianday("now") - 2440587.5) * 86400.0
    return func.extract("epoch", func.clock_timestamp())


def _register_replica(conn: Connection, replica: Replica, lease_seconds: float) -> int:
    r = replicas_table.c
    values = {"host": replica.host, "instance": replica.instance, "expires": _db_now(conn) + lease_seconds}
    current = conn.execute(select(r.generation).where(r.id == replica.id)).scalar()
    generation = 1 if current is None else current + 1
    if current is None:
        conn.execute(insert(replicas_table).values(id=replica.id, generation=generation, **values))
    else:
        conn.execute(update(replicas_table).where(r.id == replica.id).values(generation=generation, **values))
    t = tasks_table.c
    held = [s.value for s in HELD_STATES]
    conn.execute(update(tasks_table).where(t.held_by.is_(None), t.state.in_(held)).values(held_by=replica.id))
    return generation


def _renew_replica(conn: Connection, replica_id: str, generation: int, lease_seconds: float) -> bool:
    r = replicas_table.c
    written = conn.execute(
        update(replicas_table)
        .where(r.id == replica_id, r.generation == generation)
        .values(expires=_db_now(conn) + lease_seconds)
    )
    return written.rowcount == 1


def _release_replica(conn: Connection, replica_id: str, generation: int) -> None:
    r = replicas_table.c
    conn.execute(update(replicas_table).where(r.id == replica_id, r.generation == generation).values(expires=0.0))


def _take_over(conn: Connection, taker: str) -> list[TakenOver]:
    r, t = replicas_table.c, tasks_table.c
    held = [s.value for s in HELD_STATES]
    holds_tasks = exists().where(t.held_by == r.id, t.state.in_(held))
    expired = conn.execute(
        select(r.id, r.host, r.instance, r.generation).where(r.expires < _db_now(conn), r.id != taker, holds_tasks)
    ).all()
    taken: list[TakenOver] = []
    for replica_id, host, instance, generation in expired:
        won = conn.execute(
            update(replicas_table)
            .where(r.id == replica_id, r.generation == generation, r.expires < _db_now(conn))
            .values(generation=generation + 1)
        )
        if won.rowcount != 1:
            continue  # another replica took it over first, or it came back
        moved = conn.execute(
            update(tasks_table)
            .where(t.held_by == replica_id, t.state.in_(held))
            .values(held_by=taker)
            .returning(t.id)
        ).all()
        taken.append(TakenOver(Replica(replica_id, host, instance), sorted(row[0] for row in moved)))
    return taken


_SQLITE_LOCK_WAIT_MS = 20
"""How long one SQLite statement waits for the write lock (the wait blocks the event loop)."""

_UNAVAILABLE = (sa_exc.TimeoutError, sa_exc.InterfaceError, OSError)
"""PostgreSQL errors that mean "no connection now" (pool exhausted, server gone or failing over)."""


def _sqlite_locked(exc: sa_exc.OperationalError) -> bool:
    text = str(exc.orig)
    return "database is locked" in text or "database is busy" in text


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_LOCK_WAIT_MS}")
    cursor.close()


