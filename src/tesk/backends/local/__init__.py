"""The local backend: runs tasks on this host in docker or podman containers (or bare processes).

`submit` queues a task in the scheduler; when it fits, a `TaskRunner` runs it with a `LocalRuntime`
(task area + engine) and a `StoreReporter` (the task store). Every container carries labels with the
server instance and task id, so a restarted server finds what a previous run left behind: on `start`,
containers of this instance are removed and tasks left INITIALIZING/RUNNING run again from the start
(up to `TESK_LOCAL_MAX_ATTEMPTS` runs, then SYSTEM_ERROR), so no task stays non-terminal forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime

from tesk.backends.local.engines import LABEL_INSTANCE, Engine, select_engine
from tesk.backends.local.folder import TaskFolder
from tesk.backends.local.runtime import LocalRuntime
from tesk.backends.local.scheduler import Scheduler
from tesk.backends.local.settings import LocalSettings
from tesk.config import Settings
from tesk.filer import FilerSettings
from tesk.models import ACTIVE_STATES, State, TaskLog
from tesk.runner import TaskRunner
from tesk.store import StoredTask, TaskStore

log = logging.getLogger(__name__)

_STOP_WAIT = 30.0


class StoreReporter:
    """The local `Reporter`: progress goes straight into the task store, after earlier attempts' logs."""

    def __init__(self, store: TaskStore, task_id: str, earlier: list[TaskLog]) -> None:
        self.store = store
        self.task_id = task_id
        self.earlier = earlier

    async def update(self, state: State, task_log: TaskLog) -> bool:
        stored = await self.store.update(
            self.task_id, state=state, logs=[*self.earlier, task_log], only_from=ACTIVE_STATES
        )
        return stored is not None

    async def finish(self, state: State, task_log: TaskLog) -> None:
        # CANCELED only follows CANCELING. A task whose work ended just as a cancel arrived keeps its
        # true final state (e.g. COMPLETE): its outputs exist, so claiming CANCELED would be false.
        allowed = frozenset({State.CANCELING}) if state is State.CANCELED else ACTIVE_STATES | {State.CANCELING}
        stored = await self.store.update(self.task_id, state=state, logs=[*self.earlier, task_log], only_from=allowed)
        if stored is None:
            log.warning("task %s: its final state %s was not recorded: the store had moved on",
                        self.task_id, state.value, extra={"task_id": self.task_id})


def _note(stored: StoredTask, line: str) -> list[TaskLog]:
    """The task's logs with `line` added to the last attempt (or to a new entry when none ran)."""
    logs = list(stored.task.logs or [])
    now = datetime.now(UTC)
    if logs and logs[-1].end_time is None:
        last = logs[-1].model_copy(deep=True)
        last.end_time = now
        last.system_logs = [*(last.system_logs or []), line]
        logs[-1] = last
    else:
        logs.append(TaskLog(start_time=now, end_time=now, logs=[], outputs=[], system_logs=[line]))
    return logs


