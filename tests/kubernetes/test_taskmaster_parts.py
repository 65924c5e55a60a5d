"""Helpers that need no cluster: Downward API files, the filer's report, the split-stream probe, the volume's node."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tesk.backends.kubernetes.backend import split_streams_supported
from tesk.backends.kubernetes.cancel import read_labels_file
from tesk.backends.kubernetes.kube import KubeError
from tesk.backends.kubernetes.kube import Kube
from tesk.backends.kubernetes.manifests import Owner
from tesk.backends.kubernetes.taskmaster import KubernetesRuntime, TaskPods, _last_json
from tesk.config.kubernetes import KubernetesSettings
from tesk.runner import TaskFailure


def test_downward_api_files_parse_go_quoted_values(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    # kubelet's format: sorted key="value" lines, Go-quoted; the last line has no newline
    path.write_text('app.kubernetes.io/managed-by="tesk"\ntesk.io/cancel="requested"\n'
                    'tesk.io/zz="a \\"quoted\\" value"')
    labels = read_labels_file(path)
    assert labels["tesk.io/cancel"] == "requested"
    assert labels["tesk.io/zz"] == 'a "quoted" value'
    assert read_labels_file(tmp_path / "missing") == {}


def test_the_filer_report_is_the_last_json_line() -> None:
    text = 'downloading x\n{"not": "this"}\nstderr noise\n{"outputs": [], "error": null}\n'
    assert _last_json(text) == {"outputs": [], "error": None}
    assert _last_json("no report at all\n{broken") is None


class FakeLogs:
    """A pod log API that splits streams, ignores the parameter, or refuses it."""

    def __init__(self, behaviour: str, whole: str = "2026 INFO tesk.taskmaster: starting\n") -> None:
        self.behaviour, self.whole = behaviour, whole

    def read_log(self, pod: str, container: str, limit_bytes: int, stream: str | None = None) -> str:
        if stream is None:
            return self.whole
        if self.behaviour == "refuses":
            raise KubeError.of(400, "stream: Forbidden: may not be specified")
        return "" if self.behaviour == "splits" else self.whole


@pytest.mark.parametrize(("behaviour", "answer"), [("splits", True), ("ignores", False), ("refuses", False)])
def test_split_stream_probe(behaviour: str, answer: bool) -> None:
    assert split_streams_supported(FakeLogs(behaviour), "tm-pod") is answer  # type: ignore[arg-type]
    assert split_streams_supported(FakeLogs(behaviour, whole=""), "tm-pod") is None  # type: ignore[arg-type]


def test_the_volumes_node_is_where_the_first_step_pod_ran_and_survives_the_cache_trim() -> None:
    def pod(name: str, role: str, created: str, node: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "alpine"}]}
        if node:
            spec["nodeName"] = node
        return {"kind": "Pod", "metadata": {"name": name, "creationTimestamp": created, "resourceVersion": "1",
                                            "labels": {"tesk.io/task-id": "t1", "tesk.io/role": role}},
                "spec": spec, "status": {"phase": "Succeeded"}}

    loop = asyncio.new_event_loop()
    try:
        watch = TaskPods(Kube.__new__(Kube), "t1", loop)  # the informer is never started: no requests
        assert watch.volume_node() is None
        watch.cache.put("Pod", pod("t1", "taskmaster", "2026-01-01T00:00:00Z", "node-9"))
        watch.cache.put("Pod", pod("t1-inputs", "inputs", "2026-01-01T00:00:05Z", None))
        assert watch.volume_node() is None  # the taskmaster holds no volume; the filer is not scheduled yet
        watch.cache.put("Pod", pod("t1-ex-00", "executor", "2026-01-01T00:00:09Z", "node-2"))
        watch.cache.put("Pod", pod("t1-inputs", "inputs", "2026-01-01T00:00:05Z", "node-1"))
        assert watch.volume_node() == "node-1"
        assert watch.get("t1-inputs") == {**watch.get("t1-inputs"), "spec": {"nodeName": "node-1"}}
    finally:
        loop.close()


class RefusingKube:
    """The API as the taskmaster sees it while the Job controller's pod creates are refused: FailedCreate Events."""

    def __init__(self, recorded: str) -> None:
        self.recorded = recorded
        self.reads = 0

    def events_of(self, kind: str, name: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [{"reason": "FailedCreate", "type": "Warning", "lastTimestamp": self.recorded,
                 "message": 'Error creating: pods "t1-inputs-x2z9q" is forbidden: exceeded quota: q, requested: '
                            "pods=1, used: pods=1, limited: pods=1"}]


async def _filer_wait(kube: RefusingKube, *pods: dict[str, Any]) -> None:
    """The runtime's wait on the inputs filer Job, with these pods in the watch's cache."""
    watch = TaskPods(Kube.__new__(Kube), "t1", asyncio.get_running_loop())  # never started: no requests
    for pod in pods:
        watch.cache.put("Pod", pod)
    settings = KubernetesSettings(failed_create_grace_seconds=0.2)
    runtime = KubernetesRuntime(kube, settings, Owner("t1", "uid-1"), watch, None)  # type: ignore[arg-type]
    await runtime._wait("t1-inputs", "filer", 2, "the inputs filer")


def _gave_up(kube: RefusingKube, *pods: dict[str, Any]) -> str:
    with pytest.raises(TaskFailure) as failure:
        asyncio.run(asyncio.wait_for(_filer_wait(kube, *pods), timeout=10))
    return str(failure.value)


def _failed_filer_pod() -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "t1-inputs-abcde", "resourceVersion": "1",
                                        "creationTimestamp": "2026-01-01T00:00:00Z",
                                        "labels": {"tesk.io/task-id": "t1", "tesk.io/role": "inputs"},
                                        "ownerReferences": [{"kind": "Job", "name": "t1-inputs", "uid": "j"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "filer", "state": {"terminated": {"exitCode": 1, "message": "refused by the server"}}}]}}


def test_a_step_whose_first_pod_is_refused_ends_after_the_failed_create_grace() -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reason = _gave_up(RefusingKube(now))
    assert reason.startswith("the inputs filer could not start: Kubernetes refused to create the pod of Job "
                             't1-inputs: Error creating: pods "t1-inputs-x2z9q" is forbidden: exceeded quota: q')


def test_a_replacement_pod_refused_after_a_failed_one_ends_the_step_too() -> None:
    """The filer's first pod failed (a retry is due) and its replacement is refused: no live pod, only Events."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    reason = _gave_up(RefusingKube(now), _failed_filer_pod())
    assert "could not start: Kubernetes refused to create the pod of Job t1-inputs" in reason


def test_a_refusal_from_before_the_job_went_idle_is_not_taken_for_a_new_one() -> None:
    kube = RefusingKube("2020-01-01T00:00:00Z")  # an old refusal: a pod was created after it
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(_filer_wait(kube, _failed_filer_pod()), timeout=2))
    assert kube.reads >= 1  # it did look at the Events, and went on waiting
