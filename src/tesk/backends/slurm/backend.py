"""The Slurm backend's API side: sbatch on submit, scancel on cancel, and a loop that reconciles.

Every `poll_seconds` the loop reads squeue (one call for all tasks) and each active task's worker
report, and moves the task in the store: progress while the job runs, the final state when the job
has ended: the report's, unless the job's end says otherwise (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL,
PREEMPTED... see `states.py`). Between those rounds it looks at the report files of running jobs (a
stat each, no Slurm call): a final report means the job is about to end, so the next round comes at
once rather than up to `poll_seconds` later. Each report carries the job's restart count, so the
final report of a run that Slurm has since requeued is not taken for the end of the new run. A job
that ended without a final report, or that the controller no longer knows, ends its task as
SYSTEM_ERROR with the job's output tail, so nothing stays QUEUED or RUNNING forever. A restarted
API finds its tasks' jobs by name (`tesk-<task id>`) and the job id in the task folder, so running
jobs are adopted, not run again; a task stored but never submitted (the API stopped in between) is
submitted at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shlex
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tesk.backends import BackendError
from tesk.backends.slurm import commands
from tesk.backends.slurm.commands import Job, SlurmError, job_name
from tesk.backends.slurm.folder import JobFolder, Report
from tesk.backends.slurm.states import ending
from tesk.config import SlurmSettings, TeskConfig
from tesk.failures import Failure, FailureReason
from tesk.limits import TIME_LIMIT_PARAMETERS, TimeLimits
from tesk.models import ACTIVE_STATES, State, Task, TaskLog, notes_entry, split_notes
from tesk.store import StoredTask, TaskStore

log = logging.getLogger(__name__)

PARAMETERS: dict[str, str] = {
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "constraint": "--constraint",
    "gres": "--gres",
    "time": "--time",
}
"""Supported backend_parameters and the sbatch option each sets."""

REPORT_SECONDS = 0.25
"""How often, between squeue rounds, the loop looks at the report files of tasks whose job runs."""


_FIRST_HURRY = 0.1
"""Seconds from a round that saw a run's final report, its job still active, to the next round."""

_WORKER_GRACE_MINUTES = 1
"""Added to a task's time limit in the job's `--time`: the worker stops the task at the limit itself
(its log kept, TimeLimitExceeded) and needs a moment to report; Slurm's TIMEOUT is the backstop."""


def sbatch_options(task: Task, slurm: SlurmSettings, default_time_limit: int | None = None) -> list[str]:
    """The task's resources and backend_parameters as sbatch options (site defaults first); the
    task's time limit (`tesk.time_limit`, else the server's default) as `--time`, unless the task
    gives Slurm's own `time`, which comes later and wins."""
    options: list[str] = []
    if slurm.partition:
        options.append(f"--partition={slurm.partition}")
    if slurm.account:
        options.append(f"--account={slurm.account}")
    limit = TimeLimits.of(task, default_time_limit).task
    if limit is not None:
        options.append(f"--time={math.ceil(limit / 60) + _WORKER_GRACE_MINUTES}")
    resources = task.resources
    if resources is not None:
        if resources.cpu_cores:
            options.append(f"--cpus-per-task={math.ceil(resources.cpu_cores)}")
        if resources.ram_gb:
            options.append(f"--mem={math.ceil(resources.ram_gb * 1024)}M")
        if resources.disk_gb:
            options.append(f"--tmp={math.ceil(resources.disk_gb * 1024)}M")
        for key, value in (resources.backend_parameters or {}).items():
            option = PARAMETERS.get(key.lower())
            if option is not None:
                options.append(f"{option}={value}")  # later options win in sbatch: the task's over the site's
    return options + shlex.split(slurm.sbatch_options)


def _with_note(logs: list[TaskLog], line: str, failure: FailureReason) -> list[TaskLog]:
    """`logs` with `line` added to the last run's system log (or to a new entry when none ran), and
    the task's `failure` recorded there (it replaces the worker's: the job's end decides)."""
    now = datetime.now(UTC)
    if logs and logs[-1].start_time is not None:
        last = logs[-1].model_copy(deep=True)
        last.end_time = last.end_time or now
        last.system_logs = [*(last.system_logs or []), line]
    else:
        last = TaskLog(start_time=now, end_time=now, logs=[], outputs=[], system_logs=[*split_notes(logs)[0], line])
    Failure(failure).record(last)
    return [*logs[:-1], last]


