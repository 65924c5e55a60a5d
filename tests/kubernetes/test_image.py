"""The tesk image built from deploy/Dockerfile (`.ci/setup.d/25-tesk-image.sh`) serves the API as shipped.

`tesk serve` runs from the image in podman, as the image's user, with the Kubernetes backend against
the stand-in cluster (host network: the stand-in's API server listens on 127.0.0.1), and a task submitted
to it runs to COMPLETE through the taskmaster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.kubernetes.conftest import IMAGE, REAL_KUBECONFIG, TERMINAL, Api, Cluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.containers]
PODMAN = shutil.which("podman")


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def image() -> str:
    if PODMAN is None:
        pytest.skip("podman is not installed (.ci/setup.d/10-podman.sh installs it)")
    if REAL_KUBECONFIG:
        pytest.skip("runs the image locally against the stand-in cluster")
    if podman("image", "exists", IMAGE).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing: build it with .ci/setup.d/25-tesk-image.sh")
    return IMAGE


def test_the_image_runs_as_the_numeric_user_10001(image: str) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"  # numeric, so runAsNonRoot admits it without runAsUser
    assert config["Entrypoint"] == ["tesk"]
    done = podman("run", "--rm", "--network", "none", "--entrypoint", "id", image)
    assert done.stdout.split()[:2] == ["uid=10001(tesk)", "gid=10001(tesk)"], done.stderr


def test_the_image_holds_no_stand_in_cluster(image: str) -> None:
    """The stand-in (./devcluster) is a distribution of its own for tests: neither its package nor pytest,
    which its plugin needs, is in the image that clusters run."""
    probe = ("import importlib.util as u; import tesk; "
             "print([m for m in ('devcluster', 'pytest') if u.find_spec(m)], tesk.__file__)")
    done = podman("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", probe)
    found, location = done.stdout.split(" ", 1)
    assert done.returncode == 0 and found == "[]", done.stdout + done.stderr
    assert "/work/" not in location  # tesk is installed in the image, not mounted from a checkout


@pytest.fixture
def served(image: str, cluster: Cluster, tmp_path: Path) -> Iterator[httpx.Client]:
    """`tesk serve --backend kubernetes` from the image, its kubeconfig mounted read-only."""
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(cluster.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)  # the image's user is not this test's user
    port = free_port()
    name = f"tesk-serve-test-{uuid.uuid4().hex[:8]}"
    done = podman("run", "-d", "--name", name, "--network", "host",
                  "-v", f"{kubeconfig}:/etc/tesk/kubeconfig:ro",
                  "-e", "TESK_BACKEND=kubernetes", "-e", "TESK_K8S_KUBECONFIG=/etc/tesk/kubeconfig",
                  "-e", f"TESK_API_K8S_NAMESPACE={cluster.namespace}",
                  "-e", f"TESK_API_TASKMASTER_IMAGE_NAME={image.rpartition(':')[0]}",
                  "-e", f"TESK_API_TASKMASTER_IMAGE_VERSION={image.rpartition(':')[2]}",
                  "-e", f"TESK_API_TASKMASTER_FILER_IMAGE_NAME={image.rpartition(':')[0]}",
                  "-e", f"TESK_API_TASKMASTER_FILER_IMAGE_VERSION={image.rpartition(':')[2]}",
                  image, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert done.returncode == 0, done.stderr
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                pytest.fail(f"tesk serve in {image} is {state}, not answering /healthz: "
                            f"{podman('logs', name).stderr[-3000:]}")
            time.sleep(0.3)
        yield http
    finally:
        http.close()
        podman("rm", "-f", "-t", "5", name)


def test_tesk_serve_from_the_image_runs_a_task_on_the_cluster(served: httpx.Client) -> None:
    assert served.get("/healthz").status_code == 200
    info = served.get("/ga4gh/tes/v1/service-info")
    assert info.status_code == 200, info.text
    assert info.json()["type"]["artifact"] == "tes"
    created = served.post("/ga4gh/tes/v1/tasks", json={
        "executors": [{"image": "alpine", "command": ["sh", "-c", "echo from-the-image"]}]})
    assert created.status_code == 200, created.text
    task_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (task := served.get(f"/ga4gh/tes/v1/tasks/{task_id}", params={"view": "FULL"}).json())["state"] \
            not in TERMINAL:
        assert time.monotonic() < deadline, f"task {task_id} still {task['state']}"
        time.sleep(0.5)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][0]["logs"][0]["stdout"] == "from-the-image\n"


def test_taskmaster_pods_run_the_image_as_real_containers_as_uid_10001(image: str, api: Api,
                                                                      cluster: Cluster) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "4"]}]})
    api.wait(task_id, {"RUNNING"})
    pods, _ = cluster.kube().list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")
    taskmaster = pods[0]["metadata"]["name"]
    found = podman("ps", "--filter", f"label=io.kubernetes.pod.name={taskmaster}", "--format", "{{.ID}} {{.Image}}")
    container, running_image = found.stdout.split()
    assert running_image == f"localhost/{image}"
    who = podman("exec", container, "id", "-u")
    assert who.stdout.strip() == "10001", who.stderr
    assert api.wait(task_id)["state"] == "COMPLETE"
