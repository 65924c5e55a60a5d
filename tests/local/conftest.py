"""Fixtures of the local backend tests: a real SQLite store and a LocalBackend on a real engine."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tesk.backends.local import LocalBackend
from tesk.config import TeskConfig
from tesk.models import State, Task, notes_entry
from tesk.store import StoredTask, new_task_id
from tesk.store.sql import SqlTaskStore

IMAGE = "localhost/busybox:latest"
ENGINES = ["podman", "process"]


def engine_available(engine: str) -> bool:
    return shutil.which("bwrap" if engine == "process" else engine) is not None


class Harness:
    """A started backend plus helpers to submit a task as the API would and wait for its end."""

    def __init__(self, backend: LocalBackend, store: SqlTaskStore, root: Path) -> None:
        self.backend = backend
        self.store = store
        self.root = root

    async def submit(self, body: dict[str, Any], notes: Sequence[str] = ()) -> str:
        task = Task.model_validate(body)
        task.id = new_task_id()
        task.state = State.QUEUED
        task.creation_time = datetime.now(UTC)
        task.logs = [notes_entry(notes)] if notes else None
        await self.store.create(task, "tester", None, held_by=self.backend.replica_id)
        stored = await self.store.get(task.id)
        assert stored is not None
        await self.backend.submit(stored, notes)
        return task.id

    async def get(self, task_id: str) -> StoredTask:
        stored = await self.store.get(task_id)
        assert stored is not None
        return stored

    async def states(self, task_ids: list[str]) -> list[State]:
        return [(await self.get(task_id)).state for task_id in task_ids]

    async def wait_for(self, task_id: str, states: set[State], timeout: float = 30.0) -> StoredTask:
        deadline = time.monotonic() + timeout
        while True:
            stored = await self.get(task_id)
            if stored.state in states:
                return stored
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} is {stored.state.value}, not in {states}, after {timeout} s")
            await asyncio.sleep(0.02)

    async def wait(self, task_id: str, timeout: float = 30.0) -> StoredTask:
        terminal = {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED, State.PREEMPTED}
        return await self.wait_for(task_id, terminal, timeout)

    async def settled(self, task_id: str, timeout: float = 5.0) -> None:
        """Wait until the backend let go of a task: the final state is stored *before* its files
        are removed, so a test that looks at the files must wait for this."""
        deadline = time.monotonic() + timeout
        while task_id in self.backend.runners or task_id in self.backend.scheduler.running:
            assert time.monotonic() < deadline, f"task {task_id} is still held by the backend"
            await asyncio.sleep(0.02)

    async def cancel(self, task_id: str, by: str = "tester") -> None:
        """What the API does: CANCELING in the store first, then the backend."""
        stored = await self.store.update(
            task_id, state=State.CANCELING,
            only_from=frozenset({State.QUEUED, State.INITIALIZING, State.RUNNING}),
        )
        assert stored is not None
        await self.backend.cancel(stored, by)

    async def run(self, body: dict[str, Any], timeout: float = 30.0) -> StoredTask:
        return await self.wait(await self.submit(body), timeout)


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    """`await make_harness(engine="podman", server={TESK_* settings}, **TESK_LOCAL_* settings)`;
    everything stops at teardown."""
    started: list[Harness] = []

    async def make(engine: str = "podman", server: dict[str, Any] | None = None, **local: Any) -> Harness:
        if not engine_available(engine):
            pytest.skip(f"{engine} is not installed on this machine")
        root = tmp_path / f"server{len(started)}"
        config = TeskConfig.read(server={"data_dir": root} | (server or {}),
                                 local={"network": "none", "pull": "never", "engine": engine} | local)
        store = SqlTaskStore(config.database_url)
        await store.open()
        backend = LocalBackend.from_config(config, store)
        await backend.start()
        harness = Harness(backend, store, root)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await harness.backend.stop()
        await harness.store.close()
