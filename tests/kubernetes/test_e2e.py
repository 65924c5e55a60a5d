"""The Kubernetes backend end to end: real API, controller and taskmaster on the stand-in cluster."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.kubernetes.conftest import Api, Cluster, task_objects

pytestmark = pytest.mark.kubernetes


def test_executor_failures_with_and_without_ignore_error(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"executors": [
        {"image": "alpine", "command": ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"], "ignore_error": True},
        {"image": "alpine", "command": ["echo", "second"]},
        {"image": "alpine", "command": ["sh", "-c", "exit 4"]},
        {"image": "alpine", "command": ["echo", "never"]},
    ]})
    task = api.wait(task_id)
    assert task["state"] == "EXECUTOR_ERROR"
    logs = task["logs"][0]["logs"]
    assert [e["exit_code"] for e in logs] == [3, 0, 4]  # the fourth never ran: no log for it
    if cluster.devcluster is not None:  # stdout and stderr apart (the stand-in serves split streams)
        assert (logs[0]["stdout"], logs[0]["stderr"]) == ("to-out\n", "to-err\n")
    assert logs[1]["stdout"] == "second\n"
    assert "ignore_error is set" in " ".join(task["logs"][0]["system_logs"])
    assert all(e["start_time"] <= e["end_time"] for e in logs)


def test_missing_executor_image_is_a_system_error_with_the_reason(api: Api) -> None:
    task_id = api.submit({"executors": [{"image": "no-such-image:1", "command": ["true"]}]})
    task = api.wait(task_id)
    assert task["state"] == "SYSTEM_ERROR"
    assert "no-such-image:1" in " ".join(task["logs"][0]["system_logs"])


def test_unschedulable_task_ends_instead_of_staying_queued(api: Api) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["true"]}],
                          "resources": {"cpu_cores": 4096}})
    task = api.wait(task_id)
    assert task["state"] == "SYSTEM_ERROR"
    assert "could not be scheduled" in " ".join(task["logs"][0]["system_logs"])


def test_cancel_while_pending_wins_and_leaves_no_pod(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "60"]}]})
    assert api.http.post(f"/tasks/{task_id}:cancel").status_code == 200
    task = api.wait(task_id)
    assert task["state"] == "CANCELED"
    _no_pods_left(cluster, task_id)


def test_cancel_while_running_stops_the_executor(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "60"]}]})
    api.wait(task_id, {"RUNNING"})
    assert api.http.post(f"/tasks/{task_id}:cancel").status_code == 200
    task = api.wait(task_id, timeout=30)
    assert task["state"] == "CANCELED"
    assert any("cancelled by" in line for line in task["logs"][0]["system_logs"])
    _no_pods_left(cluster, task_id)


def _no_pods_left(cluster: Cluster, task_id: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        kube = cluster.kube()
        items, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role!=taskmaster")
        running = [p["metadata"]["name"] for p in items if p.get("status", {}).get("phase") in ("Pending", "Running")]
        if not running:
            return
        assert time.monotonic() < deadline, f"pods still running after cancel: {running}"
        time.sleep(0.3)


def test_api_restart_mid_task_catches_up(api_factory: Any) -> None:
    first = api_factory()
    task_id = first.submit({"executors": [{"image": "alpine", "command": ["sleep", "3"]},
                                          {"image": "alpine", "command": ["echo", "done"]}]})
    first.wait(task_id, {"RUNNING"})
    first.stop()
    second = api_factory()
    task = second.wait(task_id)
    assert task["state"] == "COMPLETE"
    assert task["logs"][0]["logs"][1]["stdout"].startswith("done")


def test_taskmaster_pod_killed_resumes_without_rerunning_executors(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["echo", "first"]},
                                        {"image": "alpine", "command": ["sleep", "4"]},
                                        {"image": "alpine", "command": ["echo", "third"]}]})
    kube = cluster.kube()
    deadline = time.monotonic() + 60
    while not kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=1")[0]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    taskmasters, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")
    killed = taskmasters[0]["metadata"]["name"]
    kube.delete("Pod", killed, "Background", 0)
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "COMPLETE", task["logs"]
    assert [e["stdout"].strip() for e in task["logs"][0]["logs"]] == ["first", "", "third"]
    first_pods, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")
    assert len(first_pods) == 1  # executor 0 ran once
    survivors = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")[0]
    assert [p["metadata"]["name"] for p in survivors] != [killed]  # a new taskmaster pod finished the task


def test_injected_apiserver_faults_are_survived(api_factory: Any, cluster: Cluster) -> None:
    dev = cluster.require_standin()
    api = api_factory()
    dev.inject(verb="create", resource="jobs", status=500, times=1, client="admin")
    dev.inject(verb="create", resource="configmaps", status=429, retry_after=1, times=1)
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "2"]},
                                        {"image": "alpine", "command": ["echo", "ok"]}]})
    api.wait(task_id, {"RUNNING", "COMPLETE"})
    dev.compact()  # every watch must now relist (410 Gone)
    dev.drop_watches()
    task = api.wait(task_id)
    assert task["state"] == "COMPLETE"


def test_create_refused_by_the_cluster_is_an_error_and_leaves_nothing(api: Api, cluster: Cluster) -> None:
    dev = cluster.require_standin()
    dev.inject(verb="create", resource="configmaps", status=403, times=1, client="admin",
               message="configmaps is forbidden")
    response = api.http.post("/tasks", json={"executors": [{"image": "alpine", "command": ["true"]}]})
    assert response.status_code == 500
    assert "forbidden" in response.json()["message"]
    listed = api.http.get("/tasks", params={"view": "BASIC"}).json()["tasks"]
    assert listed[0]["state"] == "SYSTEM_ERROR"
    deadline = time.monotonic() + 20
    while task_objects(cluster, listed[0]["id"]).get("Job"):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_everything_owned_by_the_taskmaster_goes_after_the_ttl(api_factory: Any, cluster: Cluster) -> None:
    api = api_factory(job_ttl_seconds=1)
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["echo", "x"]}]})
    assert api.wait(task_id)["state"] == "COMPLETE"
    deadline = time.monotonic() + 30
    while (left := task_objects(cluster, task_id)):
        assert time.monotonic() < deadline, f"still there after the TTL: {left}"
        time.sleep(0.3)
    assert api.get(task_id)["state"] == "COMPLETE"  # the store keeps the task
