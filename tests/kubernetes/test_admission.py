"""Pods the cluster refuses to admit end their task, never hang it (B3): a ResourceQuota that leaves no room for
the taskmaster, a LimitRange the filer is over, a Pod Security level an executor breaks. The Job controller
records each refusal only as a `FailedCreate` Event on the Job (no condition); the API's controller (taskmaster)
and the taskmaster (filer, executor) read it after `failed_create_grace_seconds` and end the task SYSTEM_ERROR
with the API server's message."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tesk.backends.kubernetes.kube import load_api_client
from tests.kubernetes.conftest import Api, Cluster, failure

pytestmark = pytest.mark.kubernetes

TASK = {"executors": [{"image": "alpine", "command": ["true"]}]}
WITH_INPUT = {**TASK, "inputs": [{"content": "x\n", "path": "/data/x.txt"}]}


@pytest.fixture
def core(cluster: Cluster, tmp_path: Path) -> Iterator[kubernetes.client.CoreV1Api]:
    """A cluster operator's CoreV1Api (quotas, limit ranges and namespace labels are theirs, not the API's)."""
    dev = cluster.require_standin()
    operator = dev.write_kubeconfig(tmp_path / "operator.kubeconfig", user="operator", groups=("system:masters",))
    with load_api_client(operator) as api_client:
        yield kubernetes.client.CoreV1Api(api_client)


def _reasons(task: dict[str, Any]) -> str:
    return " ".join(task["logs"][0]["system_logs"])


def _run(api: Api, task: dict[str, Any], undo: Callable[[], object]) -> tuple[str, dict[str, Any], float]:
    """Submit under the refusing setting, wait for the end, then `undo` the setting: (id, task, seconds taken)."""
    try:
        task_id = api.submit(task)
        started = time.monotonic()
        return task_id, api.wait(task_id, timeout=60), time.monotonic() - started
    finally:
        undo()


def test_a_taskmaster_the_quota_has_no_room_for_ends_the_task(api: Api, cluster: Cluster,
                                                              core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_resource_quota(cluster.namespace, {"metadata": {"name": "no-pods"},
                                                              "spec": {"hard": {"pods": "0"}}})
    _wait_counted(core, cluster.namespace, "no-pods")
    task_id, task, took = _run(api, TASK, lambda: core.delete_namespaced_resource_quota("no-pods", cluster.namespace))
    assert task["state"] == "SYSTEM_ERROR"
    assert re.search(rf'the taskmaster could not start: Kubernetes refused to create the pod of Job {task_id}: '
                     rf'Error creating: pods "{task_id}-[a-z0-9]{{5}}" is forbidden: exceeded quota: no-pods, '
                     r"requested: pods=1, used: pods=0, limited: pods=0", _reasons(task)), _reasons(task)
    assert took < 30  # the 3 s grace, then the next look at the Job's Events
    assert failure(task) == ("AdmissionRefused", None)
    assert not cluster.kube().list("Pod", f"tesk.io/task-id={task_id}")[0]


def test_a_filer_over_the_limit_range_ends_the_task(api_factory: Any, cluster: Cluster,
                                                    core: kubernetes.client.CoreV1Api) -> None:
    api = api_factory(taskmaster_memory="128Mi", filer_memory="256Mi")
    core.create_namespaced_limit_range(cluster.namespace, {"metadata": {"name": "small"}, "spec": {"limits": [
        {"type": "Container", "max": {"memory": "200Mi"}}]}})
    _, task, took = _run(api, WITH_INPUT, lambda: core.delete_namespaced_limit_range("small", cluster.namespace))
    assert task["state"] == "SYSTEM_ERROR"
    assert re.search(r"the inputs filer could not start: Kubernetes refused to create the pod of Job "
                     rf'[-a-z0-9]+: Error creating: pods "[-a-z0-9]+" is forbidden: maximum memory usage per '
                     r"Container is 200Mi, but limit is 256Mi", _reasons(task)), _reasons(task)
    assert took < 40
    assert not task["logs"][0].get("logs")  # no executor ran
    assert failure(task) == ("AdmissionRefused", None), "the refusal, not InputStagingFailed"


def test_an_executor_pod_security_refuses_ends_the_task(api: Api, cluster: Cluster,
                                                        core: kubernetes.client.CoreV1Api) -> None:
    """Under `restricted`, taskmaster and filer pods are admitted (they meet it) and a root executor is not."""
    namespace = core.read_namespace(cluster.namespace)
    before = dict(namespace.metadata.labels)
    core.patch_namespace(cluster.namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    _, task, took = _run(api, WITH_INPUT, lambda: core.patch_namespace(cluster.namespace,
                                                                      {"metadata": {"labels": before}}))
    assert task["state"] == "SYSTEM_ERROR"
    assert re.search(r"could not start: Kubernetes refused to create the pod of Job [-a-z0-9]+: Error creating: "
                     r'pods "[-a-z0-9]+" is forbidden: violates PodSecurity "restricted:latest": '
                     r"allowPrivilegeEscalation != false", _reasons(task)), _reasons(task)
    assert took < 40
    assert "executor" in _reasons(task)
    assert failure(task) == ("AdmissionRefused", "0")


def _wait_counted(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> None:
    """A quota is enforced once the quota controller has written its status."""
    deadline = time.monotonic() + 10
    while not core.read_namespaced_resource_quota(name, namespace).status.used:
        assert time.monotonic() < deadline, f"quota {name} was never counted"
        time.sleep(0.1)


def test_a_claim_the_quota_refuses_ends_the_task_at_once(api: Api, cluster: Cluster,
                                                          core: kubernetes.client.CoreV1Api) -> None:
    """The taskmaster creates the task's PVC itself: the API's 403 is its answer, no Event or grace involved."""
    core.create_namespaced_resource_quota(cluster.namespace, {"metadata": {"name": "no-claims"},
                                                              "spec": {"hard": {"persistentvolumeclaims": "0"}}})
    _wait_counted(core, cluster.namespace, "no-claims")
    _, task, took = _run(api, {**TASK, "volumes": ["/scratch"]},
                         lambda: core.delete_namespaced_resource_quota("no-claims", cluster.namespace))
    assert task["state"] == "SYSTEM_ERROR"
    assert re.search(r'Kubernetes refused PersistentVolumeClaim [-a-z0-9]+: .*persistentvolumeclaims "[-a-z0-9]+" '
                     r"is forbidden: exceeded quota: no-claims, requested: persistentvolumeclaims=1, "
                     r"used: persistentvolumeclaims=0, limited: persistentvolumeclaims=0", _reasons(task)), \
        _reasons(task)
    assert took < 30