class LocalBackend:
    name = "local"
    backend_parameters: frozenset[str] = frozenset()

    def __init__(self, settings: Settings, store: TaskStore, local: LocalSettings | None = None) -> None:
        self.settings = settings
        self.store = store
        self.local = local or LocalSettings()
        self.filer = FilerSettings()
        self.task_dir = (self.local.task_dir or settings.data_dir / "tasks").resolve()
        self.instance = hashlib.sha256(str(self.task_dir).encode()).hexdigest()[:10]
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
        if self.draining:
            log.info("local backend: draining (TESK_LOCAL_MAX_TASKS=0): tasks are queued, none starts")
        else:
            try:
                self.engine = await select_engine(self.local)
            except RuntimeError as exc:
                self.engine_problem = str(exc)
                log.error("local backend: %s; tasks will fail until this is fixed", exc)
        await self._reconcile()
        self._pump()

    async def stop(self) -> None:
        """Stop starting tasks; running ones are stopped and queued again for the next start."""
        self.stopping = True
        for runner in list(self.runners.values()):
            runner.abort(State.QUEUED, "the server stopped; the task will run again from the start when it is back")
        if self.jobs:
            await asyncio.wait(list(self.jobs), timeout=_STOP_WAIT)

    @property
    def draining(self) -> bool:
        """TESK_LOCAL_MAX_TASKS=0: accept and queue, start nothing (no engine is even looked for)."""
        return self.local.max_tasks == 0

    async def submit(self, stored: StoredTask) -> None:
        if self.engine is None and not self.draining:
            await self._fail(stored, self.engine_problem)
            return
        request = self.scheduler.request(stored.task)
        reason = self.scheduler.never_fits(request)
        if reason is not None:
            await self._fail(stored, reason)
            return
        self.scheduler.add(stored.id, request)
        self._pump()

    async def cancel(self, stored: StoredTask, by: str) -> None:
        runner = self.runners.get(stored.id)
        if runner is not None:
            runner.abort(State.CANCELED, f"canceled by {by}")
            return
        where = "while queued" if self.scheduler.remove(stored.id) else "before it started"
        await self.store.update(
            stored.id, state=State.CANCELED, logs=_note(stored, f"canceled by {by} {where}"),
            only_from=frozenset({State.CANCELING}),
        )

    # -- internals -----------------------------------------------------------------------------------

    async def _fail(self, stored: StoredTask, reason: str) -> None:
        log.warning("task %s: %s", stored.id, reason, extra={"task_id": stored.id})
        await self.store.update(
            stored.id, state=State.SYSTEM_ERROR, logs=_note(stored, reason), only_from=ACTIVE_STATES
        )

    def _pump(self) -> None:
        """Start every queued task that fits now."""
        if self.stopping or self.engine is None:
            return
        for task_id in self.scheduler.admit():
            job = asyncio.create_task(self._run(task_id), name=f"tesk-local-{task_id}")
            self.jobs.add(job)
            job.add_done_callback(self.jobs.discard)

    async def _run(self, task_id: str) -> None:
        assert self.engine is not None
        try:
            stored = await self.store.get(task_id)
            if stored is None or stored.state is not State.QUEUED:
                return
            task = stored.task
            earlier = list(task.logs or [])
            # A log entry without a start time holds notes made before any run (the API's warnings):
            # they belong to this run's log rather than to an attempt of their own.
            notes = earlier.pop().system_logs or [] if earlier and earlier[-1].start_time is None else []
            runtime = LocalRuntime(TaskFolder(self.task_dir / task_id), self.engine, self.local, self.filer, self.instance)
            runner = TaskRunner(task, runtime, StoreReporter(self.store, task_id, earlier), notes)
            self.runners[task_id] = runner
            await runner.run()
        except Exception:  # the scheduler must get its capacity back whatever happened
            log.exception("task %s: the local backend failed to run it", task_id, extra={"task_id": task_id})
        finally:
            self.runners.pop(task_id, None)
            self.scheduler.done(task_id)
            self._pump()

    async def _reconcile(self) -> None:
        """Bring back what a previous run of this server left: queue QUEUED tasks again, stop the
        containers of interrupted ones and run them again (or give up after max_attempts)."""
        engine = self.engine
        if engine is None and self.draining:
            # Even a draining server stops what a previous run left running.
            interrupted = await self.store.ids_in_states([State.INITIALIZING, State.RUNNING, State.CANCELING])
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
        states = [State.QUEUED, State.INITIALIZING, State.RUNNING, State.CANCELING]
        for task_id in await self.store.ids_in_states(states):
            stored = await self.store.get(task_id)
            if stored is None:
                continue
            await asyncio.to_thread(TaskFolder(self.task_dir / task_id).remove)
            if stored.state is State.CANCELING:
                await self.store.update(
                    task_id, state=State.CANCELED,
                    logs=_note(stored, "canceled; the server restarted before the cancel completed"),
                    only_from=frozenset({State.CANCELING}),
                )
                continue
            if stored.state is not State.QUEUED:
                attempts = len(stored.task.logs or [])
                line = f"the server stopped while the task was {stored.state.value}; its containers were stopped"
                if attempts >= self.local.max_attempts:
                    await self.store.update(
                        task_id, state=State.SYSTEM_ERROR,
                        logs=_note(stored, f"{line}; giving up after {attempts} attempts (TESK_LOCAL_MAX_ATTEMPTS)"),
                        only_from=frozenset({stored.state}),
                    )
                    continue
                updated = await self.store.update(
                    task_id, state=State.QUEUED,
                    logs=_note(stored, f"{line}; it runs again from the start (attempt {attempts + 1} of "
                                       f"{self.local.max_attempts})"),
                    only_from=frozenset({stored.state}),
                )
                if updated is None:
                    continue
                stored = updated
            await self.submit(stored)
