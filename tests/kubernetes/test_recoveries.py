"""What heals or is cleaned up later on the strict profile: a half-made submit whose clean-up failed
(R10), an image that becomes pullable and a container create that stops failing within their graces (R4)."""

from __future__ import annotations

import secrets
import subprocess
import time
from typing import Any

import pytest

from tests.kubernetes.conftest import Api, Cluster, task_objects

pytestmark = pytest.mark.kubernetes


def test_a_half_made_submit_leaves_no_job_even_when_its_delete_fails(api: Api, cluster: Cluster) -> None:
    """The spec ConfigMap is refused, and so is the delete of the Job made just before it: the task ends
    SYSTEM_ERROR at once, and the controller deletes the Job it then sees running without a result."""
    dev = cluster.require_standin()
    dev.inject(verb="create", resource="configmaps", status=403, times=1, client=cluster.api_user,
               message="configmaps is forbidden")
    refused_delete = dev.inject(verb="delete", resource="jobs", status=403, times=1, client=cluster.api_user,
                                message="jobs is forbidden")
    response = api.http.post("/tasks", json={"executors": [{"image": "alpine", "command": ["sleep", "600"]}]})
    assert response.status_code == 500
    task = api.http.get("/tasks", params={"view": "BASIC"}).json()["tasks"][0]
    assert task["state"] == "SYSTEM_ERROR"
    assert refused_delete.hits == 1
    deadline = time.monotonic() + 30
    while task_objects(cluster, task["id"]).get("Job"):
        assert time.monotonic() < deadline, f"the Job of task {task['id']} outlived its failed submit"
        time.sleep(0.3)
    assert api.get(task["id"])["state"] == "SYSTEM_ERROR"


def test_an_image_that_becomes_pullable_within_its_grace_runs(api_factory: Any, cluster: Cluster) -> None:
    """ErrImagePull and ImagePullBackOff are waited out for `image_pull_grace_seconds` (a registry's 429,
    a slow mirror): the task runs once the image can be had."""
    cluster.require_standin()
    api = api_factory(image_pull_grace_seconds=60)
    image = f"localhost/tesk-late-{secrets.token_hex(4)}:1"
    task_id = api.submit({"executors": [{"image": image, "command": ["echo", "pulled at last"]}]})
    kube = cluster.kube()
    deadline = time.monotonic() + 60
    try:
        while True:
            pods = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")[0]
            reasons = {((s.get("state") or {}).get("waiting") or {}).get("reason")
                       for p in pods for s in (p.get("status") or {}).get("containerStatuses") or []}
            if reasons & {"ErrImagePull", "ImagePullBackOff"}:
                break
            assert time.monotonic() < deadline, "the executor pod never waited for its image"
            time.sleep(0.2)
        time.sleep(3)  # past the e2e default grace (3 s): only the setting keeps the task waiting
        assert api.get(task_id)["state"] not in ("SYSTEM_ERROR", "EXECUTOR_ERROR")
        subprocess.run(["podman", "tag", "alpine", image], check=True)
        task = api.wait(task_id, timeout=60)
    finally:
        subprocess.run(["podman", "rmi", image], check=False, capture_output=True)
    assert task["state"] == "COMPLETE", task["logs"]
    assert task["logs"][0]["logs"][0]["stdout"] == "pulled at last\n"


@pytest.mark.parametrize("grace", [60, 0])
def test_a_create_container_error_that_passes_is_waited_out_within_its_grace(
        api_factory: Any, cluster: Cluster, grace: int) -> None:
    """CreateContainerError is often transient (containerd's "failed to reserve container name" while an
    old container of that name is still being removed): the kubelet retries, and the task waits for
    `create_container_grace_seconds` (R4); with no grace it ends SYSTEM_ERROR on the first refusal."""
    dev = cluster.require_standin()
    api = api_factory(create_container_grace_seconds=grace)
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["echo", "created at last"]}]})
    dev.fail_container_creates(f"{task_id}-ex-0", "executor", 2, 'failed to reserve container name '
                               '"executor_x": name "executor_x" is reserved for "4f2c"')
    task = api.wait(task_id, timeout=60)
    if grace:
        assert task["state"] == "COMPLETE", task["logs"]
        assert [f.times for f in dev.kubelet.create_failures if f.pod_prefix.startswith(task_id)] == [0]
        assert task["logs"][0]["logs"][0]["stdout"] == "created at last\n"
    else:
        assert task["state"] == "SYSTEM_ERROR", task["logs"]
        assert "CreateContainerError: failed to reserve container name" in " ".join(task["logs"][0]["system_logs"])
