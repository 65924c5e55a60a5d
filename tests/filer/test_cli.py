"""`tesk filer` as a filer Job runs it: a separate process, JSON in, JSON result out, exit status."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import HttpPeer


def _tesk(
    args: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    import os

    return subprocess.run(
        [sys.executable, "-c", "from tesk.cli import main; main()", "filer", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
        env=os.environ | (env or {}),
    )


def _last_json(stdout: bytes) -> dict[str, Any]:
    return json.loads(stdout.decode().strip().splitlines()[-1])


def test_inputs_then_outputs_standalone(http_peer: HttpPeer, tmp_path: Path) -> None:
    http_peer.files["genome.fa"] = b">chr1\nACGT\n"
    base = tmp_path / "area"
    base.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    job = {
        "direction": "inputs",
        "base": str(base),
        "inputs": [
            {"path": "/data/genome.fa", "url": f"{http_peer.url}/files/genome.fa"},
            {"path": "/data/params.json", "content": '{"k": 1}'},
        ],
    }
    done = _tesk(["-"], stdin=json.dumps(job).encode())
    assert done.returncode == 0, done.stderr.decode()
    assert (base / "data" / "genome.fa").read_bytes() == b">chr1\nACGT\n"
    result = _last_json(done.stdout)
    assert result["outputs"] == [] and result["error"] is None
    lines = sorted(result["system_logs"])  # inputs are staged in parallel: any order
    assert lines[0].startswith(f"input /data/genome.fa: {http_peer.url}/files/genome.fa, 11 B in ")
    assert lines[1] == "input /data/params.json: wrote 8 B of inline content"
    job = {
        "direction": "outputs",
        "base": str(base),
        "outputs": [{"path": "/data/*.fa", "path_prefix": "/data", "url": f"file://{shared}/run/"}],
    }
    job_file = tmp_path / "job.json.gz"
    job_file.write_bytes(gzip.compress(json.dumps(job).encode()))  # the seed gzips its filer JSON
    done = _tesk([str(job_file)], env={"TESK_FILE_ROOTS": str(shared)})
    assert done.returncode == 0, done.stderr.decode()
    result = _last_json(done.stdout)
    assert result["outputs"] == [
        {"url": f"file://{shared}/run/genome.fa", "path": "/data/genome.fa", "size_bytes": "11"}
    ]
    assert result["error"] is None
    assert (shared / "run" / "genome.fa").read_bytes() == b">chr1\nACGT\n"


def test_folders_the_filer_makes_are_group_writable_whatever_the_umask(tmp_path: Path) -> None:
    """Executors may run as another uid that shares only the pod's group (fsGroup) with the filer."""
    base = tmp_path / "area"
    base.mkdir()
    job = {"direction": "inputs", "base": str(base),
           "inputs": [{"path": "/data/in/deep/params.json", "content": "{}"}]}
    done = subprocess.run(
        ["sh", "-c", 'umask 077 && exec "$@"', "sh", sys.executable, "-c", "from tesk.cli import main; main()",
         "filer", "-"], input=json.dumps(job).encode(), capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    for folder in (base / "data", base / "data" / "in", base / "data" / "in" / "deep"):
        assert folder.stat().st_mode & 0o777 == 0o775, folder
    assert (base / "data" / "in" / "deep" / "params.json").stat().st_mode & 0o044 == 0o044  # readable


def test_failure_exits_1_with_the_reason(http_peer: HttpPeer, tmp_path: Path) -> None:
    job = {
        "direction": "inputs",
        "base": str(tmp_path),
        "inputs": [{"path": "/d/x", "url": f"{http_peer.url}/files/none"}],
    }
    done = _tesk(["-"], stdin=json.dumps(job).encode())
    assert done.returncode == 1
    result = _last_json(done.stdout)
    assert result["error"].endswith("404 Not Found: no such file here; check the URL")
    assert result["error"] in done.stderr.decode()


def test_unusable_job_exits_2(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from tesk.filer.cli import filer

    app = typer.Typer()
    app.command()(filer)
    app.command("other")(lambda: None)  # two commands, so `filer` is addressed by name as in tesk
    runner = CliRunner()

    def run(args: list[str], stdin: str = "") -> Any:
        return runner.invoke(app, ["filer", *args], input=stdin)

    done = run(["-"], '{"direction": "sideways", "base": "/tmp"}')
    assert done.exit_code == 2
    assert "cannot read the job document" in done.output and "direction" in done.output
    bad_path = {
        "direction": "inputs",
        "base": str(tmp_path),
        "inputs": [{"path": "../etc/passwd", "content": "x"}],
    }
    done = run(["-"], json.dumps(bad_path))
    assert done.exit_code == 2 and "must be an absolute path" in done.output
    done = run([str(tmp_path / "missing.json")])
    assert done.exit_code == 2 and "No such file" in done.output
    done = run(["-"], json.dumps({"direction": "inputs", "base": str(tmp_path / "nope"), "inputs": []}))
    assert done.exit_code == 2 and "does not exist or is not a folder" in done.output


def test_partial_output_failure_reports_what_did_upload(tmp_path: Path) -> None:
    base, shared = tmp_path / "area", tmp_path / "shared"
    (base / "out").mkdir(parents=True)
    shared.mkdir()
    (base / "out" / "ok.txt").write_text("ok")
    job = {
        "direction": "outputs",
        "base": str(base),
        "outputs": [
            {"path": "/out/ok.txt", "url": f"file://{shared}/ok.txt"},
            {"path": "/out/missing.txt", "url": f"file://{shared}/missing.txt"},
        ],
    }
    done = _tesk(["-"], stdin=json.dumps(job).encode(), env={"TESK_FILE_ROOTS": str(shared)})
    assert done.returncode == 1
    result = _last_json(done.stdout)
    assert result["outputs"] == [{"url": f"file://{shared}/ok.txt", "path": "/out/ok.txt", "size_bytes": "2"}]
    assert result["error"].startswith(
        "1 of 2 outputs failed: output /out/missing.txt: the executors did not create it"
    )


def test_the_report_goes_to_the_termination_log_whole_or_as_its_size(tmp_path: Path) -> None:
    """A Kubernetes filer's report reaches the taskmaster in the pod status (tesk.filer.report): whole
    when the kubelet keeps it (4096 bytes), else its size, for the taskmaster to read back from the log."""
    base = tmp_path / "area"
    (base / "data").mkdir(parents=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    for count, whole in ((2, True), (100, False)):
        for i in range(count):
            (base / "data" / f"part-{i:04d}.txt").write_text("x")
        job = {"direction": "outputs", "base": str(base),
               "outputs": [{"path": "/data", "url": f"file://{shared}/{count}/", "type": "DIRECTORY"}]}
        message = tmp_path / f"termination-log-{count}"
        done = _tesk(["-", "--termination-log", str(message)], stdin=json.dumps(job).encode(),
                     env={"TESK_FILE_ROOTS": str(shared)})
        assert done.returncode == 0, done.stderr.decode()
        report = done.stdout.decode().strip().splitlines()[-1]
        assert len(json.loads(report)["outputs"]) == count
        if whole:
            assert message.read_text() == report
        else:
            assert len(report.encode()) > 4096
            assert json.loads(message.read_text()) == {"report_bytes": len(report.encode())}
