"""The local backend: runs tasks on this host in docker or podman containers (or bare processes).

`submit` queues a task in the scheduler; when it fits, a `TaskRunner` runs it with a `LocalRuntime`
(task area + engine) and a `StoreReporter` (the task store). Every container carries labels with the
server instance and task id, so a restarted server finds what a previous run left behind: on `start`,
containers of this instance are removed and tasks left INITIALIZING/RUNNING run again from the start
(up to `TESK_LOCAL_MAX_ATTEMPTS` runs, then SYSTEM_ERROR), so no task stays non-terminal forever.

Several servers (replicas) may share one PostgreSQL store. Each is a replica with a stable id (host
name + task folder), holds the tasks it accepted (`held_by`, recorded with the task) under a lease it
renews every third of `TESK_LOCAL_LEASE_SECONDS`, and writes a task only while it holds it. So:
- a restart resumes only this replica's own tasks;
- a cancel that came through another replica only marks the task CANCELING; its holder, which looks
  for such cancels every `TESK_LOCAL_CANCEL_POLL_SECONDS`, stops the container;
- a replica whose lease expired (it died, or was cut off) has its unfinished tasks taken over by one
  live replica, which runs them again from the start (a restart of theirs, as it were);
- a replica that finds its lease lost stops its containers and starts afresh (it was "fenced").
The task folder is locked (flock) so two live servers never share it, hence never a replica id.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Sequence
from typing import IO

from tesk.backends.local.engines import LABEL_INSTANCE, LABEL_TASK, Engine, select_engine
from tesk.backends.local.folder import TaskFolder
from tesk.backends.local.runtime import LocalRuntime
from tesk.backends.local.scheduler import Scheduler
from tesk.config import FilerSettings, LocalSettings, TeskConfig
from tesk.failures import Failure, FailureReason
from tesk.limits import TIME_LIMIT_PARAMETERS, TimeLimits
from tesk.models import ACTIVE_STATES, State, TaskLog, split_notes
from tesk.runner import TaskRunner
from tesk.store import HELD_STATES, Replica, StoredTask, TakenOver, TaskStore

log = logging.getLogger(__name__)

_STOP_WAIT = 30.0
_LOCK_FILE = ".tesk-server.lock"


class StoreReporter:
    """The local `Reporter`: progress goes straight into the task store, after earlier attempts' logs.

    Every write is guarded by `held_by`, so a replica that lost the task to another writes nothing;
    the first write is the claim: QUEUED -> INITIALIZING, which only one runner can make."""

    def __init__(self, store: TaskStore, task_id: str, earlier: list[TaskLog], held_by: str) -> None:
        self.store = store
        self.task_id = task_id
        self.earlier = earlier
        self.held_by = held_by
        self.claimed = False

    async def update(self, state: State, task_log: TaskLog) -> bool:
        stored = await self.store.update(
            self.task_id, state=state, logs=[*self.earlier, task_log],
            only_from=ACTIVE_STATES if self.claimed else frozenset({State.QUEUED}), held_by=self.held_by,
        )
        self.claimed = stored is not None
        return self.claimed

    async def finish(self, state: State, task_log: TaskLog) -> None:
        # CANCELED only follows CANCELING. A task whose work ended just as a cancel arrived keeps its
        # true final state (e.g. COMPLETE): its outputs exist, so claiming CANCELED would be false.
        allowed = frozenset({State.CANCELING}) if state is State.CANCELED else ACTIVE_STATES | {State.CANCELING}
        stored = await self.store.update(
            self.task_id, state=state, logs=[*self.earlier, task_log], only_from=allowed, held_by=self.held_by
        )
        if stored is None:
            log.warning("task %s: its final state %s was not recorded: the store had moved on",
                        self.task_id, state.value, extra={"task_id": self.task_id})


def _note(stored: StoredTask, line: str, failure: FailureReason | None = None) -> list[TaskLog]:
    """The task's logs with `line` added to the last attempt (or to a new entry when none ran), and
    `failure` recorded there when the task ends with it."""
    logs = list(stored.task.logs or [])
    now = datetime.now(UTC)
    if logs and logs[-1].end_time is None:
        last = logs[-1].model_copy(deep=True)
        last.end_time = now
        last.system_logs = [*(last.system_logs or []), line]
        logs[-1] = last
    else:
        logs.append(TaskLog(start_time=now, end_time=now, logs=[], outputs=[], system_logs=[line]))
    if failure is not None:
        Failure(failure).record(logs[-1])
    return logs


class LocalBackend:
    name = "local"
    backend_parameters: frozenset[str] = TIME_LIMIT_PARAMETERS

    @classmethod
    def from_config(cls, config: TeskConfig, store: TaskStore) -> LocalBackend:
        """The backend of `tesk serve`: the local and filer sections, task areas under the data folder."""
        return cls(store, config.local, config.filer, config.server.data_dir, config.server.task_time_limit_seconds)

    def __init__(self, store: TaskStore, local: LocalSettings, filer: FilerSettings, data_dir: Path,
                 default_time_limit: int | None = None) -> None:
        """`default_time_limit`: TESK_TASK_TIME_LIMIT_SECONDS, the limit of a task without its own."""
        self.store = store
        self.default_time_limit = default_time_limit
        self.local = local
        self.filer = filer
        self.task_dir = (local.task_dir or data_dir / "tasks").resolve()
        self.instance = hashlib.sha256(str(self.task_dir).encode()).hexdigest()[:10]
        self.host = socket.gethostname()
        self.replica_id = f"{self.host}-{self.instance}"
        """Stable across restarts of this server (same host, same task folder): it finds its tasks again."""
        self.generation: int | None = None
        """Of this replica's lease in the store; None while it holds no lease (then nothing starts)."""
        self.lease_until = 0.0
        self._lock: IO[str] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._canceling: set[str] = set()
        self._notes: dict[str, list[str]] = {}
        """The API's notes of each queued task (`submit`), which its run puts first in its system log."""
        self.scheduler = Scheduler(
            cpu_cores=self.local.cpu_cores,
            ram_gb=self.local.ram_gb,
            max_tasks=self.local.max_tasks,
            default_cpu_cores=self.local.default_cpu_cores,
            backfill_seconds=self.local.backfill_seconds,
        )
        self.engine: Engine | None = None
        self.engine_problem = "the local backend has not started"
        self.runners: dict[str, TaskRunner] = {}
        self.jobs: set[asyncio.Task[None]] = set()
        self.stopping = False

    # -- Backend protocol -------------------------------------------------------------------------

    async def start(self) -> None:
        self.task_dir.mkdir(parents=True, exist_ok=True)
        self._lock_task_dir()
        if self.draining:
            log.info("local backend: draining (TESK_LOCAL_MAX_TASKS=0): tasks are queued, none starts")
        else:
            try:
                self.engine = await select_engine(self.local)
            except RuntimeError as exc:
                self.engine_problem = str(exc)
                log.error("local backend: %s; tasks will fail until this is fixed", exc)
        await self._register()
        # Two loops: the lease is renewed on time however long a takeover or a cancel takes.
        self._loops = [asyncio.create_task(self._keep_lease(), name="tesk-local-lease"),
                       asyncio.create_task(self._watch_store(), name="tesk-local-watch")]

    async def stop(self) -> None:
        """Stop starting tasks; running ones are stopped and queued again for the next start, or for
        another replica, which takes them over at once since the lease is released."""
        self.stopping = True
        for runner in list(self.runners.values()):
            runner.abort(State.QUEUED, "the server stopped; the task will run again from the start when it is back")
        if self.jobs:
            await asyncio.wait(list(self.jobs), timeout=_STOP_WAIT)
        for loop in self._loops:  # renewed until now: nobody takes a task over while it still runs here
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if self.generation is not None:
            try:
                await self.store.release_replica(self.replica_id, self.generation)
            except Exception as exc:  # noqa: BLE001 - the lease then simply runs out
                log.warning("local backend: could not release this replica's lease (it expires on its own): %s", exc)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def draining(self) -> bool:
        """TESK_LOCAL_MAX_TASKS=0: accept and queue, start nothing (no engine is even looked for)."""
        return self.local.max_tasks == 0

    async def submit(self, stored: StoredTask, notes: Sequence[str]) -> None:
        if self.engine is None and not self.draining:
            await self._fail(stored, self.engine_problem, FailureReason.INTERNAL_ERROR)
            return
        request = self.scheduler.request(stored.task)
        reason = self.scheduler.never_fits(request)
        if reason is not None:
            await self._fail(stored, reason, FailureReason.UNSCHEDULABLE)
            return
        self._notes[stored.id] = list(notes)
        self.scheduler.add(stored.id, request)
        self._pump()

    async def cancel(self, stored: StoredTask, by: str) -> None:
        if stored.held_by is not None and stored.held_by != self.replica_id:
            # The store says CANCELING already; the holder sees it at its next look and stops the task.
            log.info("task %s: replica %s runs it and will stop it", stored.id, stored.held_by,
                     extra={"task_id": stored.id})
            return
        await self._cancel_here(stored, f"canceled by {by}")

    # -- internals -----------------------------------------------------------------------------------

    async def _cancel_here(self, stored: StoredTask, reason: str) -> None:
        runner = self.runners.get(stored.id)
        if runner is not None:
            runner.abort(State.CANCELED, reason)
            return
        self._canceling.add(stored.id)
        try:
            where = "while queued" if self.scheduler.remove(stored.id) else "before it started"
            self._notes.pop(stored.id, None)
            await self.store.update(
                stored.id, state=State.CANCELED,
                logs=_note(stored, f"{reason} {where}", FailureReason.CANCELED),
                only_from=frozenset({State.CANCELING}), held_by=self.replica_id,
            )
        finally:
            self._canceling.discard(stored.id)

    async def _fail(self, stored: StoredTask, reason: str, failure: FailureReason) -> None:
        log.warning("task %s: %s", stored.id, reason, extra={"task_id": stored.id})
        await self.store.update(
            stored.id, state=State.SYSTEM_ERROR, logs=_note(stored, reason, failure), only_from=ACTIVE_STATES,
            held_by=self.replica_id,
        )

    def _lock_task_dir(self) -> None:
        """Refuse to share the task folder with a live server: the containers, the folders and the
        replica id derived from it would be both servers' at once. The lock dies with the process."""
        handle = (self.task_dir / _LOCK_FILE).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(
                f"another tesk server is running tasks from {self.task_dir}; every server (replica) needs a "
                "task folder of its own: give this one another TESK_DATA_DIR or TESK_LOCAL_TASK_DIR"
            ) from None
        self._lock = handle

    async def _register(self) -> None:
        """Take this replica's lease (afresh), then resume what it holds."""
        started = time.monotonic()
        replica = Replica(self.replica_id, self.host, self.instance)
        self.generation = await self.store.register_replica(replica, self.local.lease_seconds)
        self.lease_until = started + self.local.lease_seconds
        log.info("local backend: replica %s holds its tasks (lease %g s)", self.replica_id, self.local.lease_seconds)
        await self._reconcile()
        self._pump()

    async def _keep_lease(self) -> None:
        """Renew the lease every third of it; fence this replica when it was lost, or when the store
        stays away so long that the lease is about to run out (another replica may take over then)."""
        renew_every = self.local.lease_seconds / 3
        while True:
            await asyncio.sleep(renew_every if self.generation is not None else self.local.cancel_poll_seconds)
            try:
                if self.generation is None:
                    await self._register()
                    continue
                started = time.monotonic()
                if await self.store.renew_replica(self.replica_id, self.generation, self.local.lease_seconds):
                    self.lease_until = started + self.local.lease_seconds
                    continue
                await self._fence("another replica took this replica's tasks over, as its lease had expired "
                                  "(was this server paused, or cut off from the database?)")
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while; keep trying
                log.warning("local backend: replica %s could not renew its lease: %s", self.replica_id, exc)
                if self.generation is not None and time.monotonic() > self.lease_until - renew_every:
                    await self._fence("its lease could not be renewed and is about to expire")

    async def _watch_store(self) -> None:
        """Pick up cancels made through other replicas, and take over the tasks of replicas whose
        lease expired (checked at each renewal's pace); a failed round is logged, the next one retries."""
        check_every = self.local.lease_seconds / 3
        next_check = time.monotonic() + check_every
        while True:
            await asyncio.sleep(self.local.cancel_poll_seconds)
            if self.generation is None:
                continue
            try:
                await self._cancels_from_elsewhere()
                if time.monotonic() < next_check or self.stopping or self.engine is None:
                    continue
                next_check = time.monotonic() + check_every
                for taken in await self.store.take_over(self.replica_id):
                    await self._adopt(taken)
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while; keep watching
                log.warning("local backend: replica %s could not read the task store: %s", self.replica_id, exc)

    async def _fence(self, why: str) -> None:
        """This replica no longer (surely) holds its tasks: stop every one of them here at once, so no
        task runs twice; re-register (and resume what is still ours) when the store answers."""
        log.error("local backend: replica %s: %s; stopping its running tasks and starting afresh",
                  self.replica_id, why)
        self.generation = None
        self.scheduler.clear()
        self._notes.clear()
        for runner in list(self.runners.values()):
            runner.abort(State.QUEUED, f"this server lost its hold on the task: {why}")
        if self.jobs:
            await asyncio.wait(list(self.jobs), timeout=_STOP_WAIT)

    async def _cancels_from_elsewhere(self) -> None:
        """Cancels of this replica's tasks that came through another replica."""
        for task_id in await self.store.ids_in_states([State.CANCELING], held_by=self.replica_id):
            stored = await self.store.get(task_id)
            if task_id in self._canceling or stored is None or stored.state is not State.CANCELING:
                continue
            await self._cancel_here(stored, "canceled through another replica")

    async def _adopt(self, taken: TakenOver) -> None:
        """Run the tasks of a dead replica again, as its own restart would have."""
        dead = taken.replica
        log.warning("local backend: replica %s stopped renewing its lease; replica %s took over its %d unfinished "
                    "task(s)", dead.id, self.replica_id, len(taken.task_ids))
        if dead.host == self.host and self.engine is not None:
            # Its containers outlive it and may run on here: stop them before the tasks run again.
            for task_id in taken.task_ids:
                try:
                    await self.engine.remove_labelled(LABEL_TASK, task_id)
                except RuntimeError as exc:
                    log.error("task %s: could not remove the containers replica %s left: %s", task_id, dead.id,
                              exc, extra={"task_id": task_id})
        for task_id in taken.task_ids:
            await self._resume(task_id, f"its server (replica {dead.id})", f"replica {self.replica_id} took it over")

    def _pump(self) -> None:
        """Start every queued task that fits now."""
        if self.stopping or self.engine is None or self.generation is None:
            return
        for task_id in self.scheduler.admit():
            job = asyncio.create_task(self._run(task_id), name=f"tesk-local-{task_id}")
            self.jobs.add(job)
            job.add_done_callback(self.jobs.discard)

    async def _run(self, task_id: str) -> None:
        assert self.engine is not None
        notes = self._notes.pop(task_id, [])
        try:
            stored = await self.store.get(task_id)
            if stored is None or stored.state is not State.QUEUED or stored.held_by != self.replica_id:
                return
            task = stored.task
            earlier = split_notes(task.logs)[1]  # the notes entry gives way to this run's log, which has them
            runtime = LocalRuntime(TaskFolder(self.task_dir / task_id), self.engine, self.local, self.filer, self.instance)
            reporter = StoreReporter(self.store, task_id, earlier, self.replica_id)
            runner = TaskRunner(task, runtime, reporter, notes, TimeLimits.of(task, self.default_time_limit))
            self.runners[task_id] = runner
            await runner.run()
        except Exception:  # the scheduler must get its capacity back whatever happened
            log.exception("task %s: the local backend failed to run it", task_id, extra={"task_id": task_id})
        finally:
            self.runners.pop(task_id, None)
            self.scheduler.done(task_id)
            self._pump()

    async def _reconcile(self) -> None:
        """Bring back what a previous run of this server left: queue its QUEUED tasks again, stop the
        containers of interrupted ones and run them again (or give up after max_attempts)."""
        engine = self.engine
        if engine is None and self.draining:
            # Even a draining server stops what a previous run left running.
            interrupted = await self.store.ids_in_states(
                [State.INITIALIZING, State.RUNNING, State.CANCELING], held_by=self.replica_id
            )
            if interrupted:
                with contextlib.suppress(RuntimeError):
                    engine = await select_engine(self.local)
        if engine is not None:
            try:
                removed = await engine.remove_labelled(LABEL_INSTANCE, self.instance)
            except RuntimeError as exc:
                log.error("local backend: could not look for containers a previous run left: %s", exc)
                removed = []
            if removed:
                log.info("local backend: removed %d container(s) a previous run left: %s", len(removed), ", ".join(removed))
        await self._remove_leftover_folders()
        for task_id in await self.store.ids_in_states(HELD_STATES, held_by=self.replica_id):
            await self._resume(task_id, "the server", "its containers were stopped")

    async def _remove_leftover_folders(self) -> None:
        """Task folders a previous run left: of tasks to run again, taken over by another replica, or
        finished without their clean-up; kept only when TESK_LOCAL_KEEP_TASK_AREAS says so."""
        names = await asyncio.to_thread(lambda: [p.name for p in self.task_dir.glob("task-*") if p.is_dir()])
        for name in names:
            if name in self.runners:
                continue
            stored = await self.store.get(name)
            if stored is None or not stored.state.is_terminal or not self.local.keeps_area(stored.state):
                await asyncio.to_thread(TaskFolder(self.task_dir / name).remove)

    async def _resume(self, task_id: str, server: str, then: str) -> None:
        """Run again a task this replica holds whose run was interrupted because `server` stopped;
        `then` says what was done about it (both go into the task's system log)."""
        stored = await self.store.get(task_id)
        if stored is None or stored.held_by != self.replica_id:
            return
        mine = frozenset({stored.state})
        if stored.state is State.CANCELING:
            await self.store.update(
                task_id, state=State.CANCELED,
                logs=_note(stored, f"canceled; {server} stopped before the cancel completed",
                           FailureReason.CANCELED),
                only_from=mine, held_by=self.replica_id,
            )
            return
        if stored.state is not State.QUEUED:
            attempts = len(stored.task.logs or [])
            line = f"{server} stopped while the task was {stored.state.value}; {then}"
            if attempts >= self.local.max_attempts:
                await self.store.update(
                    task_id, state=State.SYSTEM_ERROR,
                    logs=_note(stored, f"{line}; giving up after {attempts} attempts (TESK_LOCAL_MAX_ATTEMPTS)",
                               FailureReason.INTERNAL_ERROR),
                    only_from=mine, held_by=self.replica_id,
                )
                return
            updated = await self.store.update(
                task_id, state=State.QUEUED,
                logs=_note(stored, f"{line}; it runs again from the start (attempt {attempts + 1} of "
                                   f"{self.local.max_attempts})"),
                only_from=mine, held_by=self.replica_id,
            )
            if updated is None:
                return
            stored = updated
        await self.submit(stored, split_notes(stored.task.logs)[0])
