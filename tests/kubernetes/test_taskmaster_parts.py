"""Helpers that need no cluster: Downward API files, the filer's report, the split-stream probe, the volume's node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tesk.backends.kubernetes.backend import split_streams_supported
from tesk.backends.kubernetes.cancel import read_labels_file
from tesk.backends.kubernetes.kube import KubeError
from tesk.backends.kubernetes.kube import Kube
from tesk.backends.kubernetes.taskmaster import TaskPods, _last_json


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
