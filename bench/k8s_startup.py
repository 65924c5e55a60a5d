"""The API's controller starting against 10,000 tasks' objects: sync time and peak RSS.

The stand-in cluster is filled straight through its store with what 10,000 tasks leave behind
(the taskmaster Job, its pod, one executor pod and the result ConfigMap each; 9,000 finished and
1,000 running), each object padded with the managedFields a real API server returns. Then the
API's Kubernetes backend starts in a fresh process (so its RSS is its own) against a store holding
the same 10,000 tasks, and reports how long `start()` took (every informer listed and synced),
how long the first reconcile of the 1,000 running tasks took, and its peak RSS. The same child runs
the code of a baseline commit (`--baseline DIR`, a checkout's `src`) in the same run.

Targets (issue 12): start within 30 s; peak RSS <= 300 MB.

Run: .venv/bin/python bench/k8s_startup.py [--tasks 10000] [--baseline /path/to/old/checkout/src]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

CHILD = r'''
import asyncio, json, resource, sys, time
from pathlib import Path
from tesk.backends.kubernetes.backend import KubernetesBackend
from tesk.config import KubernetesSettings
from tesk.store.sql import SqlTaskStore

async def main(kubeconfig, db):
    store = SqlTaskStore(f"sqlite+aiosqlite:///{db}")
    await store.open()
    k8s = KubernetesSettings(kubeconfig=Path(kubeconfig), TESK_API_K8S_NAMESPACE="default",
                             split_log_streams=False)
    backend = KubernetesBackend(store, k8s, elect=False)
    started = time.perf_counter()
    await backend.start()
    synced = time.perf_counter() - started
    # the first pass reconciles every unfinished task of the store: wait until it has gone through them
    ctl = backend.controller
    began = time.perf_counter()
    while time.perf_counter() - began < 120:
        await asyncio.sleep(0.2)
        if not ctl._dirty and not ctl._wake.is_set():
            break
    first_pass = time.perf_counter() - began
    await backend.stop()
    await store.close()
    print(json.dumps({"synced": synced, "first_pass": first_pass,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
'''

MANAGED_FIELDS = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                   "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "subresource": "status",
                   "fieldsV1": {f"f:{k}": {} for k in ("conditions", "containerStatuses", "hostIP", "phase",
                                                         "podIP", "podIPs", "startTime", "qosClass")}}] * 3


def pod(task_id: str, role: str, owner: str, finished: bool) -> dict[str, Any]:
    from tesk.backends.kubernetes import labels as lb

    container = "taskmaster" if role == "taskmaster" else "executor"
    state = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:01Z",
                             "finishedAt": "2026-01-01T00:00:02Z"}} if finished
             else {"running": {"startedAt": "2026-01-01T00:00:01Z"}})
    return {"metadata": {"name": f"{owner}-{role}-x1y2z", "labels": lb.task_labels(task_id, lb.Role(role)),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": owner,
                                              "uid": "00000000-0000-0000-0000-000000000001", "controller": True}],
                         "managedFields": MANAGED_FIELDS},
            "spec": {"nodeName": "bench-elsewhere", "restartPolicy": "Never",  # no kubelet runs it
                     "containers": [{"name": container, "image": "busybox", "command": ["sh", "-c", "true"],
                                     "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(8)]}]},
            "status": {"phase": "Succeeded" if finished else "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.1",
                       "startTime": "2026-01-01T00:00:00Z",
                       "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                      for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                                "ContainersReady", "PodScheduled")],
                       "containerStatuses": [{"name": container, "image": "busybox", "imageID": "sha256:" + "0" * 64,
                                              "containerID": "containerd://" + "1" * 64, "ready": not finished,
                                              "restartCount": 0, "started": not finished, "state": state}]}}


def fill(dev: Any, tasks: int, db: Path) -> None:
    from tesk.backends.kubernetes import labels as lb
    from tesk.backends.kubernetes.state import encode_result
    from devcluster.resources import BY_PLURAL
    from tesk.models import ExecutorLog, State, Task, TaskLog
    from tesk.store import new_task_id
    from tesk.store.sql import SqlTaskStore

    store = SqlTaskStore(f"sqlite+aiosqlite:///{db}")
    ids = [new_task_id() for _ in range(tasks)]

    async def write() -> None:
        await store.open()
        for i, task_id in enumerate(ids):
            task = Task.model_validate({"executors": [{"image": "alpine", "command": ["true"]}]})
            task.id, task.creation_time = task_id, datetime.now(UTC)
            task.state = State.RUNNING if i % 10 == 0 else State.COMPLETE
            await store.create(task, "bench", None)
        await store.close()

    asyncio.run(write())
    log = TaskLog(logs=[ExecutorLog(exit_code=0, stdout="out\n" * 200, stderr="")], system_logs=["done"])
    result = encode_result(State.COMPLETE, log)

    def put(first: int, batch: list[str]) -> None:
        for n, task_id in enumerate(batch, first):
            finished = n % 10 != 0  # as in the store: every tenth task is running
            dev.store.create(BY_PLURAL["jobs"], "default", {
                "metadata": {"name": task_id, "labels": lb.task_labels(task_id, lb.Role.TASKMASTER),
                             "managedFields": MANAGED_FIELDS},
                "spec": {"suspend": True, "template": {"metadata": {"labels": lb.task_labels(task_id, lb.Role.TASKMASTER)},
                         "spec": {"restartPolicy": "Never", "containers": [
                             {"name": "taskmaster", "image": "busybox", "command": ["true"]}]}}}})
            dev.store.create(BY_PLURAL["pods"], "default", pod(task_id, "taskmaster", task_id, finished))
            dev.store.create(BY_PLURAL["pods"], "default",
                             pod(task_id, "executor", lb.child_name(task_id, lb.Role.EXECUTOR, 0), finished))
            if finished:
                dev.store.create(BY_PLURAL["configmaps"], "default", {
                    "metadata": {"name": lb.child_name(task_id, lb.Role.RESULT),
                                 "labels": lb.task_labels(task_id, lb.Role.RESULT)}, "data": result})

    for start in range(0, tasks, 500):
        dev.call(lambda first=start: put(first, ids[first:first + 500]), timeout=120)


def child(src: Path | None, kubeconfig: Path, db: Path) -> dict[str, float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run([sys.executable, "-c", CHILD, str(kubeconfig), str(db)], env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(f"the API process failed ({src or 'this checkout'}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--baseline", type=Path, help="a checkout's src/ to run as the baseline")
    args = parser.parse_args()
    from devcluster import DevCluster
    from devcluster.cluster import fast_config

    tmp = Path(tempfile.mkdtemp(prefix="tesk-bench-startup-"))
    with DevCluster(fast_config(state_dir=tmp / "devcluster")) as dev:
        started = time.perf_counter()
        fill(dev, args.tasks, tmp / "tesk.db")
        print(f"filled {args.tasks} tasks' objects ({4 * args.tasks} minus results of running tasks) "
              f"in {time.perf_counter() - started:.1f}s")
        kubeconfig = dev.write_kubeconfig(tmp / "kubeconfig")
        rows = [("this checkout", child(None, kubeconfig, tmp / "tesk.db"))]
        if args.baseline:
            rows.append((f"baseline {args.baseline}", child(args.baseline, kubeconfig, tmp / "tesk.db")))
    print(f"{'code':<40} {'start (sync)':>13} {'first pass':>11} {'peak RSS':>10}   targets: start <= 30 s, RSS <= 300 MB")
    for name, row in rows:
        print(f"{name:<40} {row['synced']:>12.1f}s {row['first_pass']:>10.1f}s {row['peak_rss_mb']:>7.0f} MB")


if __name__ == "__main__":
    main()
