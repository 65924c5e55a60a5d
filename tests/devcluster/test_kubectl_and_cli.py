"""kubectl and the `devcluster` command against the stand-in cluster."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
import typer
import yaml
from typer.testing import CliRunner

from devcluster import DevCluster
from devcluster.cli import devcluster
from devcluster.pytest_plugin import wait_for

pytestmark = pytest.mark.devcluster
DEVCLUSTER = str(Path(sys.executable).with_name("devcluster"))
TESK = str(Path(sys.executable).with_name("tesk"))


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], check=False, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (.ci/setup.d/30-kubectl.sh)")
@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (.ci/setup.d/10-podman.sh)")
def test_kubectl_create_job_then_get_jobs_and_pods(devcluster: DevCluster, tmp_path: Path) -> None:
    # kubectl sends no bearer token over plain HTTP: as anonymous, RBAC would refuse it everything
    config = devcluster.write_kubeconfig(tmp_path / "kubectl.kubeconfig", https=True)
    created = kubectl(config, "create", "job", "hello", "--image=busybox", "--", "sh", "-c", "echo from kubectl")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "job.batch/hello created"
    core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(config)))
    batch = kubernetes.client.BatchV1Api(core.api_client)
    # The client's stubs make every response field Optional; the server fills what is read here.
    wait_for(lambda: cast(Any, batch.read_namespaced_job("hello", "default")).status.succeeded,
             what="the Job to succeed")
    listing = kubectl(config, "get", "jobs,pods")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.split("\n")
    job_line = next(line for line in lines if line.startswith("job.batch/hello"))
    assert job_line.split()[1:3] == ["Complete", "1/1"]
    pod_line = next(line for line in lines if line.startswith("pod/hello-"))
    assert pod_line.split()[1:3] == ["0/1", "Completed"]
    logs = kubectl(config, "logs", "job/hello")
    assert logs.stdout == "from kubectl\n", logs.stderr
    missing = kubectl(config, "get", "job", "nope")
    assert missing.returncode != 0 and 'jobs.batch "nope" not found' in missing.stderr

    manifest = config.parent / "job.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "applied"},
                                        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                                            {"name": "main", "image": "busybox", "command": ["true"]}]}}}}))
    # kubectl >= 1.27 learns from the OpenAPI v3 document that the server validates fields; older ones
    # want OpenAPI v2 (protobuf), which the stand-in does not serve, so they are told not to validate.
    version = json.loads(kubectl(config, "version", "--client", "-o", "json").stdout)["clientVersion"]
    validate = [] if int(version["minor"].rstrip("+")) >= 27 else ["--validate=false"]
    applied = kubectl(config, "apply", *validate, "-f", str(manifest))
    assert applied.returncode == 0 and applied.stdout.strip() == "job.batch/applied created", applied.stderr
    waited = kubectl(config, "wait", "--for=condition=complete", "job/applied", "--timeout=30s")
    assert waited.returncode == 0 and "condition met" in waited.stdout, waited.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_stand_in_is_not_part_of_the_tesk_command() -> None:
    listed = subprocess.run([TESK, "--help"], check=True, capture_output=True, text=True, timeout=60)
    assert "serve" in listed.stdout and "devcluster" not in listed.stdout
    gone = subprocess.run([TESK, "devcluster", "--kubeconfig", "/dev/null"], check=False, capture_output=True,
                          text=True, timeout=60)
    assert gone.returncode == 2 and "No such command 'devcluster'" in gone.stderr


def test_devcluster_command_serves_until_interrupted(tmp_path: Path) -> None:
    port = _free_port()
    kubeconfig = tmp_path / "dev.kubeconfig"
    process = subprocess.Popen([DEVCLUSTER, "--kubeconfig", str(kubeconfig),
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()
        assert line.startswith(f"devcluster ready: API http://127.0.0.1:{port} "), line + process.stderr.read()
        core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(kubeconfig)))
        namespaces: list[Any] = core.list_namespace().items
        assert "default" in {n.metadata.name for n in namespaces}
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        command = typer.Typer()
        command.command()(devcluster)
        clash = CliRunner().invoke(command, ["--kubeconfig", str(tmp_path / "other"), "--port", str(port)])
        assert clash.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in clash.output
        bad = CliRunner().invoke(command, ["--kubeconfig", str(tmp_path / "other"), "--node-memory", "lots"])
        assert bad.exit_code == 2 and "invalid resource quantity 'lots'" in bad.output
    finally:
        process.terminate()
        started = time.monotonic()
        process.wait(timeout=30)
    assert time.monotonic() - started < 30
