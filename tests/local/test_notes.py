"""The API's notes about a task reach the local backend as `submit`'s argument and open the system log
of the task's run, in place of the notes entry the store held until then."""

from __future__ import annotations

from tesk.models import State
from tests.local.conftest import IMAGE, MakeHarness

NOTE = "ignored unsupported backend_parameters: gpu"


async def test_the_notes_open_the_runs_system_log(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["true"]}]}, [NOTE])
    stored = await harness.wait(task_id)
    assert stored.state is State.COMPLETE
    [run] = stored.task.logs or []
    assert run.start_time is not None and (run.system_logs or [])[0] == NOTE
