"""The lifecycle rules every backend shares, checked against a scripted Runtime and Reporter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tesk.models import OutputFileLog, State, Task, TaskLog
from tesk.runner import ExecutorOutcome, Note, TaskFailure, TaskRunner


def make_task(executors: int = 2, **extra: Any) -> Task:
    task = Task.model_validate(
        {"executors": [{"image": "alpine", "command": ["step", str(i)]} for i in range(executors)], **extra}
    )
    task.id = "task-1"
    return task


class ScriptedRuntime:
    """Records calls; each step does what the test set up (return codes, failures, a hang)."""

    def __init__(self, exit_codes: list[int] | None = None) -> None:
        self.exit_codes = exit_codes or []
        self.calls: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.hang_in: str | None = None

    async def _step(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]
        if name == self.hang_in:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.calls.append(f"stopped {name}")
                raise

    async def prepare(self, task: Task, note: Note) -> None:
        await self._step("prepare")

    async def stage_inputs(self, task: Task, note: Note) -> None:
        await self._step("inputs")

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        await self._step(f"executor {index}")
        now = datetime.now(UTC)
        return ExecutorOutcome(self.exit_codes[index] if index < len(self.exit_codes) else 0, now, now, "out", "err")

    async def stage_outputs(self, task: Task, note: Note) -> list[OutputFileLog]:
        await self._step("outputs")
        return [OutputFileLog(url="file:///x", path="/x", size_bytes="1")]

    async def release(self, task: Task, final_state: State) -> None:
        self.calls.append(f"release {final_state.value}")


class ListReporter:
    def __init__(self, refuse_after: int | None = None) -> None:
        self.updates: list[State] = []
        self.final: tuple[State, TaskLog] | None = None
        self.refuse_after = refuse_after

    async def update(self, state: State, log: TaskLog) -> bool:
        self.updates.append(state)
        return self.refuse_after is None or len(self.updates) <= self.refuse_after

    async def finish(self, state: State, log: TaskLog) -> None:
        assert self.final is None, "finish is called once"
        self.final = (state, log.model_copy(deep=True))


async def run(task: Task, runtime: ScriptedRuntime, reporter: ListReporter) -> tuple[State, TaskLog]:
    state = await TaskRunner(task, runtime, reporter).run()
    assert reporter.final is not None and reporter.final[0] is state
    return reporter.final


async def test_complete_task_goes_through_every_step_in_order() -> None:
    runtime, reporter = ScriptedRuntime(), ListReporter()
    state, log = await run(make_task(outputs=[{"path": "/x", "url": "file:///x"}]), runtime, reporter)
    assert state is State.COMPLETE
    assert runtime.calls == ["prepare", "inputs", "executor 0", "executor 1", "outputs", "release COMPLETE"]
    assert reporter.updates[0] is State.INITIALIZING and set(reporter.updates[1:]) == {State.RUNNING}
    assert [e.exit_code for e in log.logs] == [0, 0] and len(log.outputs) == 1
    assert log.start_time and log.end_time and log.start_time <= log.end_time


async def test_failed_output_upload_is_a_system_error_that_keeps_executor_logs() -> None:
    runtime = ScriptedRuntime()
    runtime.fail["outputs"] = TaskFailure("output /x: the server said 403 Forbidden")
    state, log = await run(make_task(outputs=[{"path": "/x", "url": "file:///x"}]), runtime, ListReporter())
    assert state is State.SYSTEM_ERROR
    assert len(log.logs) == 2
    assert log.system_logs == ["output /x: the server said 403 Forbidden"]
    assert runtime.calls[-1] == "release SYSTEM_ERROR", "files are removed after the final report"


async def test_input_failure_runs_no_executor() -> None:
    runtime = ScriptedRuntime()
    runtime.fail["inputs"] = TaskFailure("input /in: http://x/in answered 404 Not Found")
    state, log = await run(make_task(), runtime, ListReporter())
    assert state is State.SYSTEM_ERROR and log.logs == []
    assert "executor 0" not in runtime.calls


async def test_a_runtime_bug_still_ends_the_task_with_a_reason() -> None:
    runtime = ScriptedRuntime()
    runtime.fail["executor 0"] = KeyError("oops")
    state, log = await run(make_task(), runtime, ListReporter())
    assert state is State.SYSTEM_ERROR
    assert "internal error" in (log.system_logs or [""])[0] and "executor 1 of 2" in (log.system_logs or [""])[0]
    assert runtime.calls[-1] == "release SYSTEM_ERROR"


async def test_abort_stops_the_step_in_progress_and_records_why() -> None:
    runtime = ScriptedRuntime()
    runtime.hang_in = "executor 1"
    reporter = ListReporter()
    runner = TaskRunner(make_task(3), runtime, reporter)
    job = asyncio.create_task(runner.run())
    while "executor 1" not in runtime.calls:
        await asyncio.sleep(0.001)
    runner.abort(State.CANCELED, "canceled by dave")
    assert await job is State.CANCELED
    assert runtime.calls[-2:] == ["stopped executor 1", "release CANCELED"]
    assert reporter.final is not None
    log = reporter.final[1]
    assert [e.exit_code for e in log.logs] == [0], "the interrupted executor has no log"
    assert log.system_logs == ["canceled by dave (while running executor 2 of 3 (alpine: step 1))"]


async def test_abort_before_start_runs_nothing() -> None:
    runtime, reporter = ScriptedRuntime(), ListReporter()
    runner = TaskRunner(make_task(), runtime, reporter)
    runner.abort(State.CANCELED, "canceled by erin")
    assert await runner.run() is State.CANCELED
    assert runtime.calls == ["release CANCELED"]


async def test_a_cancel_seen_by_the_reporter_stops_the_runner() -> None:
    runtime, reporter = ScriptedRuntime(), ListReporter(refuse_after=2)
    state, log = await run(make_task(3), runtime, reporter)
    assert state is State.CANCELED
    assert runtime.calls == ["prepare", "inputs", "executor 0", "release CANCELED"]
    assert [e.exit_code for e in log.logs] == [0]


async def test_abort_waits_for_a_report_in_progress() -> None:
    class SlowReporter(ListReporter):
        async def update(self, state: State, log: TaskLog) -> bool:
            self.updates.append(state)
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                self.updates.append(State.UNKNOWN)  # marks an interrupted write
                raise
            return True

    runtime, reporter = ScriptedRuntime(), SlowReporter()
    runner = TaskRunner(make_task(), runtime, reporter)
    job = asyncio.create_task(runner.run())
    while not reporter.updates:
        await asyncio.sleep(0.001)
    runner.abort(State.CANCELED, "canceled by frank")
    assert await job is State.CANCELED
    assert reporter.updates == [State.INITIALIZING], "the report finished; nothing ran after it"
    assert runtime.calls == ["release CANCELED"]
