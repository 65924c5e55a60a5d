"""The failure reason the runner records for each way a task can end other than COMPLETE."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tesk.failures import EXECUTOR_KEY, REASON_KEY, Failure, FailureReason, failure_of, refusal_reason
from tesk.limits import TimeLimits
from tesk.models import State, Task, TaskLog
from tesk.runner import ExecutorOutcome, Note, TaskFailure, TaskRunner
from tests.runner.test_runner import ListReporter, ScriptedRuntime, make_task, run


def failure_keys(log: TaskLog) -> dict[str, str]:
    """The log's failure keys (its metadata holds the executors' usage too)."""
    return {k: v for k, v in (log.metadata or {}).items() if k in (REASON_KEY, EXECUTOR_KEY)}


class OomRuntime(ScriptedRuntime):
    """Executor 1 is killed for its memory."""

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        now = datetime.now(UTC)
        return ExecutorOutcome(137 if index == 1 else 0, now, now, oom_killed=index == 1)


async def test_a_non_zero_exit_is_executor_failed_naming_the_executor() -> None:
    state, log = await run(make_task(3), ScriptedRuntime([0, 3]), ListReporter())
    assert state is State.EXECUTOR_ERROR
    assert failure_keys(log) == {REASON_KEY: "ExecutorFailed", EXECUTOR_KEY: "1"}


async def test_an_oom_kill_is_an_executor_error_with_oom_killed_and_a_sentence() -> None:
    state, log = await run(make_task(3), OomRuntime(), ListReporter())
    assert state is State.EXECUTOR_ERROR
    assert failure_of(log) == Failure(FailureReason.OOM_KILLED, 1)
    assert any("OOMKilled" in line and "ram_gb" in line for line in log.system_logs or [])


async def test_an_ignored_failure_leaves_a_complete_task_without_a_reason() -> None:
    task = make_task(2)
    task.executors[0].ignore_error = True
    state, log = await run(task, ScriptedRuntime([1, 0]), ListReporter())
    assert state is State.COMPLETE and failure_keys(log) == {}


async def failed_in(step: str, error: Exception, **task: Any) -> tuple[State, TaskLog]:
    runtime = ScriptedRuntime()
    runtime.fail[step] = error
    return await run(make_task(**task), runtime, ListReporter())


async def test_staging_failures_say_which_direction() -> None:
    _, log = await failed_in("inputs", TaskFailure("input /in: 404"))
    assert failure_keys(log) == {REASON_KEY: "InputStagingFailed"}
    _, log = await failed_in("outputs", TaskFailure("output /x: 403"), outputs=[{"path": "/x", "url": "file:///x"}])
    assert failure_keys(log) == {REASON_KEY: "OutputStagingFailed"}


async def test_a_reason_the_runtime_knows_wins_over_the_step_and_names_the_executor() -> None:
    state, log = await failed_in("executor 1", TaskFailure("image x is not here", FailureReason.IMAGE_PULL_FAILED))
    assert state is State.SYSTEM_ERROR
    assert failure_keys(log) == {REASON_KEY: "ImagePullFailed", EXECUTOR_KEY: "1"}


async def test_failures_without_a_known_reason_are_internal_errors() -> None:
    _, log = await failed_in("prepare", TaskFailure("volume /a overlaps input /a/b"))
    assert failure_keys(log) == {REASON_KEY: "InternalError"}
    _, log = await failed_in("executor 0", KeyError("oops"))
    assert failure_keys(log) == {REASON_KEY: "InternalError", EXECUTOR_KEY: "0"}


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
    assert failure_keys(log) == {REASON_KEY: "Canceled", EXECUTOR_KEY: "1"}


async def test_an_abort_carries_the_stopper_s_reason_or_the_one_its_state_implies() -> None:
    assert failure_keys(await stopped_in("inputs", State.PREEMPTED)) == {REASON_KEY: "Preempted"}
    assert failure_keys(await stopped_in("inputs", State.SYSTEM_ERROR)) == {REASON_KEY: "InternalError"}
    assert failure_keys(await stopped_in("inputs", State.PREEMPTED, FailureReason.EVICTED)) == {REASON_KEY: "Evicted"}


async def test_a_task_sent_back_to_the_queue_carries_no_reason() -> None:
    assert failure_keys(await stopped_in("executor 0", State.QUEUED)) == {}


async def test_the_task_refused_by_the_reporter_mid_run_is_canceled() -> None:
    state, log = await run(make_task(), ScriptedRuntime(), ListReporter(refuse_after=1))
    assert state is State.CANCELED and failure_keys(log) == {REASON_KEY: "Canceled"}


def test_recording_keeps_other_metadata_and_replaces_an_earlier_failure() -> None:
    log = TaskLog(metadata={"other": "x", REASON_KEY: "ExecutorFailed", EXECUTOR_KEY: "2"})
    Failure(FailureReason.CANCELED).record(log)
    assert log.metadata == {"other": "x", REASON_KEY: "Canceled"}
    assert failure_of(TaskLog(metadata={REASON_KEY: "NotAReason"})) is None


def test_a_refusal_is_admission_refused_only_when_the_backend_said_no() -> None:
    assert refusal_reason(403) is FailureReason.ADMISSION_REFUSED
    assert refusal_reason(503) is FailureReason.INTERNAL_ERROR


class TimingRuntime(ScriptedRuntime):
    """Records the time limit each executor was run with; stops an executor `sleeps` past it."""

    def __init__(self, sleeps: float = 0.0) -> None:
        super().__init__()
        self.sleeps = sleeps
        self.limits: list[float | None] = []

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        self.limits.append(time_limit)
        started = datetime.now(UTC)
        timed_out = time_limit is not None and self.sleeps > time_limit
        await asyncio.sleep(min(self.sleeps, time_limit) if time_limit is not None else self.sleeps)
        return ExecutorOutcome(137 if timed_out else 0, started, datetime.now(UTC), timed_out=timed_out)


async def test_an_executor_past_its_own_limit_is_time_limit_exceeded_and_keeps_its_log() -> None:
    runtime = TimingRuntime(sleeps=5)
    state, log = await run_with(make_task(2), runtime, TimeLimits(executor=1))
    assert state is State.EXECUTOR_ERROR
    assert failure_of(log) == Failure(FailureReason.TIME_LIMIT_EXCEEDED, 0)
    assert runtime.limits == [1.0] and [e.exit_code for e in log.logs] == [137]
    assert any("time limit of 1 s (tesk.executor_time_limit)" in line for line in log.system_logs or [])


async def test_an_executor_gets_what_is_left_of_the_task_s_limit_when_that_is_less() -> None:
    runtime = TimingRuntime(sleeps=0.3)
    state, _ = await run_with(make_task(2), runtime, TimeLimits(task=30, executor=60))
    assert state is State.COMPLETE
    first, second = runtime.limits
    assert first is not None and second is not None and 29 < second < first <= 30
    runtime = TimingRuntime(sleeps=5)
    state, log = await run_with(make_task(1), runtime, TimeLimits(task=1, executor=60))
    assert failure_of(log) == Failure(FailureReason.TIME_LIMIT_EXCEEDED, 0)
    assert any("(tesk.time_limit)" in line for line in log.system_logs or [])


async def test_staging_past_the_task_s_limit_is_stopped_as_time_limit_exceeded() -> None:
    runtime = ScriptedRuntime()
    runtime.hang_in = "inputs"
    started = asyncio.get_running_loop().time()
    state, log = await run_with(make_task(), runtime, TimeLimits(task=1))
    assert 1 <= asyncio.get_running_loop().time() - started < 2
    assert state is State.EXECUTOR_ERROR and failure_keys(log) == {REASON_KEY: "TimeLimitExceeded"}
    assert "stopped inputs" in runtime.calls and "executor 0" not in runtime.calls
    assert any("time limit of 1 s (tesk.time_limit) while staging inputs" in line for line in log.system_logs or [])


async def test_a_timeout_of_the_step_itself_is_not_the_task_s_time_limit() -> None:
    runtime = ScriptedRuntime()
    runtime.fail["inputs"] = TimeoutError()
    state, log = await run_with(make_task(), runtime, TimeLimits(task=60))
    assert state is State.SYSTEM_ERROR and failure_keys(log) == {REASON_KEY: "InternalError"}


def test_limits_come_from_backend_parameters_else_the_server_default() -> None:
    task = make_task(resources={"backend_parameters": {"TESK.TIME_LIMIT": "90", "tesk.executor_time_limit": "30"}})
    assert TimeLimits.of(task, 3600) == TimeLimits(task=90, executor=30)
    assert TimeLimits.of(make_task(), 3600) == TimeLimits(task=3600, task_from="TESK_TASK_TIME_LIMIT_SECONDS")
    assert TimeLimits.of(make_task(resources={"backend_parameters": {"tesk.time_limit": "x"}})) == TimeLimits()


async def run_with(task: Task, runtime: ScriptedRuntime, limits: TimeLimits) -> tuple[State, TaskLog]:
    reporter = ListReporter()
    state = await TaskRunner(task, runtime, reporter, limits=limits).run()
    assert reporter.final is not None
    return state, reporter.final[1]


class MeasuredRuntime(ScriptedRuntime):
    """Executor 0 reports what it used; executor 1 was not measured."""

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        started = datetime(2026, 1, 1, tzinfo=UTC)
        ended = started.replace(second=2, microsecond=500000)
        if index == 0:
            return ExecutorOutcome(0, started, ended, peak_memory_bytes=209715200, cpu_seconds=1.25)
        return ExecutorOutcome(0, started, ended)


async def test_each_executor_s_usage_is_in_the_log_metadata_and_unmeasured_keys_are_absent() -> None:
    state, log = await run(make_task(2), MeasuredRuntime(), ListReporter())
    assert state is State.COMPLETE
    assert log.metadata == {"tesk.executor.0.wall_seconds": "2.500", "tesk.executor.0.peak_memory_bytes": "209715200",
                            "tesk.executor.0.cpu_seconds": "1.250", "tesk.executor.1.wall_seconds": "2.500"}
