"""What the stand-in cluster costs on top of its floors, measured in the same run.

1. API request latency: the official client reading one ConfigMap from the stand-in, as the admin
   (system:masters) and as a service account that a RoleBinding lets read it (RBAC decides every
   request), next to the same client reading a constant ConfigMap body from a bare Starlette route on
   the same uvicorn (the floor: HTTP + client deserialisation).
2. Job latency: create a `busybox true` Job and wait for its Complete condition (watch), next to
   `podman run --rm --network none busybox true` (the floor: the container runtime itself).

Run: .venv/bin/python bench/devcluster.py   (needs podman and the local images of .ci/setup.d)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import kubernetes
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from bench._common import free_port
from devcluster import DevCluster
from devcluster.cluster import fast_config

REQUESTS = 300
JOBS = 8
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
    "name": "bench", "namespace": "default", "uid": "00000000-0000-0000-0000-000000000000",
    "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"}, "data": {"k": "v"}}


def per_request_ms(core: kubernetes.client.CoreV1Api) -> float:
    core.read_namespaced_config_map("bench", "default")
    started = time.perf_counter()
    for _ in range(REQUESTS):
        core.read_namespaced_config_map("bench", "default")
    return (time.perf_counter() - started) / REQUESTS * 1000


def service_account_core(cluster: DevCluster, admin: kubernetes.client.ApiClient, tmp: Path
                         ) -> kubernetes.client.CoreV1Api:
    """A client holding the token of a service account allowed to get ConfigMaps by a Role and RoleBinding."""
    core, rbac = kubernetes.client.CoreV1Api(admin), kubernetes.client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account("default", cast(Any, {"metadata": {"name": "reader"}}))
    rbac.create_namespaced_role("default", cast(Any, {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}))
    rbac.create_namespaced_role_binding("default", cast(Any, {
        "metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]}))
    issued: Any = core.create_namespaced_service_account_token("reader", "default", cast(Any, {"spec": {}}))
    path = cluster.write_kubeconfig(tmp / "reader.kubeconfig", user="reader", token=issued.status.token)
    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(str(path)))


def bare_floor_ms() -> float:
    body = json.dumps(CONFIGMAP).encode()

    async def constant(_: Request) -> Response:
        return Response(body, media_type="application/json")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/{path:path}", constant)]), port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{port}")
    try:
        return per_request_ms(kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration)))
    finally:
        server.should_exit = True
        thread.join()


def job_seconds(batch: kubernetes.client.BatchV1Api, index: int) -> float:
    name = f"bench-{index}"
    started = time.perf_counter()
    # The client accepts a plain dict where its stubs say V1Job.
    batch.create_namespaced_job("default", cast(Any, {"metadata": {"name": name}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}}))
    for event in kubernetes.watch.Watch().stream(batch.list_namespaced_job, "default",
                                                 field_selector=f"metadata.name={name}", timeout_seconds=60):
        conditions = event["object"].status.conditions or []
        if any(c.type == "Complete" and c.status == "True" for c in conditions):
            break
    return time.perf_counter() - started


def podman_seconds() -> float:
    started = time.perf_counter()
    subprocess.run(["podman", "run", "--rm", "--network", "none", "busybox", "true"], check=True)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, DevCluster(fast_config(state_dir=Path(tmp) / "state")) as cluster:
        api = kubernetes.config.new_client_from_config(str(cluster.write_kubeconfig(Path(tmp) / "kubeconfig")))
        core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
        core.create_namespaced_config_map("default", cast(Any, {"metadata": {"name": "bench"}, "data": {"k": "v"}}))
        standin = per_request_ms(core)
        authorised = per_request_ms(service_account_core(cluster, api, Path(tmp)))
        floor = bare_floor_ms()
        print(f"GET configmap: stand-in {standin:.2f} ms/request as the admin, {authorised:.2f} ms/request "
              f"as a service account under RBAC, bare Starlette floor {floor:.2f} ms/request "
              f"(x{standin / floor:.2f}, x{authorised / floor:.2f}; {REQUESTS} sequential requests, official client)")
        jobs = [job_seconds(batch, i) for i in range(JOBS)]
        runs = [podman_seconds() for _ in range(JOBS)]
        job_median, run_median = statistics.median(jobs), statistics.median(runs)
        print(f"Job create -> Complete: stand-in median {job_median:.2f} s, `podman run --rm` floor median "
              f"{run_median:.2f} s (x{job_median / run_median:.2f}, {JOBS} sequential busybox `true`)")


if __name__ == "__main__":
    main()
