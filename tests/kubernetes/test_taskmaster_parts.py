"""Helpers that need no cluster: Downward API files, the filer's report, the split-stream probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from tesk.backends.kubernetes.backend import split_streams_supported
from tesk.backends.kubernetes.cancel import read_labels_file
from tesk.backends.kubernetes.kube import KubeError
from tesk.backends.kubernetes.taskmaster import _last_json


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
