"""End-to-end fixtures: the real API, controller and taskmaster against the stand-in cluster.

With `TESK_TEST_KUBECONFIG` set, the same tests run against that cluster instead (namespace from
`TESK_TEST_NAMESPACE`, default `default`; the taskmaster image `TESK_TEST_IMAGE` must be pullable
there, and the service account `tesk-taskmaster` must hold the taskmaster Role from deploy/;
`scripts/test-real-cluster` prepares that namespace and runs these tests, docs/real-clusters.md).
Tests that need the stand-in's fault injection or its PVC folders are skipped on a real cluster.

On the stand-in, taskmaster and filer pods run the tesk image built from deploy/Dockerfile
(`.ci/setup.d/25-tesk-image.sh`) as real podman containers, as the image's uid 10001 with the
service-account files and the PVC mounted. Every pod gets the host network: that is how they reach the
stand-in's API server, which listens on 127.0.0.1. The stand-in enforces RBAC: `deployed` applies
deploy/kustomize/overlays/usage-sampling's namespaces, service accounts, Roles, ClusterRoles and bindings
(the base's, plus the optional `get` on `nodes/proxy` for the taskmasters) through the API, the API under
test authenticates as the tesk-api service account, tasks go to deploy/'s tasks namespace (tes-tasks) and
the taskmasters run as tesk-taskmaster there, so a verb a Role lacks is refused here as on a cluster.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml

import tesk
from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.backends.kubernetes.backend import KubernetesBackend
from tesk.backends.kubernetes.kube import Kube, load_api_client
from tesk.config import KubernetesSettings, TeskConfig
from tesk.store.sql import SqlTaskStore
from tests.conftest import ServerThread

REAL_KUBECONFIG = os.environ.get("TESK_TEST_KUBECONFIG")
DEPLOYED = Path(__file__).resolve().parents[2] / "deploy" / "kustomize" / "overlays" / "usage-sampling"
"""What the end-to-end tests deploy: the base and the optional grant that lets taskmasters sample usage."""
KUBECTL = shutil.which("kubectl")
IMAGE = os.environ.get("TESK_TEST_IMAGE", f"tesk:{tesk.__version__}")
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


def failure(task: dict[str, Any]) -> tuple[str | None, str | None]:
    """The task's failure reason and executor (`tesk.failures`) from its last log's metadata."""
    metadata = task["logs"][-1].get("metadata") or {}
    return metadata.get("tesk.failure_reason"), metadata.get("tesk.failure_executor")


@dataclass
class Cluster:
    kubeconfig: Path  # what the API uses
    namespace: str
    devcluster: Any | None  # devcluster.DevCluster when running on the stand-in
    observer: Path | None = None  # the tests' own kubeconfig (another user, so their requests are told apart)
    api_user: str = ""  # who the API authenticates as on the stand-in (to aim faults at the API's requests)

    def kube(self) -> Kube:
        return Kube(load_api_client(self.observer or self.kubeconfig), self.namespace)

    def require_standin(self) -> Any:
        if self.devcluster is None:
            pytest.skip("needs the stand-in cluster's fault injection")
        return self.devcluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REAL_KUBECONFIG:
        yield Cluster(Path(REAL_KUBECONFIG), os.environ.get("TESK_TEST_NAMESPACE", "default"), None)
        return
    with standin(tmp_path_factory, "k8s") as deployed_cluster:
        yield deployed_cluster


@contextlib.contextmanager
def standin(tmp_path_factory: pytest.TempPathFactory, name: str, **config: Any) -> Iterator[Cluster]:
    """A stand-in cluster on the fixtures' fast config (with `config` on top), deployed as `deployed` says;
    the taskmaster image must be built."""
    from devcluster import DevCluster
    from devcluster.cluster import fast_config

    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing: build it with .ci/setup.d/25-tesk-image.sh")
    tmp = tmp_path_factory.mktemp(name)
    with DevCluster(fast_config(state_dir=tmp / "devcluster", network="host", **config)) as dev:
        yield deployed(dev, tmp)


ACCESS_KINDS = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def deployed(dev: Any, tmp: Path) -> Cluster:
    """The stand-in as `DEPLOYED` leaves a cluster, as far as access goes: its namespaces (with
    their Pod Security labels), service accounts, Roles and bindings, rendered by kustomize and applied
    through the API by kubectl. The API under test holds the tesk-api account's token (a TokenRequest, as
    `kubectl create token` gets it) and works in the tasks namespace deploy/ tells it; the tests' own
    observer is another user, in system:masters, so its requests are told apart."""
    rendered = rendered_deployment()
    access = [o for o in rendered if o["kind"] in ACCESS_KINDS]
    admin = dev.write_kubeconfig(tmp / "admin.kubeconfig", https=True)  # kubectl sends no token over HTTP
    _kubectl("--kubeconfig", str(admin), "apply", "-f", "-", stdin=yaml.safe_dump_all(access))
    api_namespace = next(o["metadata"]["namespace"] for o in access
                         if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "tesk-api")
    token = _kubectl("--kubeconfig", str(admin), "create", "token", "tesk-api", "-n", api_namespace).strip()
    env = {e["name"]: e.get("value") for o in rendered if o["kind"] == "Deployment"
           for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
    tasks_namespace = str(env["TESK_API_K8S_NAMESPACE"])
    kubeconfig = dev.write_kubeconfig(tmp / "kubeconfig", user="tesk-api", namespace=tasks_namespace, token=token)
    observer = dev.write_kubeconfig(tmp / "tests.kubeconfig", user="tests", groups=("system:masters",))
    return Cluster(kubeconfig, tasks_namespace, dev, observer, f"system:serviceaccount:{api_namespace}:tesk-api")


@functools.cache
def rendered_deployment() -> list[dict[str, Any]]:
    """`DEPLOYED` as `kubectl kustomize` renders it (once a session: it takes about a second)."""
    assert KUBECTL is not None, "kubectl is needed to render deploy/ (.ci/setup.d/30-kubectl.sh installs it)"
    return [o for o in yaml.safe_load_all(_kubectl("kustomize", str(DEPLOYED))) if o]


def _kubectl(*args: str, stdin: str | None = None) -> str:
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


class Api:
    """A running `tesk serve --backend kubernetes` (in a thread) with its own store."""

    def __init__(self, cluster: Cluster, db: Path, **k8s: Any) -> None:
        values: dict[str, Any] = {"kubeconfig": cluster.kubeconfig, "TESK_API_K8S_NAMESPACE": cluster.namespace,
                                  "TESK_API_TASKMASTER_IMAGE_NAME": IMAGE.rpartition(":")[0],
                                  "TESK_API_TASKMASTER_IMAGE_VERSION": IMAGE.rpartition(":")[2],
                                  "TESK_API_TASKMASTER_FILER_IMAGE_NAME": IMAGE.rpartition(":")[0],
                                  "TESK_API_TASKMASTER_FILER_IMAGE_VERSION": IMAGE.rpartition(":")[2],
                                  # The combined-log path, as every managed cluster serves pod logs (the
                                  # stand-in's PodLogsQuerySplitStreams gate is off, as by default in 1.32+).
                                  "split_log_streams": False,
                                  "unschedulable_grace_seconds": 3, "image_pull_grace_seconds": 3,
                                  "failed_create_grace_seconds": 3,
                                  "cancel_grace_seconds": 20, "lease_seconds": 3}
        values.update(k8s)
        self.k8s = KubernetesSettings(**values)
        config = TeskConfig.read(server={"data_dir": db.parent}).replace(kubernetes=self.k8s)
        self.store = SqlTaskStore(f"sqlite+aiosqlite:///{db}")
        self.backend = KubernetesBackend.from_config(config, self.store)
        self.server = ServerThread(create_app(compose(config, store=self.store, backend=self.backend)))
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url + "/ga4gh/tes/v1", timeout=30)
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.http.close()
            self.server.stop()

    def submit(self, task: dict[str, Any]) -> str:
        response = self.http.post("/tasks", json=task)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def get(self, task_id: str, view: str = "FULL") -> dict[str, Any]:
        response = self.http.get(f"/tasks/{task_id}", params={"view": view})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, task_id: str, states: set[str] = TERMINAL, timeout: float = 90) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        while True:
            task = self.get(task_id)
            if task["state"] in states:
                return task
            if time.monotonic() > deadline:
                pytest.fail(f"task {task_id} still {task['state']} after {timeout}s: {task.get('logs')}")
            time.sleep(0.3)


@pytest.fixture
def api_factory(cluster: Cluster, tmp_path: Path) -> Iterator[Any]:
    started: list[Api] = []

    def make(**k8s: Any) -> Api:
        api = Api(cluster, tmp_path / "tesk.db", **k8s)
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def api(api_factory: Any) -> Api:
    return api_factory()


def task_objects(cluster: Cluster, task_id: str) -> dict[str, list[str]]:
    """Names of everything labelled with the task id that still exists, by kind."""
    kube = cluster.kube()
    found: dict[str, list[str]] = {}
    for kind in ("Job", "Pod", "ConfigMap", "PersistentVolumeClaim"):
        items, _ = kube.list(kind, f"tesk.io/task-id={task_id}")
        live = [i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp")]
        if live:
            found[kind] = live
    return found


class Files(BaseHTTPRequestHandler):
    """GET serves, PUT stores: the inputs and outputs of a task, on 127.0.0.1."""

    store: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.store.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def do_PUT(self) -> None:
        self.store[self.path] = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def files() -> Iterator[tuple[str, dict[str, bytes]]]:
    Files.store = {"/in/numbers.txt": b"3\n1\n2\n"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", Files.store
    server.shutdown()


def staged_task(host: str, executors: list[dict[str, Any]]) -> dict[str, Any]:
    """A task with a URL input and inline content, a volume, and a file and a folder output (the `files`
    server's /in/numbers.txt in, /out/sorted.txt and /out/all/ out) around the given executors."""
    return {
        "inputs": [{"url": f"http://{host}/in/numbers.txt", "path": "/data/in/numbers.txt"},
                   {"content": "inline\n", "path": "/data/in/inline.txt"}],
        "outputs": [{"url": f"http://{host}/out/sorted.txt", "path": "/data/out/sorted.txt"},
                    {"url": f"http://{host}/out/all/", "path": "/data/out", "type": "DIRECTORY"}],
        "volumes": ["/scratch"],
        "executors": executors,
    }
