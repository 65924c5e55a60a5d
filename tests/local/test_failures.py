"""The failure reason of each way a local task ends other than COMPLETE, on real containers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tesk.failures import Failure, FailureReason, failure_of
from tesk.models import State
from tests.local.conftest import ENGINES, IMAGE, MakeHarness, engine_available
from tests.local.server import Server

pytestmark = pytest.mark.containers


async def test_allocating_past_ram_gb_is_an_executor_error_with_oom_killed(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    stored = await harness.run({
        "resources": {"ram_gb": 0.0625},
        "executors": [
            {"image": IMAGE, "command": ["true"]},
            # `tail` keeps a 200 MB line without newlines in memory: far above the 64 MiB limit.
            {"image": IMAGE, "command": ["sh", "-c", "head -c 200000000 /dev/zero | tail"]},
        ],
    }, timeout=60)
    assert stored.state is State.EXECUTOR_ERROR
    [log] = stored.task.logs or []
    assert failure_of(log) == Failure(FailureReason.OOM_KILLED, 1)
    assert any("OOMKilled" in line for line in log.system_logs or [])


async def test_a_command_killed_by_its_own_signal_is_no_oom_kill(make_harness: MakeHarness) -> None:
    """Exit code 137 under a memory limit is not enough: podman's conmon says whether the OOM killer struck."""
    harness = await make_harness()
    stored = await harness.run({
        "resources": {"ram_gb": 0.0625},
        "executors": [{"image": IMAGE, "command": ["sh", "-c", "sleep 30 & kill -9 $!; wait $!"]}],
    })
    assert stored.state is State.EXECUTOR_ERROR
    [log] = stored.task.logs or []
    assert log.logs[0].exit_code == 137
    assert failure_of(log) == Failure(FailureReason.EXECUTOR_FAILED, 0)


async def test_a_non_zero_exit_is_executor_failed(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    stored = await harness.run({"executors": [{"image": IMAGE, "command": ["sh", "-c", "exit 3"]}]})
    assert stored.state is State.EXECUTOR_ERROR
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.EXECUTOR_FAILED, 0)


async def test_a_missing_image_is_image_pull_failed(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    stored = await harness.run({"executors": [{"image": IMAGE, "command": ["true"]},
                                              {"image": "localhost/no-such-image:1", "command": ["true"]}]})
    assert stored.state is State.SYSTEM_ERROR
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.IMAGE_PULL_FAILED, 1)


async def test_a_failing_input_url_is_input_staging_failed(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    stored = await harness.run({
        "inputs": [{"path": "/data/in", "url": "http://127.0.0.1:9/in", "type": "FILE"}],  # nothing listens on 9
        "executors": [{"image": IMAGE, "command": ["true"]}],
    })
    assert stored.state is State.SYSTEM_ERROR
    [log] = stored.task.logs or []
    assert log.metadata == Failure(FailureReason.INPUT_STAGING_FAILED).metadata()
    assert log.system_logs, "the sentence stays"


async def test_a_cancel_while_running_is_canceled(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", "30"]}]})
    await harness.wait_for(task_id, {State.RUNNING})
    await asyncio.sleep(0.5)
    await harness.cancel(task_id, by="bob")
    stored = await harness.wait(task_id, timeout=10)
    assert stored.state is State.CANCELED
    assert failure_of((stored.task.logs or [])[-1]) == Failure(FailureReason.CANCELED, 0)


async def test_a_cancel_while_queued_is_canceled(make_harness: MakeHarness) -> None:
    harness = await make_harness(max_tasks=0)
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["true"]}]})
    await harness.cancel(task_id, by="bob")
    stored = await harness.wait(task_id, timeout=2)
    assert stored.state is State.CANCELED
    assert (stored.task.logs or [])[-1].metadata == Failure(FailureReason.CANCELED).metadata()


async def test_a_task_larger_than_the_host_is_unschedulable(make_harness: MakeHarness) -> None:
    harness = await make_harness(cpu_cores=2, ram_gb=4)
    stored = await harness.run({"resources": {"cpu_cores": 64}, "executors": [{"image": IMAGE, "command": ["true"]}]},
                               timeout=1)
    assert stored.state is State.SYSTEM_ERROR
    assert (stored.task.logs or [])[-1].metadata == Failure(FailureReason.UNSCHEDULABLE).metadata()


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_executor_past_its_time_limit_is_stopped_with_its_log(make_harness: MakeHarness, engine: str) -> None:
    harness = await make_harness(engine)
    started = time.monotonic()
    stored = await harness.run({
        "resources": {"backend_parameters": {"tesk.executor_time_limit": "2"}},
        "executors": [{"image": IMAGE, "command": ["sh", "-c", "echo started; sleep 60"]},
                      {"image": IMAGE, "command": ["true"]}],
    })
    assert time.monotonic() - started < 15, "stopped at its limit, not after its sleep"
    assert stored.state is State.EXECUTOR_ERROR
    [log] = stored.task.logs or []
    assert failure_of(log) == Failure(FailureReason.TIME_LIMIT_EXCEEDED, 0)
    [executor] = log.logs
    assert executor.stdout == "started\n" and executor.exit_code == 137
    assert any("time limit of 2 s (tesk.executor_time_limit)" in line for line in log.system_logs or [])
    await harness.settled(stored.id)
    assert not container_names(stored.id), "the container is gone"


