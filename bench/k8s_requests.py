"""Kubernetes requests the kubernetes backend makes, counted by the stand-in cluster, next to TESK's.

1. Per task lifecycle (API + taskmaster, submit to the end of clean-up) for E = 1 and 3 executors
   without files (target <= 4 + 3E, a watch stream counted once), and for E = 1 with an input, an
   output and so a PVC and two filer Jobs.
2. GET of 1,000 tasks (MINIMAL and FULL) and LIST of all of them (every page, FULL): target 0.

TESK's figures are from the research notes (k8s-design.md §1.11): GET = 4 + E requests (the taskmaster
Job, a list of executor Jobs, a pod list per executor, ...), LIST = 4 requests per page, three of them
unpaginated lists of every executor Job, every unlabelled Job and every Job pod of the namespace;
its taskmaster polls each running Job every 5 s, so its lifecycle count grows with the run time.

Run: .venv/bin/python bench/k8s_requests.py   (needs podman and the tesk image, like the e2e tests)
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from tesk.backends.kubernetes.kube import Kube, load_api_client
from devcluster import DevCluster
from devcluster.cluster import fast_config
from tesk.models import State, Task
from tesk.store import new_task_id
from tesk.store.sql import SqlTaskStore
from tests.kubernetes.conftest import TERMINAL, Api, Files, deployed

API = "system:serviceaccount:tes:tesk-api"  # deploy/'s accounts, as the e2e fixture applies them
TASKMASTER = "system:serviceaccount:tes-tasks:tesk-taskmaster"


def counted(dev: DevCluster, since: float) -> Counter[tuple[str, str, str]]:
    """Requests since `since` by the API and taskmasters, without leader-election renewals."""
    rows: Counter[tuple[str, str, str]] = Counter()
    for r in dev.faults.requests():
        if r.at >= since and r.resource != "leases" and r.client in (API, TASKMASTER):
            rows[("API" if r.client == API else "taskmaster", r.verb, r.resource)] += 1
    return rows


def lifecycle(dev: DevCluster, api: Api, kube: Kube, task: dict[str, object]) -> Counter[tuple[str, str, str]]:
    since = time.monotonic()  # the stand-in stamps requests with this clock
    task_id = api.submit(task)
    done = api.wait(task_id, TERMINAL, timeout=180)
    assert done["state"] == "COMPLETE", done
    # the taskmaster releases the task's objects after its final report: wait for its pod to end
    # (watching as another user, so the bench's own requests are not counted)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")
        if pods and all(p.get("status", {}).get("phase") in ("Succeeded", "Failed") for p in pods):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    return counted(dev, since)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tesk-bench-k8s-"))
    files = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{files.server_address[1]}"
    Files.store = {"/in.txt": b"hello\n"}
    # As the end-to-end fixture runs it: deploy/'s RBAC enforced, taskmaster and filer pods are containers of
    # the real image on the host network.
    with DevCluster(fast_config(state_dir=tmp / "devcluster", network="host")) as dev:
        cluster = deployed(dev, tmp)
        assert cluster.observer is not None
        observer = Kube(load_api_client(cluster.observer), cluster.namespace)
        api = Api(cluster, tmp / "tesk.db", TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host})
        try:
            rows = []
            for executors in (1, 3):
                task: dict[str, object] = {
                    "executors": [{"image": "alpine", "command": ["echo", str(i)]} for i in range(executors)]}
                counts = lifecycle(dev, api, observer, task)
                rows.append((f"lifecycle, E={executors}, no files", sum(counts.values()), f"<= {4 + 3 * executors}",
                             counts))
            task = {"inputs": [{"url": f"http://{host}/in.txt", "path": "/data/in.txt"}],
                    "outputs": [{"url": f"http://{host}/out.txt", "path": "/data/out/out.txt"}],
                    "executors": [{"image": "alpine", "command": ["cp", "/data/in.txt", "/data/out/out.txt"]}]}
            counts = lifecycle(dev, api, observer, task)
            rows.append(("lifecycle, E=1, input+output (PVC, 2 filers)", sum(counts.values()), "(4+3E) + files",
                         counts))

            store = SqlTaskStore(f"sqlite+aiosqlite:///{tmp / 'tesk.db'}")
            ids = asyncio.run(fill(store, 1000))
            since = time.monotonic()  # the stand-in stamps requests with this clock
            started = time.perf_counter()
            for task_id in ids:
                api.get(task_id, "MINIMAL")
                api.get(task_id, "FULL")
            get_seconds = time.perf_counter() - started
            get_counts = counted(dev, since)
            since = time.monotonic()  # the stand-in stamps requests with this clock
            pages, token = 0, None
            while True:
                params = {"view": "FULL", "page_size": "256", **({"page_token": token} if token else {})}
                body = api.http.get("/tasks", params=params).json()
                pages += 1
                token = body.get("next_page_token")
                if not token:
                    break
            list_counts = counted(dev, since)
        finally:
            api.stop()

    print("Kubernetes requests, counted by the stand-in cluster (API + taskmaster; leases excluded)")
    print(f"{'operation':<48} {'tesk':>6}  {'target / TESK baseline'}")
    for name, total, target, counts in rows:
        print(f"{name:<48} {total:>6}  target {target}")
        for (who, verb, resource), n in sorted(counts.items()):
            print(f"{'':<8}{who:<11} {verb:<17} {resource:<24} {n:>3}")
    print(f"{'GET x1000 tasks x2 views (MINIMAL, FULL)':<48} {sum(get_counts.values()):>6}  target 0; "
          f"TESK: (4+E) per GET = {2 * 1000 * (4 + 1)} for E=1 ({get_seconds:.1f}s here)")
    print(f"{'LIST all 1000 tasks, FULL, ' + str(pages) + ' pages of 256':<48} {sum(list_counts.values()):>6}  "
          f"target 0; TESK: 4 per page = {4 * pages}, {3 * pages} of them unpaginated whole-namespace lists "
          "(+1 log read per task for FULL)")


async def fill(store: SqlTaskStore, n: int) -> list[str]:
    """Tasks written straight into the API's store (running 1,000 real pods would only add noise)."""
    await store.open()
    ids = []
    for i in range(n):
        task = Task.model_validate({"name": f"bench-{i}", "executors": [{"image": "alpine", "command": ["true"]}]})
        task.id, task.state, task.creation_time = new_task_id(), State.RUNNING, datetime.now(UTC)
        await store.create(task, "bench", None)
        ids.append(task.id)
    await store.close()
    return ids


if __name__ == "__main__":
    main()
