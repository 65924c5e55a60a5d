"""A trivial task through the Kubernetes backend, next to a bare Job, on the stand-in cluster (same run).

1. Bare: create a `busybox true` Job and watch until it is Complete (the floor: what any Job costs).
2. tesk: POST a one-executor task without files to the API (the app `tesk serve --backend
   kubernetes` runs, on a loopback port), poll GET until COMPLETE.

Where the time goes is read from the stand-in's request log (each request stamped on arrival):
the submit's Job create, the taskmaster's first request (its process is up), its executor Job
create, the executor log read (the executor is done), the result write, and the GET that first
answered COMPLETE; and from a watch of the task's pods: when the taskmaster's and the executor's
pods were first seen Running and Succeeded.

Target (issue 12): tesk <= 2.5x the bare Job.

Run: .venv/bin/python bench/k8s_task_latency.py [--runs 5]   (needs podman and the tesk image of .ci/setup.d/25-tesk-image.sh)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import kubernetes

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from bench.devcluster import job_seconds
from devcluster import DevCluster
from devcluster.cluster import fast_config
from tesk.backends.kubernetes.labels import ROLE, TASK_ID
from tests.kubernetes.conftest import Api, deployed

API = "system:serviceaccount:tes:tesk-api"  # deploy/'s accounts, as the e2e fixture applies them
TASKMASTER = "system:serviceaccount:tes-tasks:tesk-taskmaster"
TASK = {"executors": [{"image": "busybox", "command": ["true"]}]}


class PodPhases:
    """When each task pod's phase was first seen (a watch of the tasks namespace, stamped on arrival):
    what the request log cannot show, such as a container running."""

    def __init__(self, core: kubernetes.client.CoreV1Api, namespace: str) -> None:
        self.seen: dict[tuple[str, str, str], float] = {}  # (task id, role, phase) -> time.monotonic()
        self.watch = kubernetes.watch.Watch()
        self.thread = threading.Thread(target=self._run, args=(core, namespace), daemon=True)
        self.thread.start()

    def _run(self, core: kubernetes.client.CoreV1Api, namespace: str) -> None:
        try:
            for event in self.watch.stream(core.list_namespaced_pod, namespace, timeout_seconds=3600):
                pod = event["object"]
                labels = pod.metadata.labels or {}
                key = (labels.get(TASK_ID, ""), labels.get(ROLE, ""), pod.status.phase or "Pending")
                self.seen.setdefault(key, time.monotonic())
        except Exception:  # noqa: BLE001 (the stream ends when the cluster stops)
            return

    def first(self, task_id: str, role: str, phase: str) -> float | None:
        return self.seen.get((task_id, role, phase))


def task_run(dev: DevCluster, api: Api, phases: PodPhases) -> tuple[float, list[tuple[str, float]]]:
    since = time.monotonic()  # the stand-in stamps requests with this clock
    started = time.perf_counter()
    response = api.http.post("/tasks", json=TASK)
    assert response.status_code == 200, response.text
    task_id = response.json()["id"]
    while True:
        state = api.http.get(f"/tasks/{task_id}", params={"view": "MINIMAL"}).json()["state"]
        if state == "COMPLETE":
            break
        assert state not in ("EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"), state
        time.sleep(0.02)
    total = time.perf_counter() - started
    marks: list[tuple[str, float]] = []

    def first(label: str, **match: str) -> None:
        for r in dev.faults.requests():
            if r.at >= since and all(getattr(r, k) == v for k, v in match.items()):
                marks.append((label, r.at - since))
                return

    first("API creates the taskmaster Job", client=API, verb="create", resource="jobs")
    first("taskmaster's first request (process up)", client=TASKMASTER)
    first("taskmaster creates the executor Job", client=TASKMASTER, verb="create", resource="jobs")
    first("taskmaster reads the executor log (done)", client=TASKMASTER, resource="pods/log")
    first("taskmaster writes the result", client=TASKMASTER, resource="configmaps", verb="create")
    for role, phase in (("taskmaster", "Running"), ("executor", "Running"), ("executor", "Succeeded"),
                        ("taskmaster", "Succeeded")):
        at = phases.first(task_id, role, phase)
        if at is not None:
            marks.append((f"{role} pod {phase} (seen by a watch)", at - since))
    marks.append(("GET answers COMPLETE", total))
    return total, sorted(marks, key=lambda m: m[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tesk-bench-latency-"))
    # As the end-to-end fixture runs it: deploy/'s RBAC enforced, taskmaster pods are containers of the real
    # image, on the host network.
    with DevCluster(fast_config(state_dir=tmp / "devcluster", network="host")) as dev:
        cluster = deployed(dev, tmp)
        admin = dev.write_kubeconfig(tmp / "bench.kubeconfig")
        client = kubernetes.config.new_client_from_config(str(admin))
        batch = kubernetes.client.BatchV1Api(client)
        phases = PodPhases(kubernetes.client.CoreV1Api(client), cluster.namespace)
        api = Api(cluster, tmp / "tesk.db", split_log_streams=False)
        try:
            task_run(dev, api, phases)  # warm-up: first image use, first connections
            job_seconds(batch, 999)
            bare = [job_seconds(batch, i) for i in range(args.runs)]
            runs = [task_run(dev, api, phases) for _ in range(args.runs)]
        finally:
            phases.watch.stop()
            api.stop()
    bare_median = statistics.median(bare)
    tesk_median = statistics.median(t for t, _ in runs)
    print(f"bare busybox Job create -> Complete: median {bare_median:.2f} s ({args.runs} runs)")
    print(f"tesk task submit -> COMPLETE (GET):   median {tesk_median:.2f} s ({args.runs} runs)   "
          f"x{tesk_median / bare_median:.2f} of the bare Job (target <= 2.5x)")
    median_run = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    print("where the time goes (the median run, seconds since the POST):")
    for label, at in cast(list[tuple[str, Any]], median_run[1]):
        print(f"  {at:6.2f}  {label}")


if __name__ == "__main__":
    main()