async def test_the_server_s_default_limit_applies_to_a_task_without_its_own(make_harness: MakeHarness) -> None:
    harness = await make_harness(server={"task_time_limit_seconds": 2})
    stored = await harness.run({"executors": [{"image": IMAGE, "command": ["sleep", "60"]}]})
    assert stored.state is State.EXECUTOR_ERROR
    [log] = stored.task.logs or []
    assert failure_of(log) == Failure(FailureReason.TIME_LIMIT_EXCEEDED, 0)
    assert any("the task ran past its time limit of 2 s (TESK_TASK_TIME_LIMIT_SECONDS)" in line
               for line in log.system_logs or [])
    own = await harness.run({"resources": {"backend_parameters": {"tesk.time_limit": "30"}},
                             "executors": [{"image": IMAGE, "command": ["sleep", "3"]}]})
    assert own.state is State.COMPLETE, "the task's own limit wins over the default"


def container_names(task_id: str) -> list[str]:
    out = subprocess.run(["podman", "ps", "--all", "--filter", f"label=tesk.task-id={task_id}", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()


async def test_an_executor_s_peak_memory_and_cpu_time_are_measured(make_harness: MakeHarness) -> None:
    """200 MiB allocated (dd's buffer) and held past a read; then two seconds of busy CPU on one core,
    checked against the container's own cgroup counter read at its very end (cgroup v1 or v2)."""
    harness = await make_harness()
    own_cpu = ("cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || "
               "awk '/usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/cpu.stat")
    stored = await harness.run({"resources": {"cpu_cores": 1}, "executors": [
        {"image": IMAGE, "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; sleep 1"]},
        {"image": IMAGE, "command": ["sh", "-c", f"timeout 2 yes > /dev/null; {own_cpu}"]},
    ]})
    assert stored.state is State.COMPLETE
    log = (stored.task.logs or [])[-1]
    metadata = log.metadata or {}
    peak = int(metadata["tesk.executor.0.peak_memory_bytes"])
    assert 200 * 2**20 <= peak < 220 * 2**20, peak
    wall, cpu = float(metadata["tesk.executor.1.wall_seconds"]), float(metadata["tesk.executor.1.cpu_seconds"])
    true_cpu = int(float(log.logs[1].stdout or "0")) / 1e9
    assert true_cpu > 0.3 and true_cpu <= wall, (true_cpu, wall)
    assert true_cpu - 0.25 <= cpu <= true_cpu + 0.05, (cpu, true_cpu)  # one read interval short at most


HOLD = "import resource, time; held = b'x' * (200 << 20); time.sleep(1); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
SPIN = "import time\nwhile time.process_time() < 1.5: pass\nprint(time.process_time())"


def test_the_process_engine_reports_what_its_commands_used(tmp_path: Path) -> None:
    """From bubblewrap's rusage: 200 MiB held by one process (a grandchild of bubblewrap, under a
    shell), then a busy loop of 1.5 s of CPU, each checked against the command's own count (the loop
    stops at a CPU time, not a wall time, so a loaded machine cannot make it short). Through a real
    `tesk serve`: Linux passes the server's memory high-water mark on to the child it forks, so a peak
    is known only above the server's own (a pytest process that ran the suite holds more than 200 MiB);
    `true` is below it: its peak is unknown, so absent."""
    if not engine_available("process"):
        pytest.skip("bubblewrap is not installed on this machine")
    server = Server(tmp_path, {"TESK_LOCAL_ENGINE": "process", "TESK_LOCAL_NETWORK": "none"})
    server.start()
    try:
        task_id = httpx.post(f"{server.url}/tasks", timeout=10, json={"executors": [
            {"image": IMAGE, "command": ["sh", "-c", f'"{sys.executable}" -c "{HOLD}"']},
            {"image": IMAGE, "command": [sys.executable, "-c", SPIN]},
            {"image": IMAGE, "command": ["true"]},
        ]}).json()["id"]
        deadline = time.monotonic() + 60
        while (task := server.task(task_id))["state"] in ("QUEUED", "INITIALIZING", "RUNNING"):
            assert time.monotonic() < deadline, task["state"]
            time.sleep(0.1)
    finally:
        server.stop()
    assert task["state"] == "COMPLETE", task["logs"]
    log = task["logs"][-1]
    metadata = log.get("metadata") or {}
    peak, own_peak = int(metadata["tesk.executor.0.peak_memory_bytes"]), int(log["logs"][0]["stdout"] or "0") * 1024
    assert 200 * 2**20 <= own_peak <= peak < 220 * 2**20, (peak, own_peak)
    wall, cpu = float(metadata["tesk.executor.1.wall_seconds"]), float(metadata["tesk.executor.1.cpu_seconds"])
    own_cpu = float(log["logs"][1]["stdout"] or "0")
    assert own_cpu >= 1.5 and own_cpu <= cpu <= own_cpu + 0.2, (cpu, own_cpu)  # plus bubblewrap's own
    assert cpu <= wall, (cpu, wall)
    assert "tesk.executor.2.peak_memory_bytes" not in metadata and "tesk.executor.2.cpu_seconds" in metadata
