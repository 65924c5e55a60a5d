"""The failure reasons and time limits of tasks on Kubernetes, end to end (issue 14 items 1 and 2)."""

from __future__ import annotations

import time

import pytest

from tests.kubernetes.conftest import Api, Cluster, failure

pytestmark = pytest.mark.kubernetes


def test_allocating_past_ram_gb_is_an_executor_error_with_oom_killed(api: Api) -> None:
    task_id = api.submit({"resources": {"ram_gb": 0.0625}, "executors": [
        {"image": "alpine", "command": ["true"]},
        {"image": "alpine", "command": ["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"]}]})
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "EXECUTOR_ERROR"
    assert failure(task) == ("OOMKilled", "1")
    assert [e["exit_code"] for e in task["logs"][0]["logs"]] == [0, 137]
    assert any("OOMKilled" in line for line in task["logs"][0]["system_logs"])
    metadata = task["logs"][0]["metadata"]
    assert float(metadata["tesk.executor.1.wall_seconds"]) >= 0
    assert "tesk.executor.1.peak_memory_bytes" not in metadata, "not sampled on Kubernetes: absent, not 0"


def test_an_executor_past_its_time_limit_is_stopped_by_its_job_s_deadline(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"resources": {"backend_parameters": {"tesk.executor_time_limit": "3"}},
                          "executors": [{"image": "alpine", "command": ["sh", "-c", "echo started; sleep 120"]},
                                        {"image": "alpine", "command": ["echo", "never"]}]})
    started = time.monotonic()
    task = api.wait(task_id, timeout=120)
    assert time.monotonic() - started < 60, "stopped at its limit, not after its sleep"
    assert task["state"] == "EXECUTOR_ERROR"
    assert failure(task) == ("TimeLimitExceeded", "0")
    [executor] = task["logs"][0]["logs"]
    assert executor["stdout"] == "started\n" and executor["exit_code"] != 0
    assert any("time limit of 3 s (tesk.executor_time_limit)" in line for line in task["logs"][0]["system_logs"])
    for job in cluster.kube().list("Job", f"tesk.io/task-id={task_id},tesk.io/executor=0")[0]:  # if not deleted yet
        assert job["spec"]["activeDeadlineSeconds"] == 3


def test_a_task_past_its_time_limit_is_stopped_with_the_reason(api: Api) -> None:
    task_id = api.submit({"resources": {"backend_parameters": {"tesk.time_limit": "4"}},
                          "executors": [{"image": "alpine", "command": ["sleep", "120"]}]})
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "EXECUTOR_ERROR"
    assert failure(task) == ("TimeLimitExceeded", "0")
    assert any("the task ran past its time limit of 4 s (tesk.time_limit)" in line
               for line in task["logs"][0]["system_logs"])


def test_a_failing_input_url_is_input_staging_failed(api: Api) -> None:
    task_id = api.submit({"inputs": [{"url": "http://127.0.0.1:9/in", "path": "/data/in"}],  # nothing on port 9
                          "executors": [{"image": "alpine", "command": ["true"]}]})
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "SYSTEM_ERROR"
    assert failure(task) == ("InputStagingFailed", None)
    assert "staging inputs failed" in " ".join(task["logs"][0]["system_logs"])