class SlurmBackend:
    name = "slurm"
    backend_parameters: frozenset[str] = frozenset(PARAMETERS) | TIME_LIMIT_PARAMETERS
    replica_id: str | None = None

    @classmethod
    def from_config(cls, config: TeskConfig, store: TaskStore) -> SlurmBackend:
        """The backend of `tesk serve`: the slurm section, task folders under the data folder by default."""
        return cls(store, config.slurm, config.server.data_dir, config.server.task_time_limit_seconds)

    def __init__(self, store: TaskStore, slurm: SlurmSettings, data_dir: Path,
                 default_time_limit: int | None = None) -> None:
        """`default_time_limit`: TESK_TASK_TIME_LIMIT_SECONDS, the limit of a task without its own."""
        self.store = store
        self.default_time_limit = default_time_limit
        self.slurm = slurm
        self.shared_dir = (slurm.shared_dir or data_dir / "slurm").resolve()
        self._loop: asyncio.Task[None] | None = None
        self._cancels: dict[str, str] = {}
        """Task id -> who cancelled it, for the tasks whose job was sent scancel by this server."""
        self._running: dict[str, float | None] = {}
        """Task id -> its report's modification time at the last look, for the tasks whose job was
        submitted or seen active since (the ones whose report may turn final between rounds)."""
        self._ending: set[str] = set()
        """Tasks whose worker has finished its run while the job was still active at the last round."""
        self._hurry: dict[str, float] = {}
        """Task of `_ending` -> seconds before the next round looks whether its job has ended."""

    def folder(self, task_id: str) -> JobFolder:
        return JobFolder(self.shared_dir / task_id)

    # -- Backend protocol -------------------------------------------------------------------------

    async def start(self) -> None:
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        for task_id in await self.store.ids_in_states([State.QUEUED]):
            stored = await self.store.get(task_id)
            if stored is not None and self.folder(task_id).job_id() is None:
                log.info("task %s: stored but never submitted (the server stopped in between); submitting it",
                         task_id, extra={"task_id": task_id})
                await self.submit(stored, split_notes(stored.task.logs)[0])
        self._loop = asyncio.create_task(self._reconcile_loop(), name="tesk-slurm-reconcile")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def submit(self, stored: StoredTask, notes: Sequence[str]) -> None:
        folder = self.folder(stored.id)
        # The job document is the task with the API's notes as its last log entry, for the worker.
        attempts = split_notes(stored.task.logs)[1]
        task = stored.task.model_copy(update={"logs": [*attempts, notes_entry(notes)] if notes else attempts or None})
        try:
            await asyncio.to_thread(self._write_job, folder, task)
            environ = dict(os.environ)
            exported = self.slurm.exported(environ)
            options = [
                f"--job-name={job_name(stored.id)}",
                f"--comment=tesk task {stored.id}",
                f"--output={folder.output}",
                f"--chdir={folder.root}",
                f"--export={','.join(exported) if exported else 'NONE'}",
                *sbatch_options(task, self.slurm, self.default_time_limit),
            ]
            job_id = await commands.sbatch(options, str(folder.script), environ)
        except (SlurmError, OSError) as exc:
            reason = f"the task could not be submitted to Slurm: {exc}"
            log.warning("task %s: %s", stored.id, reason, extra={"task_id": stored.id})
            logs = _with_note(list(task.logs or []), reason, FailureReason.INTERNAL_ERROR)
            await self.store.update(stored.id, state=State.SYSTEM_ERROR, logs=logs, only_from=ACTIVE_STATES)
            await asyncio.to_thread(folder.remove)
            return
        await asyncio.to_thread(folder.write_job_id, job_id)
        self._running.setdefault(stored.id, None)
        log.info("task %s: submitted as Slurm job %s", stored.id, job_id, extra={"task_id": stored.id})

    async def cancel(self, stored: StoredTask, by: str) -> None:
        job_id = self.folder(stored.id).job_id()
        if job_id is None:
            await self.store.update(stored.id, state=State.CANCELED,
                                    logs=_with_note(list(stored.task.logs or []), f"canceled by {by} before it was submitted",
                                                    FailureReason.CANCELED),
                                    only_from=frozenset({State.CANCELING}))
            return
        try:
            await commands.scancel(job_id)
        except SlurmError as exc:
            raise BackendError(f"task {stored.id}: scancel of Slurm job {job_id} failed: {exc}", 503) from exc
        self._cancels[stored.id] = by

    # -- internals -----------------------------------------------------------------------------------

    def _write_job(self, folder: JobFolder, task: Task) -> None:
        folder.write_task(task)
        command = [*shlex.split(self.slurm.worker_command), "worker", str(folder.root)]
        if self.default_time_limit is not None:
            command += ["--default-time-limit", str(self.default_time_limit)]
        folder.script.write_text(f"#!/bin/sh\nexec {shlex.join(command)}\n")

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - Slurm or the store may be away for a while; keep trying
                log.warning("slurm backend: could not reconcile the tasks with Slurm: %s", exc)
            await self._until_next_round()

    async def _until_next_round(self) -> None:
        """Wait `poll_seconds`, or less when a run has just ended: its job ends a moment later (the
        worker exits, then Slurm completes the job: about 0.2-0.5 s), and a task should not wait a whole
        poll for it. The rounds for a job that is still ending come 0.1 s, 0.2 s, 0.4 s... apart (one
        squeue for all tasks each; a long epilog does not make squeue be asked over and over)."""
        self._hurry = {task_id: self._hurry.get(task_id, _FIRST_HURRY / 2) * 2 for task_id in self._ending}
        self._ending = set()
        deadline = time.monotonic() + min([self.slurm.poll_seconds, *self._hurry.values()])
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(REPORT_SECONDS, left))
            if await asyncio.to_thread(self._a_run_ended):
                return

    def _a_run_ended(self) -> bool:
        """Whether the worker of a running job has written its final report since the last look."""
        for task_id, seen in list(self._running.items()):  # a copy: submits add to it meanwhile
            folder = self.folder(task_id)
            try:
                changed = folder.report_changed()
                if changed == seen:
                    continue
                self._running[task_id] = changed
                report = folder.read_report()
            except (OSError, ValueError):
                return True  # an unreadable report: the round reads it again and says what is wrong
            if report is not None and report.final:
                return True
        return False

    async def reconcile(self) -> None:
        """One round: every active task against its job and its worker's report."""
        known = set(self._running)
        task_ids = await self.store.ids_in_states([*ACTIVE_STATES, State.CANCELING])
        for task_id in known - set(task_ids):  # ended meanwhile (tasks submitted since the listing stay)
            self._running.pop(task_id, None)
        if not task_ids:
            return
        # Job ids are read before squeue is asked: a job whose id is on file was accepted by then, so
        # squeue lists it. Read after, a job submitted meanwhile would look vanished.
        job_ids = await asyncio.to_thread(lambda: {task_id: self.folder(task_id).job_id() for task_id in task_ids})
        jobs = await commands.jobs()
        for task_id in task_ids:
            job_id = job_ids[task_id]
            if job_id is not None:  # None: being submitted now, or submitted at the next start
                await self._reconcile_task(task_id, job_id, jobs.get(task_id))

    async def _reconcile_task(self, task_id: str, job_id: str, job: Job | None) -> None:
        stored = await self.store.get(task_id)
        if stored is None or not (stored.state in ACTIVE_STATES or stored.state is State.CANCELING):
            return
        folder = self.folder(task_id)
        if job is not None and job.job_id != job_id:
            job = None
        seen = await asyncio.to_thread(folder.report_changed)
        report = await asyncio.to_thread(folder.read_report)
        earlier = await asyncio.to_thread(self._earlier_logs, folder)
        if job is not None and job.active:
            self._running[task_id] = seen
            if stored.state is State.CANCELING and task_id not in self._cancels:
                await self.cancel(stored, "a user (through another server)")
            elif report is not None and report.final and report.run >= job.restarts:
                self._ending.add(task_id)  # this run is over; the job's own end decides the task's
            elif report is not None and stored.state is not State.CANCELING:
                await self._progress(stored, report, earlier)
            return
        self._running.pop(task_id, None)
        await self._finish(stored, folder, job_id, job, report, earlier)

    @staticmethod
    def _earlier_logs(folder: JobFolder) -> list[TaskLog]:
        """The logs the task had when it was submitted, without the notes entry the worker takes over."""
        try:
            logs = list(folder.read_task().logs or [])
        except FileNotFoundError:
            return []
        return split_notes(logs)[1]

    async def _progress(self, stored: StoredTask, report: Report, earlier: list[TaskLog]) -> None:
        logs = [*earlier, report.log]
        # A final report of an earlier run of a job that is still active: Slurm requeued the job
        # (scontrol requeue, a node lost), which runs the worker again from the start.
        state = State.QUEUED if report.final else report.state
        if stored.state is state and (stored.task.logs or []) == logs:
            return
        await self.store.update(stored.id, state=state, logs=logs, only_from=ACTIVE_STATES)

    async def _finish(self, stored: StoredTask, folder: JobFolder, job_id: str, job: Job | None,
                      report: Report | None, earlier: list[TaskLog]) -> None:
        where = f"Slurm job {job_id}"
        logs = [*earlier, report.log] if report is not None else list(stored.task.logs or [])
        imposed = ending(job.state if job else None)
        if stored.state is State.CANCELING and (report is None or not report.final or imposed is not None):
            by = self._cancels.pop(stored.id, "a user")
            state, noted = State.CANCELED, (f"canceled by {by}; {where} was cancelled", FailureReason.CANCELED)
        elif imposed is not None:
            state, noted = imposed[0], (f"{where} {imposed[2]}", imposed[1])
        elif report is not None and report.final:
            state, noted = report.state, None  # the worker's runner recorded the reason
        else:
            seen = f"ended {job.state}" if job else "is no longer known to Slurm"
            tail = await asyncio.to_thread(folder.output_tail)
            state = State.SYSTEM_ERROR
            noted = (f"{where} {seen} without a final report from its worker; its output: {tail or '(none)'}",
                     FailureReason.INTERNAL_ERROR)
        if noted is not None:
            logs = _with_note(logs, *noted)
        allowed = frozenset({State.CANCELING}) if state is State.CANCELED else ACTIVE_STATES | {State.CANCELING}
        if await self.store.update(stored.id, state=state, logs=logs, only_from=allowed) is not None:
            log.info("task %s: %s ended; the task is %s", stored.id, where, state.value, extra={"task_id": stored.id})
            self._cancels.pop(stored.id, None)
            await asyncio.to_thread(folder.remove)
