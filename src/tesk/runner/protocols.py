"""The two seams of the task lifecycle: where a task runs (`Runtime`) and where progress goes (`Reporter`).

Nothing here knows about hosts, containers engines or Kubernetes: the local backend implements
`Runtime` with a task area on disk and a container engine, the Kubernetes taskmaster with a PVC and
Jobs; the local `Reporter` writes to the task store, the taskmaster's to its Job and result ConfigMap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tesk.failures import FailureReason
from tesk.models import OutputFileLog, State, Task, TaskLog

Note = Callable[[str], None]
"""Adds one line to the task's `system_logs` (readable by the task's owner: no secrets)."""


class TaskFailure(Exception):
    """Something outside the user's executors failed (staging, a missing image, the engine).

    The runner ends the task as SYSTEM_ERROR with `str(exc)` in `system_logs`, so the message must say
    what failed, for which file or executor, and what the user can do about it. `reason` is the
    failure vocabulary's word for it when the raiser knows it (a missing image, a quota refusal);
    without one the runner names the step that failed (staging inputs or outputs, else InternalError).
    """

    def __init__(self, message: str, reason: FailureReason | None = None) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ExecutorOutcome:
    """What one executor that really ran left behind; `stdout`/`stderr` are bounded tails."""

    exit_code: int
    start_time: datetime
    end_time: datetime
    stdout: str = ""
    stderr: str = ""
    oom_killed: bool = False
    """The executor was killed for going past its memory limit (the engine or Kubernetes says so)."""
    timed_out: bool = False
    """The executor was stopped at the time limit it was run with."""
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    """What the executor used, where the runtime could measure it (None: not measured)."""


class Runtime(Protocol):
    """Where one task's work happens. Methods are called in order, each at most once per task,
    except `run_executor` (once per executor, in order) and `release` (always, last).

    Cancellation is asyncio cancellation: when the awaiting coroutine is cancelled, the runtime must
    stop what it started (a container, a Job) before re-raising, so nothing keeps running.
    """

    async def prepare(self, task: Task, note: Note) -> None:
        """Create the task's shared working area (empty `volumes`, output parent folders)."""

    async def stage_inputs(self, task: Task, note: Note) -> None:
        """Put every input at its container path; raise `TaskFailure` naming the input that failed."""

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        """Run `task.executors[index]` to its end and return its exit code and log tails. With a
        `time_limit` (seconds), stop it when it runs longer and say so (`timed_out`).

        A program that could not be found or executed is an outcome (exit code 126/127), not a
        failure; an image that cannot be had or an engine that refuses is a `TaskFailure`.
        """

    async def stage_outputs(self, task: Task, note: Note) -> list[OutputFileLog]:
        """Upload the outputs; return one entry per uploaded file; raise `TaskFailure` on error."""

    async def release(self, task: Task, final_state: State) -> None:
        """Remove everything the task still holds (containers, files). Called after the final report."""


class Reporter(Protocol):
    """Where the task's state and log go while it runs."""

    async def update(self, state: State, log: TaskLog) -> bool:
        """Record progress. False when the task is no longer the runner's to move (it is being
        cancelled): the runner then stops at once."""

    async def finish(self, state: State, log: TaskLog) -> None:
        """Record the final state and log. Called exactly once, before `Runtime.release`."""
