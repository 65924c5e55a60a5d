"""The failure reason the runner records for each way a task can end other than COMPLETE."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tesk.failures import EXECUTOR_KEY, REASON_KEY, Failure, FailureReason, failure_of, refusal_reason
from tesk.models import State, Task, TaskLog
from tesk.runner import ExecutorOutcome, Note, TaskFailure, TaskRunner
from tests.runner.test_runner import ListReporter, ScriptedRuntime, make_task, run


class OomRuntime(ScriptedRuntime):
    """Executor 1 is killed for its memory."""

    async def run_executor(self, task: Task, index: int, note: Note) -> ExecutorOutcome:
        now = datetime.now(UTC)
        return ExecutorOutcome(137 if index == 1 else 0, now, now, oom_killed=index == 1)


async def test_a_non_zero_exit_is_executor_failed_naming_the_executor() -> None:
    state, log = await run(make_task(3), ScriptedRuntime([0, 3]), ListReporter())
    assert state is State.EXECUTOR_ERROR
    assert log.metadata == {REASON_KEY: "ExecutorFailed", EXECUTOR_KEY: "1"}


async def test_an_oom_kill_is_an_executor_error_with_oom_killed_and_a_sentence() -> None:
    state, log = await run(make_task(3), OomRuntime(), ListReporter())
    assert state is State.EXECUTOR_ERROR
    assert failure_of(log) == Failure(FailureReason.OOM_KILLED, 1)
    assert any("OOMKilled" in line and "ram_gb" in line for line in log.system_logs or [])


async def test_an_ignored_failure_leaves_a_complete_task_without_a_reason() -> None:
    task = make_task(2)
    task.executors[0].ignore_error = True
    state, log = await run(task, ScriptedRuntime([1, 0]), ListReporter())
    assert state is State.COMPLETE and log.metadata is None


async def failed_in(step: str, error: Exception, **task: Any) -> tuple[State, TaskLog]:
    runtime = ScriptedRuntime()
    runtime.fail[step] = error
    return await run(make_task(**task), runtime, ListReporter())


async def test_staging_failures_say_which_direction() -> None:
    _, log = await failed_in("inputs", TaskFailure("input /in: 404"))
    assert log.metadata == {REASON_KEY: "InputStagingFailed"}
    _, log = await failed_in("outputs", TaskFailure("output /x: 403"), outputs=[{"path": "/x", "url": "file:///x"}])
    assert log.metadata == {REASON_KEY: "OutputStagingFailed"}


async def test_a_reason_the_runtime_knows_wins_over_the_step_and_names_the_executor() -> None:
    state, log = await failed_in("executor 1", TaskFailure("image x is not here", FailureReason.IMAGE_PULL_FAILED))
    assert state is State.SYSTEM_ERROR
    assert log.metadata == {REASON_KEY: "ImagePullFailed", EXECUTOR_KEY: "1"}


async def test_failures_without_a_known_reason_are_internal_errors() -> None:
    _, log = await failed_in("prepare", TaskFailure("volume /a overlaps input /a/b"))
    assert log.metadata == {REASON_KEY: "InternalError"}
    _, log = await failed_in("executor 0", KeyError("oops"))
    assert log.metadata == {REASON_KEY: "InternalError", EXECUTOR_KEY: "0"}


async def stopped_in(step: str, state: State, given: FailureReason | None = None, executors: int = 2) -> TaskLog:
    """The final log of a task aborted into `state` while `step` runs."""
    runtime = ScriptedRuntime()
    runtime.hang_in = step
    reporter = ListReporter()
    runner = TaskRunner(make_task(executors), runtime, reporter)
    job = asyncio.create_task(runner.run())
    while step not in runtime.calls:
        await asyncio.sleep(0.01)
    runner.abort(state, "stopped", given)
    assert await job is state
    assert reporter.final is not None
    return reporter.final[1]


async def test_a_cancel_is_canceled_and_names_the_executor_that_was_running() -> None:
    log = await stopped_in("executor 1", State.CANCELED, executors=3)
    assert log.metadata == {REASON_KEY: "Canceled", EXECUTOR_KEY: "1"}


async def test_an_abort_carries_the_stopper_s_reason_or_the_one_its_state_implies() -> None:
    assert (await stopped_in("inputs", State.PREEMPTED)).metadata == {REASON_KEY: "Preempted"}
    assert (await stopped_in("inputs", State.SYSTEM_ERROR)).metadata == {REASON_KEY: "InternalError"}
    assert (await stopped_in("inputs", State.PREEMPTED, FailureReason.EVICTED)).metadata == {REASON_KEY: "Evicted"}


async def test_a_task_sent_back_to_the_queue_carries_no_reason() -> None:
    assert (await stopped_in("executor 0", State.QUEUED)).metadata is None


async def test_the_task_refused_by_the_reporter_mid_run_is_canceled() -> None:
    state, log = await run(make_task(), ScriptedRuntime(), ListReporter(refuse_after=1))
    assert state is State.CANCELED and log.metadata == {REASON_KEY: "Canceled"}


def test_recording_keeps_other_metadata_and_replaces_an_earlier_failure() -> None:
    log = TaskLog(metadata={"other": "x", REASON_KEY: "ExecutorFailed", EXECUTOR_KEY: "2"})
    Failure(FailureReason.CANCELED).record(log)
    assert log.metadata == {"other": "x", REASON_KEY: "Canceled"}
    assert failure_of(TaskLog(metadata={REASON_KEY: "NotAReason"})) is None


def test_a_refusal_is_admission_refused_only_when_the_backend_said_no() -> None:
    assert refusal_reason(403) is FailureReason.ADMISSION_REFUSED
    assert refusal_reason(503) is FailureReason.INTERNAL_ERROR
