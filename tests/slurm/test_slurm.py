"""The Slurm backend end to end on a real Slurm: each task is a batch job running `tesk worker`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from tesk.backends.slurm.backend import sbatch_options
from tesk.config.slurm import SlurmSettings
from tesk.failures import Failure, FailureReason, failure_of
from tesk.models import State, Task
from tests.slurm.conftest import IMAGE, MakeHarness, containers, job_states

pytestmark = pytest.mark.slurm


async def test_a_task_with_inputs_outputs_and_two_executors_completes(make_harness: MakeHarness,
                                                                     tmp_path: Path) -> None:
    harness = await make_harness()
    out = tmp_path / "files" / "result.txt"
    task_id = await harness.submit({
        "inputs": [{"path": "/data/in.txt", "content": "from the input\n"}],
        "outputs": [{"path": "/out/result.txt", "url": f"file://{out}"}],
        "executors": [
            {"image": IMAGE, "command": ["sh", "-c", "tr a-z A-Z < /data/in.txt > /out/result.txt; echo first"]},
            {"image": IMAGE, "command": ["sh", "-c", "cat /out/result.txt; echo oops >&2"]},
        ],
    })
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.COMPLETE, stored.task.logs
    run = (stored.task.logs or [])[-1]
    assert [e.stdout for e in run.logs] == ["first\n", "FROM THE INPUT\n"]
    assert [e.stderr for e in run.logs] == ["", "oops\n"]
    assert [o.path for o in run.outputs] == ["/out/result.txt"]
    assert out.read_text() == "FROM THE INPUT\n"
    assert job_states(task_id) == ["COMPLETED"]
    folder = harness.backend.folder(task_id).root
    for _ in range(50):  # removed right after the store has the end (never before: the report is the record)
        if not folder.exists():
            break
        await asyncio.sleep(0.1)
    assert not folder.exists()
    assert containers(task_id) == []


@pytest.mark.parametrize("ignore_error", [False, True])
async def test_an_executor_failure(make_harness: MakeHarness, ignore_error: bool) -> None:
    harness = await make_harness()
    task_id = await harness.submit({"executors": [
        {"image": IMAGE, "command": ["sh", "-c", "exit 3"], "ignore_error": ignore_error},
        {"image": IMAGE, "command": ["echo", "second"]},
    ]})
    stored = await harness.wait(task_id, timeout=60)
    run = (stored.task.logs or [])[-1]
    if ignore_error:
        assert stored.state is State.COMPLETE
        assert [e.exit_code for e in run.logs] == [3, 0]
    else:
        assert stored.state is State.EXECUTOR_ERROR
        assert [e.exit_code for e in run.logs] == [3]
        assert any("exited with code 3" in line for line in run.system_logs or [])
        assert failure_of(run) == Failure(FailureReason.EXECUTOR_FAILED, 0)


async def test_cancel_while_running_stops_the_container_and_the_job(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", "300"]}]})
    await harness.wait_for(task_id, {State.RUNNING})
    for _ in range(100):  # RUNNING is reported just before the container starts
        if containers(task_id):
            break
        await asyncio.sleep(0.1)
    await harness.cancel(task_id)
    stored = await harness.wait(task_id, timeout=40)
    assert stored.state is State.CANCELED
    assert "canceled by tester" in " ".join((stored.task.logs or [])[-1].system_logs or [])
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.CANCELED)
    assert containers(task_id) == []
    assert job_states(task_id) == ["CANCELLED"]


async def test_cancel_while_pending(make_harness: MakeHarness) -> None:
    harness = await make_harness(sbatch_options="--begin=now+1hour")
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["echo", "never"]}]})
    await asyncio.sleep(0.5)
    assert job_states(task_id) == ["PENDING"]
    assert (await harness.get(task_id)).state is State.QUEUED
    await harness.cancel(task_id)
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.CANCELED
    assert job_states(task_id) == ["CANCELLED"]


async def test_an_unknown_partition_is_a_system_error_that_says_so(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    task_id = await harness.submit({
        "executors": [{"image": IMAGE, "command": ["true"]}],
        "resources": {"backend_parameters": {"partition": "nosuchpartition"}},
    })
    stored = await harness.wait(task_id, timeout=10)
    assert stored.state is State.SYSTEM_ERROR
    line = " ".join((stored.task.logs or [])[-1].system_logs or [])
    assert "could not be submitted to Slurm" in line and "invalid partition" in line.lower()
    assert job_states(task_id) == []


async def test_a_worker_that_cannot_start_ends_the_task_with_the_job_output(make_harness: MakeHarness) -> None:
    harness = await make_harness(worker_command="/nonexistent/tesk")
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["true"]}]})
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.SYSTEM_ERROR
    line = " ".join((stored.task.logs or [])[-1].system_logs or [])
    assert "ended FAILED without a final report" in line and "/nonexistent/tesk" in line


async def test_a_restarted_api_adopts_the_running_job_and_reads_the_report_written_meanwhile(
        make_harness: MakeHarness) -> None:
    """The API is down while the job runs and ends: the new server runs nothing again and takes the
    worker's final report, which waited in the shared folder."""
    first = await make_harness()
    task_id = await first.submit({"executors": [{"image": IMAGE, "command": ["sh", "-c", "sleep 3; echo done"]}]})
    await first.wait_for(task_id, {State.RUNNING})
    await first.backend.stop()
    for _ in range(300):
        if job_states(task_id) == ["COMPLETED"]:
            break
        await asyncio.sleep(0.1)
    assert (await first.get(task_id)).state is State.RUNNING
    second = await make_harness()
    stored = await second.wait(task_id)
    assert stored.state is State.COMPLETE
    assert [e.stdout for e in (stored.task.logs or [])[-1].logs] == ["done\n"]
    assert job_states(task_id) == ["COMPLETED"]  # one job: not submitted again


