"""Taskmaster helpers that need no cluster: Downward API files, the filer's report, result writes."""

from __future__ import annotations

from pathlib import Path

from tesk.backends.kubernetes.taskmaster import _last_json, read_labels_file


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
