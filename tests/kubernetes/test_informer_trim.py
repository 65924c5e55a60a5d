"""The informers' trim: the cache keeps what state mapping reads of a Job or pod, and only that.

Objects here are as a 1.32 API server returns them (ids, IPs, QoS class, container ids, mounts,
resources, managedFields), so what the trim drops is what a real cluster sends; every decision made
from the trimmed object must equal the decision made from the whole one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.informer import trim
from tesk.backends.kubernetes.state import Graces, disrupted, pod_blocker, task_state, terminated, unschedulable

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
GRACES = Graces(unschedulable=300, image_pull=60, create_container=60, failed_create=60, scale_up=1800)
TASK = "task-01jz0000000000000000000000"


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": ts(400),
            **({"reason": reason} if reason else {}), **({"message": message} if message else {})}


def container(state: dict[str, Any]) -> dict[str, Any]:
    return {"name": "executor", "image": "docker.io/library/busybox:latest", "imageID": "docker.io/library/busybox@"
            "sha256:" + "a" * 64, "containerID": "containerd://" + "b" * 64, "ready": False, "started": False,
            "restartCount": 0, "lastState": {}, "state": state, "user": {"linux": {"uid": 0, "gid": 0}},
            "volumeMounts": [{"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                              "readOnly": True, "recursiveReadOnly": "Disabled"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}


def pod(phase: str, conditions: list[dict[str, Any]], state: dict[str, Any] | None, created: float = 500,
        **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions, "qosClass": "Burstable",
                              "hostIP": "10.0.0.4", "hostIPs": [{"ip": "10.0.0.4"}], "podIP": "10.1.2.3",
                              "podIPs": [{"ip": "10.1.2.3"}], "startTime": ts(created), **extra}
    if state is not None:
        status["containerStatuses"] = [container(state)]
    return {"kind": "Pod", "metadata": {
        "name": f"{TASK}-ex-00-x1y2z", "namespace": "tes-tasks", "uid": "c0ffee00-0000-0000-0000-000000000001",
        "resourceVersion": "4711", "creationTimestamp": ts(created), "generateName": f"{TASK}-ex-00-",
        "labels": lb.task_labels(TASK, lb.Role.EXECUTOR),
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": f"{TASK}-ex-00", "uid": "u2",
                             "controller": True, "blockOwnerDeletion": True}],
        "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:status": {"f:podIP": {}}}}]},
        "spec": {"nodeName": "node-a", "containers": [{"name": "executor", "image": "busybox"}]}, "status": status}


PODS = {
    "pulling too long": pod("Pending", [cond("PodScheduled")], {"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "busybox:nope"'}}),
    "invalid image": pod("Pending", [cond("PodScheduled")], {"waiting": {
        "reason": "InvalidImageName", "message": 'Failed to apply default image tag "Bad::x"'}}),
    "unschedulable": pod("Pending", [cond("PodScheduled", "False", "Unschedulable",
                                          "0/3 nodes are available: 3 Insufficient memory.")], None),
    "running": pod("Running", [cond(c) for c in ("PodReadyToStartContainers", "Initialized", "Ready",
                                                 "ContainersReady", "PodScheduled")],
                   {"running": {"startedAt": ts(300)}}),
    "succeeded": pod("Succeeded", [cond("Ready", "False", "PodCompleted")], {"terminated": {
        "exitCode": 0, "reason": "Completed", "startedAt": ts(300), "finishedAt": ts(200),
        "containerID": "containerd://" + "b" * 64}}),
    "evicted": pod("Failed", [cond("DisruptionTarget", reason="TerminationByKubelet",
                                   message="The node was low on resource: memory.")],
                   {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": ts(300),
                                   "finishedAt": ts(200)}}, reason="Evicted", message="The node was low on memory."),
}


@pytest.mark.parametrize("name", sorted(PODS))
def test_a_trimmed_pod_decides_as_the_whole_one(name: str) -> None:
    whole = PODS[name]
    kept = trim(json.loads(json.dumps(whole)))
    assert pod_blocker(kept, NOW, GRACES) == pod_blocker(whole, NOW, GRACES)
    assert terminated(kept, "executor") == terminated(whole, "executor")
    assert disrupted(kept) == disrupted(whole)
    assert unschedulable(kept) == unschedulable(whole)
    assert task_state(None, [kept], None, NOW, GRACES) == task_state(None, [whole], None, NOW, GRACES)


def test_the_trim_drops_what_no_decision_reads() -> None:
    kept = trim(json.loads(json.dumps(PODS["succeeded"])))
    assert sorted(kept["status"]) == ["conditions", "containerStatuses", "phase"]
    assert kept["status"]["containerStatuses"] == [{
        "name": "executor", "image": "docker.io/library/busybox:latest",
        "state": PODS["succeeded"]["status"]["containerStatuses"][0]["state"]}]
    assert "managedFields" not in kept["metadata"] and kept["spec"] == {"nodeName": "node-a"}


def test_strings_that_recur_across_objects_are_held_once() -> None:
    """Two pods decoded apart (two list pages) share their label values and condition texts."""
    first, second = (trim(json.loads(json.dumps(PODS["running"]))) for _ in range(2))
    assert first["metadata"]["labels"][lb.ROLE] is second["metadata"]["labels"][lb.ROLE]
    assert first["status"]["conditions"][2]["type"] is second["status"]["conditions"][2]["type"]
    assert first["status"]["phase"] is second["status"]["phase"]