def test_resources_and_backend_parameters_become_sbatch_options() -> None:
    task = Task.model_validate({
        "executors": [{"image": IMAGE, "command": ["true"]}],
        "resources": {"cpu_cores": 2, "ram_gb": 1.5, "disk_gb": 3,
                      "backend_parameters": {"Partition": "long", "qos": "low", "time": "1:00:00", "gres": "gpu:1"}},
    })
    options = sbatch_options(task, SlurmSettings(partition="short", account="lab", sbatch_options="--nice=5"))
    assert options == ["--partition=short", "--account=lab", "--cpus-per-task=2", "--mem=1536M", "--tmp=3072M",
                       "--partition=long", "--qos=low", "--time=1:00:00", "--gres=gpu:1", "--nice=5"]


def test_the_task_s_time_limit_becomes_the_job_s_with_a_minute_for_the_worker() -> None:
    def options(parameters: dict[str, str], default: int | None = None) -> list[str]:
        task = Task.model_validate({"executors": [{"image": IMAGE, "command": ["true"]}],
                                    "resources": {"backend_parameters": parameters}})
        return [o for o in sbatch_options(task, SlurmSettings(), default) if o.startswith("--time")]

    assert options({"tesk.time_limit": "90"}) == ["--time=3"]
    assert options({}, default=120) == ["--time=3"]
    assert options({}) == []
    assert options({"tesk.time_limit": "90", "time": "10"}) == ["--time=3", "--time=10"], "Slurm's own key wins"


async def test_an_executor_past_its_time_limit_is_stopped_by_the_worker(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", "300"]}],
                                    "resources": {"backend_parameters": {"tesk.executor_time_limit": "3"}}})
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.EXECUTOR_ERROR
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.TIME_LIMIT_EXCEEDED, 0)
    assert job_states(task_id) == ["COMPLETED"], "the worker, not Slurm, stopped it"
    assert containers(task_id) == []


async def test_the_server_s_default_time_limit_reaches_the_worker(make_harness: MakeHarness) -> None:
    harness = await make_harness(default_time_limit=3)
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", "300"]}]})
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.EXECUTOR_ERROR
    run = (stored.task.logs or [])[-1]
    assert failure_of(run) == Failure(FailureReason.TIME_LIMIT_EXCEEDED, 0)
    assert any("time limit of 3 s (TESK_TASK_TIME_LIMIT_SECONDS)" in line for line in run.system_logs or [])


async def test_a_requeued_job_runs_the_task_again_to_a_true_end(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sh", "-c", "sleep 3; echo done"]}]})
    await harness.wait_for(task_id, {State.RUNNING})
    job_id = harness.backend.folder(task_id).job_id()
    assert job_id is not None
    for _ in range(100):
        if containers(task_id):
            break
        await asyncio.sleep(0.1)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    await harness.wait_for(task_id, {State.QUEUED}, timeout=30)
    assert containers(task_id) == []  # the worker stopped it when Slurm signalled the requeue
    for _ in range(100):
        if job_states(task_id) == ["PENDING"]:
            break
        await asyncio.sleep(0.1)
    # Slurm holds a requeued job back for two minutes (BeginTime); let it start again now.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.COMPLETE, stored.task.logs
    assert [e.stdout for e in (stored.task.logs or [])[-1].logs] == ["done\n"]
    assert job_states(task_id) == ["COMPLETED"]
    assert containers(task_id) == []


async def test_a_task_over_its_time_limit_ends_with_the_timeout_reason(make_harness: MakeHarness) -> None:
    """`time` is Slurm's (minutes at least; the controller checks limits about every 30 s): ~70 s."""
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", "600"]}],
                                    "resources": {"backend_parameters": {"time": "1"}}})
    stored = await harness.wait(task_id, timeout=180)
    assert stored.state is State.EXECUTOR_ERROR
    assert "reached its time limit (TIMEOUT)" in " ".join((stored.task.logs or [])[-1].system_logs or [])
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.TIME_LIMIT_EXCEEDED)
    assert job_states(task_id) == ["TIMEOUT"]
    assert containers(task_id) == []


