"""The API's controller starting against 10,000 tasks' objects: sync time and peak RSS.

The stand-in cluster is filled straight through its store with what 10,000 tasks leave behind
(the taskmaster Job and its pod, the executor Job and its pod, owned as on a cluster, and the result
ConfigMap; 9,000 finished, their Jobs Complete, and 1,000 running, on a node no kubelet serves),
each object padded with the managedFields a real API server keeps. Then the
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
import asyncio, json, sys, time
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
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec, so a child would report the
    # size of the bench process (stand-in and all) it was forked from
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"synced": synced, "first_pass": first_pass, "peak_rss_mb": hwm / 1024}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
'''

MANAGED_FIELDS = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                   "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "subresource": "status",
                   "fieldsV1": {f"f:{k}": {} for k in ("conditions", "containerStatuses", "hostIP", "phase",
                                                         "podIP", "podIPs", "startTime", "qosClass")}}] * 3


def job(task_id: str, name: str, role: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    from tesk.backends.kubernetes import labels as lb

    labels = lb.task_labels(task_id, lb.Role(role))
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": owner["metadata"]["name"],
                                        "uid": owner["metadata"]["uid"], "controller": True,
                                        "blockOwnerDeletion": True}]
    return {"metadata": metadata, "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": role, "image": "busybox", "command": ["true"]}]}}}}


def job_status(finished: bool) -> dict[str, Any]:
    if not finished:
        return {"active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z"}
    done = [{"type": t, "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of "
             "succeeded pods", "lastProbeTime": "2026-01-01T00:00:02Z", "lastTransitionTime": "2026-01-01T00:00:02Z"}
            for t in ("SuccessCriteriaMet", "Complete")]
    return {"succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:02Z",
            "conditions": done}


def pod(task_id: str, role: str, owner: dict[str, Any], finished: bool) -> dict[str, Any]:
    from tesk.backends.kubernetes import labels as lb

    state = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:01Z",
                             "finishedAt": "2026-01-01T00:00:02Z"}} if finished
             else {"running": {"startedAt": "2026-01-01T00:00:01Z"}})
    name = owner["metadata"]["name"]
    return {"metadata": {"name": f"{name}-x1y2z", "labels": lb.task_labels(task_id, lb.Role(role)),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                              "uid": owner["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"nodeName": "bench-elsewhere", "restartPolicy": "Never",  # no kubelet runs it
                     "containers": [{"name": role, "image": "busybox", "command": ["sh", "-c", "true"],
                                     "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(8)]}]},
            "status": {"phase": "Succeeded" if finished else "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.1",
                       "startTime": "2026-01-01T00:00:00Z",
                       "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                      for t in ("PodReadyToStartContainers", "Initialized", "Ready",
                                                "ContainersReady", "PodScheduled")],
                       "containerStatuses": [{"name": role, "image": "busybox", "imageID": "sha256:" + "0" * 64,
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
    jobs, pods, configmaps = BY_PLURAL["jobs"], BY_PLURAL["pods"], BY_PLURAL["configmaps"]

    def made(rtype: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Create, then pad the stored object with the managedFields a real API server keeps (the stand-in
        keeps none)."""
        obj: dict[str, Any] = dev.store.create(rtype, "default", body)
        dev.store.peek(rtype.plural, "default", obj["metadata"]["name"])["metadata"]["managedFields"] = MANAGED_FIELDS
        return obj

    def put(first: int, batch: list[str]) -> None:
        for n, task_id in enumerate(batch, first):
            finished = n % 10 != 0  # as in the store: every tenth task is running
            taskmaster = made(jobs, job(task_id, task_id, "taskmaster", None))
            executor = made(jobs, job(task_id, lb.child_name(task_id, lb.Role.EXECUTOR, 0), "executor", taskmaster))
            for owner, role in ((taskmaster, "taskmaster"), (executor, "executor")):
                made(pods, pod(task_id, role, owner, finished))
                dev.store.update(jobs, "default", owner["metadata"]["name"], {"status": job_status(finished)},
                                 subresource="status")
            if finished:
                made(configmaps, {"metadata": {"name": lb.child_name(task_id, lb.Role.RESULT),
                                               "labels": lb.task_labels(task_id, lb.Role.RESULT)}, "data": result})

    for start in range(0, tasks, 500):
        dev.call(lambda first=start: put(first, ids[first:first + 500]), timeout=300)


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
        print(f"filled {args.tasks} tasks' objects ({5 * args.tasks} minus results of running tasks) "
              f"in {time.perf_counter() - started:.1f}s")
        time.sleep(3)  # the stand-in's controllers go over them once (a garbage collector would take strays)
        held = dev.call(lambda: {p: len(dev.store.scan(p, "default")) for p in ("jobs", "pods", "configmaps")})
        print("the stand-in holds " + ", ".join(f"{n} {p}" for p, n in held.items()))
        kubeconfig = dev.write_kubeconfig(tmp / "kubeconfig")
        rows = [("this checkout", child(None, kubeconfig, tmp / "tesk.db"))]
        if args.baseline:
            rows.append((f"baseline {args.baseline}", child(args.baseline, kubeconfig, tmp / "tesk.db")))
    print(f"{'code':<40} {'start (sync)':>13} {'first pass':>11} {'peak RSS':>10}   targets: start <= 30 s, RSS <= 300 MB")
    for name, row in rows:
        print(f"{name:<40} {row['synced']:>12.1f}s {row['first_pass']:>10.1f}s {row['peak_rss_mb']:>7.0f} MB")


if __name__ == "__main__":
    main()
