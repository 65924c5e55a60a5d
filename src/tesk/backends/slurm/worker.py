"""`tesk worker`: runs one task inside its Slurm job, on the allocated node.

The shared `TaskRunner` with the local runtime (filer in-process, executors through the configured
engine) in the task's folder on the shared file system; progress and the final state go to
`report.json` there (see `tesk.backends.slurm.folder`). SIGTERM (scancel, the time limit, preemption:
Slurm sends it before SIGKILL) stops the running executor's container at once and ends the run; the
API then decides the task's state from the store (a cancel) and the job's final state (TIMEOUT, ...).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from tesk.backends.slurm.folder import JobFolder, Report
from tesk.failures import Failure, FailureReason
from tesk.limits import TimeLimits
from tesk.models import State, TaskLog, split_notes

STOPPED_BY_SLURM = "Slurm stopped the job (scancel, its time limit or preemption)"


class FileReporter:
    """The worker's `Reporter`: every report replaces `report.json` whole, marked with the job's run."""

    def __init__(self, folder: JobFolder) -> None:
        self.folder = folder
        self.run = int(os.environ.get("SLURM_RESTART_COUNT") or 0)

    async def update(self, state: State, log: TaskLog) -> bool:
        await asyncio.to_thread(self.folder.write_report, Report(state, log.model_copy(deep=True), False, self.run))
        return True

    async def finish(self, state: State, log: TaskLog) -> None:
        await asyncio.to_thread(self.folder.write_report, Report(state, log.model_copy(deep=True), True, self.run))


async def work(folder: JobFolder, default_time_limit: int | None = None) -> State:
    """Run the task of `folder` once and report its end; `default_time_limit` is the server's."""
    from tesk.backends.local.engines import select_engine
    from tesk.backends.local.runtime import LocalRuntime
    from tesk.config.local import LocalSettings
    from tesk.filer import FilerSettings
    from tesk.runner import TaskRunner

    task = folder.read_task()
    notes = split_notes(task.logs)[0]
    reporter = FileReporter(folder)
    local = LocalSettings()
    try:
        engine = await select_engine(local)
    except RuntimeError as exc:
        await reporter.finish(State.SYSTEM_ERROR, TaskLog(logs=[], outputs=[], system_logs=[
            *notes, f"no container engine on node: {exc}"], metadata=Failure(FailureReason.INTERNAL_ERROR).metadata()))
        return State.SYSTEM_ERROR
    runtime = LocalRuntime(folder.work, engine, local, FilerSettings(), "slurm")
    runner = TaskRunner(task, runtime, reporter, notes, TimeLimits.of(task, default_time_limit))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.abort, State.SYSTEM_ERROR, STOPPED_BY_SLURM)
    return await runner.run()


def worker(
    folder: Annotated[Path, typer.Argument(help="The task's folder on the shared file system.")],
    default_time_limit: Annotated[int | None, typer.Option(
        help="The server's TESK_TASK_TIME_LIMIT_SECONDS: the time limit of a task without tesk.time_limit.")] = None,
) -> None:
    """Run one task in its Slurm job (the command of the batch script the Slurm backend submits)."""
    from tesk.logs import configure_logging

    configure_logging("info")
    state = asyncio.run(work(JobFolder(folder), default_time_limit))
    print(f"tesk worker: task ended {state.value}")