async def test_a_task_over_its_memory_is_an_executor_error(make_harness: MakeHarness) -> None:
    """ram_gb is both the job's --mem and the container's memory limit. This machine's Slurm has no
    cgroup plugin, so it schedules memory but cannot enforce it (no OUT_OF_MEMORY job state here): the
    container engine's limit is what kills the executor, exit code 137."""
    harness = await make_harness()
    task_id = await harness.submit({
        "executors": [{"image": IMAGE, "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]}],
        "resources": {"ram_gb": 0.0625},
    })
    stored = await harness.wait(task_id)
    assert stored.state is State.EXECUTOR_ERROR
    assert [e.exit_code for e in (stored.task.logs or [])[-1].logs] == [137]
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.OOM_KILLED, 0)
    assert job_states(task_id) == ["COMPLETED"]


async def test_the_end_of_a_run_is_noticed_without_waiting_for_the_next_poll(make_harness: MakeHarness) -> None:
    """With a 60 s poll, a task still ends within seconds of its job (the loop sees the final report and
    asks squeue at once), and its state never steps back to QUEUED while the finished job is ending."""
    harness = await make_harness(poll_seconds=60)
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sh", "-c", "sleep 1; echo hi"]}]})
    seen: list[State] = []
    deadline = time.monotonic() + 40
    while (state := (await harness.get(task_id)).state) not in (State.COMPLETE, State.EXECUTOR_ERROR,
                                                                State.SYSTEM_ERROR):
        assert time.monotonic() < deadline, f"still {state} after 40 s: the task waited for the 60 s poll"
        if not seen or seen[-1] is not state:
            seen.append(state)
        await asyncio.sleep(0.02)
    stored = await harness.get(task_id)
    assert stored.state is State.COMPLETE, stored.task.logs
    assert [e.stdout for e in (stored.task.logs or [])[-1].logs] == ["hi\n"]
    assert State.QUEUED not in seen[1:], seen


async def test_tasks_submitted_while_the_loop_asks_squeue_are_not_taken_for_vanished_jobs(
        make_harness: MakeHarness) -> None:
    """A round that asked squeue just before sbatch returned must not read the new job's id afterwards
    and conclude that Slurm no longer knows the job (with rounds back to back, most submits race one)."""
    harness = await make_harness(poll_seconds=0.01)
    task_ids = [await harness.submit({"executors": [{"image": IMAGE, "command": ["true"]}]}) for _ in range(12)]
    ended = [await harness.wait(task_id, timeout=120) for task_id in task_ids]
    assert [stored.state for stored in ended] == [State.COMPLETE] * 12, [
        (stored.task.logs or [])[-1].system_logs for stored in ended if stored.state is not State.COMPLETE]


def _slurmd_running() -> None:
    """Start slurmd again if it is not running, and wait until the controller hears from the node."""
    if subprocess.run(["pgrep", "-x", "slurmd"], capture_output=True, check=False).returncode != 0:
        subprocess.run(["slurmd"], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False).stdout
        if any(state.rstrip("*") in ("idle", "mixed", "allocated") and not state.endswith("*")
               for state in states.split()):
            return
        time.sleep(0.2)
    raise AssertionError(f"the node did not come back after slurmd was restarted: {states!r}")


async def test_a_killed_slurmd_holds_the_finished_job_and_the_task_ends_complete_when_it_is_back(
        make_harness: MakeHarness) -> None:
    """slurmd killed while the job runs: the batch step finishes (slurmstepd lives on), but the job
    stays COMPLETING until slurmd is back. Meanwhile the task stays RUNNING (neither ended nor sent
    back to QUEUED); once slurmd is back it ends COMPLETE with the executor's output, once."""
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sh", "-c", "sleep 3; echo done"]}]})
    await harness.wait_for(task_id, {State.RUNNING})
    try:
        subprocess.run(["pkill", "-9", "-x", "slurmd"], check=True)
        for _ in range(200):
            if job_states(task_id) == ["COMPLETING"]:
                break
            await asyncio.sleep(0.1)
        assert job_states(task_id) == ["COMPLETING"]
        await asyncio.sleep(2)  # several rounds see the final report of a job that has not ended
        assert (await harness.get(task_id)).state is State.RUNNING
    finally:
        await asyncio.to_thread(_slurmd_running)
    stored = await harness.wait(task_id, timeout=60)
    assert stored.state is State.COMPLETE, stored.task.logs
    assert [e.stdout for e in (stored.task.logs or [])[-1].logs] == ["done\n"]
    assert job_states(task_id) == ["COMPLETED"]
    assert containers(task_id) == []
