"""The task lifecycle: stage inputs -> executors in order -> stage outputs -> final state.

One `TaskRunner` runs one task once. It owns the rules every backend must apply the same way:
which state follows which, when `ignore_error` lets a task go on, which failures are the system's
(SYSTEM_ERROR, reason in `system_logs`) and which are the user's (EXECUTOR_ERROR), that an executor
that never ran gets no executor log, and that the final state is reported before anything is removed.
It also decides the machine-readable reason (`tesk.failures`) of every end other than COMPLETE, from
the step that failed and what the runtime said about it.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

from tesk.failures import Failure, FailureReason, stop_reason
from tesk.limits import EXECUTOR_TIME_LIMIT, TimeLimits
from tesk.models import ExecutorLog, State, Task, TaskLog
from tesk.usage import ResourceUsage
from tesk.runner.protocols import Note, Reporter, Runtime, TaskFailure

log = logging.getLogger(__name__)

_COMMAND_SHOWN = 120
"""Characters of a command quoted in a system log line: enough to recognise it, not a wall of text."""


def now() -> datetime:
    return datetime.now(UTC)


def describe_executor(task: Task, index: int) -> str:
    """`executor 2 of 3 (alpine: sh -c 'exit 3')`, for messages people read."""
    executor = task.executors[index]
    command = shlex.join(executor.command)
    if len(command) > _COMMAND_SHOWN:
        command = command[: _COMMAND_SHOWN - 3] + "..."
    return f"executor {index + 1} of {len(task.executors)} ({executor.image}: {command})"


T = TypeVar("T")


class _NoLongerOurs(Exception):
    """The reporter says the task was cancelled elsewhere; stop at once."""


class _TimeUp(Exception):
    """The task's time limit passed during a step that has no log of its own to keep (staging)."""


