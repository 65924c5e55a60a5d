"""The task store: where every task, its state and its logs live.

The API reads only the store (a GET or LIST never costs a backend call); backends write progress into
it. `TaskStore` is the protocol; `tesk.store.sql.SqlTaskStore` implements it for SQLite and PostgreSQL.
"""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from tesk.errors import ServiceUnavailable
from tesk.models import State, Task, TaskLog

DEFAULT_PAGE_SIZE = 256
MAX_PAGE_SIZE = 2047
"""The spec: page_size 'must be less than 2048'."""


@dataclass(frozen=True)
class Visibility:
    """Which tasks a caller may see, as an OR of three clauses the store turns into SQL.

    A task is visible when `all`, or it belongs to `owner` (and, when `owner_teams` is set, to one of
    those teams), or its team is one of `teams`.
    """

    all: bool = False
    owner: str | None = None
    owner_teams: frozenset[str] | None = None
    teams: frozenset[str] = frozenset()

    def allows(self, owner: str, team: str | None) -> bool:
        if self.all:
            return True
        if (self.owner is not None and owner == self.owner
                and (self.owner_teams is None or (team is not None and team in self.owner_teams))):
            return True
        return team is not None and team in self.teams


EVERYONE = Visibility(all=True)


@dataclass(frozen=True)
class TaskQuery:
    """A LIST request: filters combine with AND; tags with value "" match any value of the key."""

    name_prefix: str | None = None
    state: State | None = None
    tags: dict[str, str] = field(default_factory=dict)
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None
    visibility: Visibility = EVERYONE
    with_body: bool = True
    """False when only id and state are needed (the MINIMAL view): the body is then not read."""


@dataclass
class StoredTask:
    """One row of the store. `task` is parsed lazily, because MINIMAL pages never need it."""

    id: str
    state: State
    owner: str
    team: str | None
    body: str | None = None
    _task: Task | None = None
    held_by: str | None = None
    """The server replica that runs the task (local backend); None when no replica holds it."""

    @property
    def task(self) -> Task:
        if self._task is None:
            if self.body is None:
                raise RuntimeError(f"task {self.id} was read without its body")
            self._task = Task.model_validate_json(self.body)
            self._task.state = self.state
        return self._task


@dataclass
class TaskPage:
    tasks: list[StoredTask]
    next_page_token: str | None


class StoreBusy(ServiceUnavailable):
    """The store did not take a statement within its bound (SQLite locked by another connection,
    PostgreSQL's pool exhausted or the server failing over): the API answers 503 + Retry-After."""


class InvalidPageToken(ValueError):
    """A page_token this server did not issue for this query."""


HELD_STATES: frozenset[State] = frozenset(
    {State.QUEUED, State.INITIALIZING, State.RUNNING, State.PAUSED, State.UNKNOWN, State.CANCELING}
)
"""States in which a task is some replica's to run or to finish cancelling (every non-terminal one)."""


@dataclass(frozen=True)
class Replica:
    """One server process that runs tasks itself (the local backend), as other replicas see it.

    `host` and `instance` (the label on its containers) let a replica on the same host remove the
    containers of a dead one whose tasks it takes over."""

    id: str
    host: str
    instance: str


@dataclass(frozen=True)
class TakenOver:
    """The tasks a takeover moved from a replica whose lease had expired to the taker."""

    replica: Replica
    task_ids: list[str]


class TaskStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create(
        self, task: Task, owner: str, team: str | None, held_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> None: ...

    async def task_for_idempotency_key(self, owner: str, key: str) -> str | None: ...

    async def get(self, task_id: str) -> StoredTask | None: ...

    async def list(self, query: TaskQuery) -> TaskPage: ...

    async def update(
        self,
        task_id: str,
        *,
        state: State | None = None,
        logs: builtins.list[TaskLog] | None = None,
        only_from: frozenset[State] | None = None,
        held_by: str | None = None,
    ) -> StoredTask | None: ...

    async def ids_in_states(self, states: Iterable[State], held_by: str | None = None) -> builtins.list[str]: ...

    async def register_replica(self, replica: Replica, lease_seconds: float) -> int: ...

    async def renew_replica(self, replica_id: str, generation: int, lease_seconds: float) -> bool: ...

    async def release_replica(self, replica_id: str, generation: int) -> None: ...

    async def take_over(self, taker: str) -> builtins.list[TakenOver]: ...

    async def count_by_state(self) -> dict[State, int]: ...

    def subscribe(self) -> AsyncIterator[tuple[str, State]]: ...


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_id_lock = threading.Lock()
_last_id: list[int] = [0, 0]


def new_task_id() -> str:
    """A time-ordered id (48-bit ms clock + 80 random bits, ULID-like, lower case for Kubernetes names).

    Ids sort by creation, so the primary key is also the keyset for newest-first pages. Within one
    millisecond the random part is incremented, keeping ids of this process strictly increasing.
    """
    with _id_lock:
        now = int(time.time() * 1000)
        if now <= _last_id[0]:
            now = _last_id[0]
            rand = _last_id[1] + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_id[0], _last_id[1] = now, rand
    value = (now << 80) | (rand & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "task-" + "".join(reversed(chars))