class TaskRunner:
    """Runs one task through a `Runtime`, reporting through a `Reporter`.

    `abort(state, reason)` stops the task from outside (a user's cancel, a server shutdown): the step
    in progress is cancelled (the runtime stops its container or Job), then the task ends in `state`
    with `reason` in its `system_logs`.

    A task that ends other than COMPLETE carries a `Failure` in its log's metadata: the executor it
    names is the one that failed, or the one that was running when the task was stopped.

    Time limits (`tesk.limits`): the task's limit bounds every step from the start of `run`; a
    staging step past it is cancelled here, while an executor gets the smaller of its own limit and
    the task's remaining time from the runtime, which stops it and keeps its log (`timed_out`).
    Either way the task ends EXECUTOR_ERROR with TimeLimitExceeded.
    """

    def __init__(self, task: Task, runtime: Runtime, reporter: Reporter, notes: list[str] | None = None,
                 limits: TimeLimits | None = None) -> None:
        """`notes` are system log lines recorded before the task ran (e.g. ignored backend_parameters);
        they open this run's `system_logs`. `limits` default to the task's own (no server default)."""
        if task.id is None:
            raise ValueError("a task needs its id before it can run")
        self.task = task
        self.runtime = runtime
        self.reporter = reporter
        self.phase = "queued"
        self._step_reason = FailureReason.INTERNAL_ERROR
        """What a `TaskFailure` without a reason of its own means in the step under way."""
        self._executor: int | None = None
        self._handle: asyncio.Task[State] | None = None
        self._abort: tuple[State, str, FailureReason | None] | None = None
        self._finishing = False
        self._reporting = False
        self._notes = list(notes or [])
        self.limits = limits if limits is not None else TimeLimits.of(task)
        self._deadline: float | None = None
        """`time.monotonic()` by which the task must be done, when it has a limit."""

    def abort(self, state: State, reason: str, failure: FailureReason | None = None) -> None:
        """Stop the task and end it in `state` (CANCELED for a cancel); a no-op once it is finishing.
        `failure` is the machine-readable reason; by default the one `state` implies
        (`tesk.failures.stop_reason`).

        Call it on the runner's event loop; from another thread (a sync watch) use
        `loop.call_soon_threadsafe(runner.abort, state, reason)`."""
        if self._finishing or self._abort is not None:
            return
        self._abort = (state, reason, failure)
        if self._handle is not None and not self._reporting:
            self._handle.cancel()

    async def run(self) -> State:
        """Run the task to its final state and return that state; never raises for task failures."""
        self._handle = asyncio.current_task()
        if self.limits.task is not None:
            self._deadline = time.monotonic() + self.limits.task
        task_log = TaskLog(start_time=now(), logs=[], outputs=[], system_logs=self._notes)
        notes = task_log.system_logs
        assert notes is not None
        state = State.SYSTEM_ERROR
        failure: Failure | None = None
        try:
            try:
                if self._abort is not None:
                    raise asyncio.CancelledError
                state, failure = await self._lifecycle(task_log, notes.append)
            except TaskFailure as exc:
                state = State.SYSTEM_ERROR
                failure = Failure(exc.reason or self._step_reason, self._executor)
                notes.append(str(exc))
            except _TimeUp:
                state = State.EXECUTOR_ERROR
                failure = Failure(FailureReason.TIME_LIMIT_EXCEEDED)
                notes.append(f"the task ran past its time limit of {self.limits.task} s ({self.limits.task_from}) "
                             f"while {self.phase} and was stopped")
            except _NoLongerOurs:
                state = State.CANCELED
                failure = Failure(FailureReason.CANCELED, self._executor)
                notes.append(f"the task was cancelled while {self.phase}")
            except asyncio.CancelledError:
                if self._abort is None:
                    raise
                if self._handle is not None:
                    self._handle.uncancel()
                state, reason, stopped_for = self._abort
                failure = Failure(stopped_for or stop_reason(state), self._executor)
                notes.append(f"{reason} (while {self.phase})")
            except Exception as exc:  # a bug must still end the task, with a reason a person can report
                log.exception("task %s: the runner failed", self.task.id, extra={"task_id": self.task.id})
                state = State.SYSTEM_ERROR
                failure = Failure(FailureReason.INTERNAL_ERROR, self._executor)
                notes.append(f"internal error of the task runner while {self.phase}: {exc!r}")
            self._finishing = True
            if state.is_terminal and state is not State.COMPLETE and failure is not None:
                failure.record(task_log)
            task_log.end_time = now()
            await self.reporter.finish(state, task_log)
        finally:
            self._finishing = True
            await self.runtime.release(self.task, state)
        return state

    async def _lifecycle(self, task_log: TaskLog, note: Note) -> tuple[State, Failure | None]:
        """Run the steps; the final state and, for EXECUTOR_ERROR, the executor's failure."""
        task = self.task
        self.phase = "preparing the task area"
        await self._report(State.INITIALIZING, task_log)
        await self._in_time(self.runtime.prepare(task, note))
        self.phase = "staging inputs"
        self._step_reason = FailureReason.INPUT_STAGING_FAILED
        await self._in_time(self.runtime.stage_inputs(task, note))
        self._step_reason = FailureReason.INTERNAL_ERROR
        state, failure = State.COMPLETE, None
        for index, executor in enumerate(task.executors):
            self.phase = f"running {describe_executor(task, index)}"
            await self._report(State.RUNNING, task_log)
            self._executor = index
            time_limit, own_limit = self._executor_limit()
            outcome = await self.runtime.run_executor(task, index, note, time_limit)
            task_log.logs.append(
                ExecutorLog(
                    start_time=outcome.start_time,
                    end_time=outcome.end_time,
                    stdout=outcome.stdout,
                    stderr=outcome.stderr,
                    exit_code=outcome.exit_code,
                )
            )
            ResourceUsage((outcome.end_time - outcome.start_time).total_seconds(), outcome.peak_memory_bytes,
                          outcome.cpu_seconds).record(task_log, index)
            if outcome.exit_code != 0 or outcome.timed_out:
                if outcome.timed_out and own_limit:
                    note(f"{describe_executor(task, index)} ran past its time limit of {self.limits.executor} s "
                         f"({EXECUTOR_TIME_LIMIT}) and was stopped")
                elif outcome.timed_out:
                    note(f"{describe_executor(task, index)} was stopped: the task ran past its time limit of "
                         f"{self.limits.task} s ({self.limits.task_from})")
                elif outcome.oom_killed:
                    note(f"{describe_executor(task, index)} went past its memory limit and was killed "
                         "(OOMKilled); ask for more with resources.ram_gb")
                if executor.ignore_error:
                    note(f"{describe_executor(task, index)} exited with code {outcome.exit_code}; "
                         "ignore_error is set, so the task goes on")
                    continue
                note(f"{describe_executor(task, index)} exited with code {outcome.exit_code}; "
                     "later executors were not run and outputs were not uploaded")
                state = State.EXECUTOR_ERROR
                failure = Failure.of_exit(index, oom_killed=outcome.oom_killed, timed_out=outcome.timed_out)
                break
        self._executor = None
        if state is State.COMPLETE:
            self.phase = "uploading outputs"
            if task.outputs:  # the last executor's log becomes visible now, not only at the end
                await self._report(State.RUNNING, task_log)
            self._step_reason = FailureReason.OUTPUT_STAGING_FAILED
            task_log.outputs = await self._in_time(self.runtime.stage_outputs(task, note))
        return state, failure

    def _remaining(self) -> float | None:
        """Seconds left of the task's time limit (None: no limit); raises `_TimeUp` when none are."""
        if self._deadline is None:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _TimeUp
        return remaining

    def _executor_limit(self) -> tuple[float | None, bool]:
        """The next executor's time limit, and whether it is its own (else what is left of the task's)."""
        remaining = self._remaining()
        own = self.limits.executor
        if own is not None and (remaining is None or own <= remaining):
            return float(own), True
        return remaining, False

    async def _in_time(self, step: Awaitable[T]) -> T:
        """Await a step within the task's remaining time; `_TimeUp` (the step cancelled) past it."""
        try:
            remaining = self._remaining()
        except _TimeUp:
            if asyncio.iscoroutine(step):
                step.close()
            raise
        if remaining is None:
            return await step
        # Not wait_for: on Python 3.11 it can swallow an abort's cancel landing as the step ends.
        scope = asyncio.timeout(remaining)
        try:
            async with scope:
                return await step
        except TimeoutError:
            if scope.expired():
                raise _TimeUp from None
            raise  # the step's own timeout, not the task's

    async def _report(self, state: State, task_log: TaskLog) -> None:
        """Report progress. An abort never interrupts a report half-written (a store transaction, a
        Kubernetes patch): it takes effect as soon as the report is done."""
        self._reporting = True
        try:
            accepted = await self.reporter.update(state, task_log)
        finally:
            self._reporting = False
        if self._abort is not None:
            raise asyncio.CancelledError
        if not accepted:
            raise _NoLongerOurs
