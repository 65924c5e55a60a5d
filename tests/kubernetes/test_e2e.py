"""The Kubernetes backend end to end: real API, controller and taskmaster on the stand-in cluster."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.kubernetes.conftest import (
    TERMINAL,
    Api,
    Cluster,
    failure,
    rendered_deployment,
    staged_task,
    task_objects,
)

pytestmark = pytest.mark.kubernetes


def test_multi_executor_task_with_inputs_and_outputs_completes(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]]) -> None:
    cluster.require_standin()  # the file server is on this machine's loopback
    host, stored = files
    api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host})
    task_id = api.submit(staged_task(host, [
        {"image": "alpine", "command": ["sort", "/data/in/numbers.txt"], "stdout": "/scratch/sorted.txt"},
        {"image": "alpine", "command": ["cp", "/scratch/sorted.txt", "/data/out/sorted.txt"]},
        {"image": "alpine", "command": ["cat", "/data/in/inline.txt"]},
    ]))
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "COMPLETE", task["logs"]
    assert stored["/out/sorted.txt"] == b"1\n2\n3\n"
    assert stored["/out/all/sorted.txt"] == b"1\n2\n3\n"
    log = task["logs"][0]
    assert [e["exit_code"] for e in log["logs"]] == [0, 0, 0] and log["logs"][2]["stdout"] == "inline\n"
    assert {o["url"] for o in log["outputs"]} == {f"http://{host}/out/sorted.txt", f"http://{host}/out/all/sorted.txt"}
    assert all(o["size_bytes"] == "6" for o in log["outputs"])
    deadline = time.monotonic() + 30  # the PVC is released once the task ends
    while "PersistentVolumeClaim" in task_objects(cluster, task_id):
        assert time.monotonic() < deadline, "the task's PVC outlived it"
        time.sleep(0.3)


def test_outcomes_failures_missing_image_unschedulable(api: Api, cluster: Cluster) -> None:
    """Several tasks at once (the cluster runs them side by side), one outcome each."""
    failing = api.submit({"executors": [
        {"image": "alpine", "command": ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"], "ignore_error": True},
        {"image": "alpine", "command": ["echo", "second"]},
        {"image": "alpine", "command": ["sh", "-c", "exit 4"]},
        {"image": "alpine", "command": ["echo", "never"]},
    ]})
    missing = api.submit({"executors": [{"image": "no-such-image:1", "command": ["true"]}]})
    too_big = api.submit({"executors": [{"image": "alpine", "command": ["true"]}], "resources": {"cpu_cores": 4096}})

    task = api.wait(failing)
    assert task["state"] == "EXECUTOR_ERROR"
    logs = task["logs"][0]["logs"]
    assert [e["exit_code"] for e in logs] == [3, 0, 4]  # the fourth never ran: no log for it
    # Combined log streams (no PodLogsQuerySplitStreams gate): stdout holds both, stderr is empty.
    assert sorted(logs[0]["stdout"].splitlines()) == ["to-err", "to-out"] and logs[0]["stderr"] == ""
    assert logs[1]["stdout"] == "second\n"
    assert "ignore_error is set" in " ".join(task["logs"][0]["system_logs"])
    assert all(e["start_time"] <= e["end_time"] for e in logs)
    assert failure(task) == ("ExecutorFailed", "2")

    task = api.wait(missing)
    assert task["state"] == "SYSTEM_ERROR"
    assert "no-such-image:1" in " ".join(task["logs"][0]["system_logs"])
    assert failure(task) == ("ImagePullFailed", "0")

    task = api.wait(too_big)
    assert task["state"] == "SYSTEM_ERROR"
    assert "could not be scheduled" in " ".join(task["logs"][0]["system_logs"])
    assert failure(task) == ("Unschedulable", "0")


def _unschedulable_executor(api: Api, cluster: Cluster) -> tuple[str, dict[str, Any]]:
    """A task whose executor asks for more CPU than any node has, once its pod is marked Unschedulable."""
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["true"]}], "resources": {"cpu_cores": 4096}})
    kube = cluster.kube()
    deadline = time.monotonic() + 60
    while True:
        pods = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")[0]
        if pods and any(c.get("reason") == "Unschedulable" for c in pods[0]["status"].get("conditions") or []):
            return task_id, pods[0]
        assert time.monotonic() < deadline, "the executor pod was never marked Unschedulable"
        time.sleep(0.2)


def _autoscaler_says(cluster: Cluster, pod: dict[str, Any], reason: str, message: str) -> None:
    """What cluster-autoscaler records on a pending pod it has looked at (it is no part of the API server)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta = pod["metadata"]
    cluster.kube().create({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{reason.lower()}"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": cluster.namespace,
                           "uid": meta["uid"]},
        "reason": reason, "message": message, "type": "Normal" if reason == "TriggeredScaleUp" else "Warning",
        "source": {"component": "cluster-autoscaler"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1})


def test_unschedulable_executor_fails_fast_when_the_autoscaler_will_not_add_a_node(
        api_factory: Any, cluster: Cluster) -> None:
    cluster.require_standin()
    api = api_factory(unschedulable_grace_seconds=120)
    task_id, pod = _unschedulable_executor(api, cluster)
    started = time.monotonic()
    _autoscaler_says(cluster, pod, "NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size reached")
    task = api.wait(task_id, timeout=60)
    assert time.monotonic() - started < 30  # far less than the 120 s grace
    assert task["state"] == "SYSTEM_ERROR"
    lines = " ".join(task["logs"][0]["system_logs"])
    assert "the cluster autoscaler will not add a node" in lines and "max node group size reached" in lines


def test_unschedulable_executor_waits_while_the_autoscaler_adds_a_node(api_factory: Any, cluster: Cluster) -> None:
    cluster.require_standin()
    api = api_factory(unschedulable_grace_seconds=3, scale_up_grace_seconds=15)
    task_id, pod = _unschedulable_executor(api, cluster)
    _autoscaler_says(cluster, pod, "TriggeredScaleUp", "pod triggered scale-up: [{pool-a 1->2 (max: 5)}]")
    time.sleep(8)  # past the unschedulable grace: a node is on its way, so the task waits
    assert api.get(task_id)["state"] not in TERMINAL
    task = api.wait(task_id, timeout=60)  # but not past the scale-up grace
    assert task["state"] == "SYSTEM_ERROR"
    assert "although the cluster autoscaler started a scale-up" in " ".join(task["logs"][0]["system_logs"])


def test_eviction_before_and_after_the_container_starts_is_preempted(api: Api, cluster: Cluster) -> None:
    """An evicted executor ends its task PREEMPTED and is never re-run, whether the pod was still
    Pending (it vanishes without ever showing phase Failed) or its container was running."""
    devcluster = cluster.require_standin()
    kube = cluster.kube()
    two_steps = {"executors": [{"image": "alpine", "command": ["sleep", "60"]},
                               {"image": "alpine", "command": ["echo", "never"]}]}
    early, late = api.submit(two_steps), api.submit(two_steps)

    def first_pod(task_id: str, phases: set[str]) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")
            if pods and (pods[0].get("status") or {}).get("phase", "Pending") in phases:
                return str(pods[0]["metadata"]["name"])
            time.sleep(0.05)
        pytest.fail(f"task {task_id}: no executor pod in {phases} after 60 s")

    devcluster.evict(cluster.namespace, first_pod(early, {"Pending"}), grace_period=0)
    devcluster.evict(cluster.namespace, first_pod(late, {"Running"}), grace_period=0)
    for task_id in (early, late):
        task = api.wait(task_id, timeout=30)
        assert task["state"] == "PREEMPTED", task["logs"][0]["system_logs"]
        assert "stopped by Kubernetes" in " ".join(task["logs"][0]["system_logs"])
        assert len(kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")[0]) <= 1  # never re-run
        assert len(task["logs"][0]["logs"]) == 0  # the evicted executor has no exit code to report
        assert failure(task) == ("Evicted", "0"), "EvictionByEvictionAPI is an eviction, not a preemption"


def test_cancel_while_pending_and_while_running_wins_and_leaves_no_pod(api: Api, cluster: Cluster) -> None:
    running = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "60"]}]})
    pending = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "60"]}]})
    assert api.http.post(f"/tasks/{pending}:cancel").status_code == 200
    api.wait(running, {"RUNNING"})
    if cluster.devcluster is not None:  # the API's label patch fails: the controller labels it later,
        cluster.devcluster.inject(verb="patch", resource="jobs", status=403, times=1, client=cluster.api_user)
        # with a Job its cache holds one change behind (a conflict: it re-reads the Job and retries),
        cluster.devcluster.inject(verb="patch", resource="jobs", status=409, times=1, client=cluster.api_user)
        # and its first label patch of the taskmaster pod meets a conflict: it re-reads the pod and retries
        cluster.devcluster.inject(verb="patch", resource="pods", status=409, times=1, client=cluster.api_user)
    assert api.http.post(f"/tasks/{running}:cancel").status_code == 200
    for task_id in (pending, running):
        task = api.wait(task_id, timeout=30)
        assert task["state"] == "CANCELED"
        assert any("cancelled by" in line for line in task["logs"][0]["system_logs"])
        assert failure(task)[0] == "Canceled"
        _no_pods_left(cluster, task_id)
    # cancelling a finished task changes nothing and still answers {}
    assert api.http.post(f"/tasks/{running}:cancel").json() == {}
    assert api.get(running)["state"] == "CANCELED"


def _no_pods_left(cluster: Cluster, task_id: str, role: str | None = "taskmaster") -> None:
    """No pod of the task (except, by default, the taskmaster that reported) is pending or running."""
    deadline = time.monotonic() + 30
    selector = f"tesk.io/task-id={task_id}" + (f",tesk.io/role!={role}" if role else "")
    while True:
        kube = cluster.kube()
        items, _ = kube.list("Pod", selector)
        running = [(p["metadata"]["name"], p["metadata"].get("deletionTimestamp"), p["metadata"].get("ownerReferences"))
                   for p in items if p.get("status", {}).get("phase") in ("Pending", "Running")]
        if not running:
            return
        assert time.monotonic() < deadline, f"pods still running after cancel (name, deleted at, owners): {running}"
        time.sleep(0.3)


def test_two_api_replicas_one_controller_and_a_restart_mid_task(api_factory: Any) -> None:
    first, second = api_factory(), api_factory()  # one store, two replicas: one Lease holder acts
    assert [first.backend.controller.leading, second.backend.controller.leading].count(True) <= 1
    task_id = second.submit({"executors": [{"image": "alpine", "command": ["sleep", "3"]},
                                           {"image": "alpine", "command": ["echo", "done"]}]})
    first.wait(task_id, {"RUNNING"})
    leader, follower = (first, second) if first.backend.controller.leading else (second, first)
    assert not follower.backend.controller.leading
    leader.stop()  # the acting controller goes away mid-task; the other one takes over
    task = follower.wait(task_id)
    assert task["state"] == "COMPLETE"
    assert task["logs"][0]["logs"][1]["stdout"].startswith("done")
    assert follower.backend.controller.leading


def test_taskmaster_pod_killed_resumes_without_rerunning_executors(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["echo", "first"]},
                                        {"image": "alpine", "command": ["sleep", "4"]},
                                        {"image": "alpine", "command": ["echo", "third"]}]})
    kube = cluster.kube()
    deadline = time.monotonic() + 60
    while not kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=1")[0]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    taskmasters, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")
    killed = taskmasters[0]["metadata"]["name"]
    kube.delete("Pod", killed, "Background", 0)
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "COMPLETE", task["logs"]
    assert [e["stdout"].strip() for e in task["logs"][0]["logs"]] == ["first", "", "third"]
    first_pods, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")
    assert len(first_pods) == 1  # executor 0 ran once
    survivors = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")[0]
    assert [p["metadata"]["name"] for p in survivors] != [killed]  # a new taskmaster pod finished the task


def test_injected_faults_are_survived_and_the_ttl_removes_everything(api_factory: Any, cluster: Cluster) -> None:
    dev = cluster.require_standin()
    api = api_factory(job_ttl_seconds=1)
    dev.inject(verb="create", resource="jobs", status=500, times=1, client=cluster.api_user)
    dev.inject(verb="create", resource="configmaps", status=429, retry_after=1, times=1)
    dev.inject(verb="patch", resource="configmaps", status=409, times=1)
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "2"]},
                                        {"image": "alpine", "command": ["echo", "ok"]}]})
    api.wait(task_id, {"RUNNING", "COMPLETE"})
    dev.compact()  # every watch must now relist (410 Gone)
    dev.drop_watches()
    assert api.wait(task_id)["state"] == "COMPLETE"
    deadline = time.monotonic() + 30
    while (left := task_objects(cluster, task_id)):
        assert time.monotonic() < deadline, f"still there after the TTL: {left}"
        time.sleep(0.3)
    assert api.get(task_id)["state"] == "COMPLETE"  # the store keeps the task


def test_create_refused_by_the_cluster_is_an_error_and_leaves_nothing(api: Api, cluster: Cluster) -> None:
    dev = cluster.require_standin()
    dev.inject(verb="create", resource="configmaps", status=403, times=1, client=cluster.api_user,
               message="configmaps is forbidden")
    response = api.http.post("/tasks", json={"executors": [{"image": "alpine", "command": ["true"]}]})
    assert response.status_code == 500
    assert "forbidden" in response.json()["message"]
    listed = api.http.get("/tasks", params={"view": "BASIC"}).json()["tasks"]
    assert listed[0]["state"] == "SYSTEM_ERROR"
    # tesk's own object refused (the backend answers 500): the deployment's fault, not the task's
    assert failure(listed[0]) == ("InternalError", None)
    deadline = time.monotonic() + 20
    while task_objects(cluster, listed[0]["id"]).get("Job"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # a task Kubernetes could not run as asked is refused before anything is created
    response = api.http.post("/tasks", json={"inputs": [{"content": "x", "path": "/usr/tool"}],
                                             "executors": [{"image": "alpine", "command": ["/usr/tool"]}]})
    assert response.status_code == 400 and "would hide the image's own /usr" in response.json()["message"]


def test_taskmaster_that_cannot_start_ends_the_task_with_the_reason(api_factory: Any, cluster: Cluster) -> None:
    cluster.require_standin()  # a real cluster might find any tag we make up
    api = api_factory(TESK_API_TASKMASTER_IMAGE_VERSION="no-such-tag")
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["true"]}]})
    task = api.wait(task_id, timeout=60)
    assert task["state"] == "SYSTEM_ERROR"
    assert "the taskmaster could not start" in " ".join(task["logs"][0]["system_logs"])
    assert "no-such-tag" in " ".join(task["logs"][0]["system_logs"])
    assert failure(task) == ("ImagePullFailed", None)
    _no_pods_left(cluster, task_id, role=None)


def test_unschedulable_taskmaster_ends_the_task_after_its_grace(api_factory: Any, cluster: Cluster) -> None:
    """The API itself reads the Events of a taskmaster pod that no node fits (the taskmaster is not there
    to judge), and ends the task with the scheduler's reason once the unschedulable grace has passed."""
    cluster.require_standin()  # a real cluster might have a node with that much cpu, or an autoscaler
    api = api_factory(taskmaster_cpu="4096")
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["true"]}]})
    task = api.wait(task_id, timeout=60)
    assert task["state"] == "SYSTEM_ERROR"
    said = " ".join(task["logs"][0]["system_logs"])
    assert "could not be scheduled" in said and "Insufficient cpu" in said, said
    assert failure(task) == ("Unschedulable", None)
    _no_pods_left(cluster, task_id, role=None)


def test_cancel_between_executors_leaves_no_pod(api: Api, cluster: Cluster) -> None:
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["echo", "first"]},
                                        {"image": "alpine", "command": ["sleep", "60"]}]})
    kube = cluster.kube()
    deadline = time.monotonic() + 60
    while True:  # cancel the moment executor 0 has finished, before or as executor 1 starts
        pods, _ = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")
        if pods and pods[0].get("status", {}).get("phase") == "Succeeded":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.http.post(f"/tasks/{task_id}:cancel").status_code == 200
    task = api.wait(task_id, timeout=30)
    assert task["state"] == "CANCELED"
    assert [e["stdout"] for e in task["logs"][0]["logs"]][:1] in ([], ["first\n"])
    _no_pods_left(cluster, task_id)


def test_split_log_streams_are_found_out_from_the_first_taskmaster(api_factory: Any) -> None:
    api = api_factory(split_log_streams=None)
    both = {"executors": [{"image": "alpine", "command": ["sh", "-c", "echo out; echo err >&2"]}]}
    first = api.wait(api.submit(both))["logs"][0]["logs"][0]
    assert "out" in first["stdout"] and "err" in first["stdout"] + first["stderr"]
    deadline = time.monotonic() + 30
    while api.backend.settings.split_log_streams is None:
        assert time.monotonic() < deadline, "the API never found out whether log streams split"
        time.sleep(0.2)
    second = api.wait(api.submit(both))["logs"][0]["logs"][0]
    if api.backend.settings.split_log_streams:
        assert (second["stdout"], second["stderr"]) == ("out\n", "err\n")
    else:
        assert "err" in second["stdout"] and second["stderr"] == ""


def test_taskmaster_that_crashed_while_publishing_is_restarted_and_finishes(api: Api, cluster: Cluster) -> None:
    """The first taskmaster publishes progress (create), then its final write (a patch) keeps failing and
    it exits; the Job's next pod reads the result ConfigMap, adopts the finished executors and reports."""
    dev = cluster.require_standin()
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sh", "-c", "sleep 6; echo first"]},
                                        {"image": "alpine", "command": ["echo", "second"]}]})
    fault = dev.inject(verb="patch", resource="configmaps", name=f"{task_id}-result", status=500, times=5,
                       client=f"system:serviceaccount:{cluster.namespace}:tesk-taskmaster")
    task = api.wait(task_id, timeout=120)
    assert fault.hits == 5
    assert task["state"] == "COMPLETE", task["logs"]
    assert [e["stdout"] for e in task["logs"][0]["logs"]] == ["first\n", "second\n"]
    kube = cluster.kube()
    assert len(kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")[0]) == 1  # not run again
    taskmasters = kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")[0]
    assert len(taskmasters) >= 2 and "Failed" in [p["status"]["phase"] for p in taskmasters]  # it did crash


def test_an_executor_job_deleted_by_someone_ends_the_task_with_the_reason(api: Api, cluster: Cluster) -> None:
    """Its pod orphaned and left running: the taskmaster sees the Job lose every pod, reads it, finds it
    gone, and ends the task SYSTEM_ERROR saying so."""
    task_id = api.submit({"executors": [{"image": "alpine", "command": ["sleep", "30"]}]})
    kube = cluster.kube()
    deadline = time.monotonic() + 60
    while not [p for p in kube.list("Pod", f"tesk.io/task-id={task_id},tesk.io/executor=0")[0]
               if p["status"].get("phase") == "Running"]:
        assert time.monotonic() < deadline, "the executor never ran"
        time.sleep(0.2)
    kube.delete("Job", f"{task_id}-ex-0", "Orphan")
    task = api.wait(task_id, timeout=60)
    assert task["state"] == "SYSTEM_ERROR", task["logs"]
    assert any("was deleted by someone else" in line for line in task["logs"][0]["system_logs"]), task["logs"]


MIB = 2**20
PYTHON = "python:3.11-slim-bookworm"
HOLD_200_MIB = "import time\nb = b'x' * (200 << 20)\ntime.sleep(6)"
OWN_CPU = ("import pathlib\nv1 = pathlib.Path('/sys/fs/cgroup/cpuacct/cpuacct.usage')\n"
           "print(int(v1.read_text()) if v1.exists() else 1000 * int(next(line.split()[1] for line in "
           "pathlib.Path('/sys/fs/cgroup/cpu.stat').read_text().splitlines() if line.startswith('usage_usec'))))")
SPIN_10_S = f"import time\nend = time.time() + 10\nwhile time.time() < end: pass\n{OWN_CPU}"


def test_an_executor_s_peak_memory_and_cpu_time_are_sampled_from_its_kubelet(api_factory: Any,
                                                                             cluster: Cluster) -> None:
    """200 MiB held for 6 s, then 10 s of busy CPU checked against the container's own cgroup counter read at
    its end: the kubelet's figures (refreshed every second on the stand-in), sampled every second. The CPU
    time is the container's, so on a machine whose other work leaves it less than a core it is below the
    wall time by that much: the truth it is held to is the counter, and the wall time only bounds it."""
    cluster.require_standin()  # the grant is deployed here; scripts/test-real-cluster does not apply it
    api = api_factory(usage_sample_seconds=1)
    task_id = api.submit({"resources": {"cpu_cores": 1}, "executors": [
        {"image": PYTHON, "command": ["python3", "-c", HOLD_200_MIB]},
        {"image": PYTHON, "command": ["python3", "-c", SPIN_10_S]}]})
    task = api.wait(task_id, timeout=120)
    assert task["state"] == "COMPLETE", task["logs"]
    log = task["logs"][-1]
    metadata = log["metadata"]
    peak = int(metadata["tesk.executor.0.peak_memory_bytes"])
    assert 0.9 * 200 * MIB <= peak <= 1.1 * 200 * MIB, peak
    wall, cpu = float(metadata["tesk.executor.1.wall_seconds"]), float(metadata["tesk.executor.1.cpu_seconds"])
    true_cpu = int(log["logs"][1]["stdout"].strip()) / 1e9
    # short of the true total by what it used after the last sample it was in: at most one kubelet refresh
    # plus one sampling interval (and a slip of the loaded machine), at most one core; a little over what the
    # process printed, which it read before printing and exiting
    assert true_cpu - 3.0 <= cpu <= true_cpu + 0.1, (cpu, true_cpu, wall)
    # busy all along, as far as the machine's other work let it (wall time has whole seconds)
    assert 1.0 <= true_cpu <= wall + 1, (true_cpu, wall)
    basic = api.get(task_id, view="BASIC")["logs"][-1]["metadata"]
    assert basic["tesk.executor.0.peak_memory_bytes"] == str(peak)


def test_without_the_node_proxy_grant_the_keys_are_absent_and_the_task_completes(api_factory: Any,
                                                                                 cluster: Cluster) -> None:
    dev = cluster.require_standin()
    binding = next(o for o in rendered_deployment() if o["kind"] == "ClusterRoleBinding")
    rbac = f"{dev.url}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    admin = httpx.Client(headers={"Authorization": f"Bearer {dev.admin_token}"}, timeout=30)
    assert admin.delete(f"{rbac}/{binding['metadata']['name']}").status_code == 200
    try:
        api = api_factory(usage_sample_seconds=1)
        task_id = api.submit({"executors": [{"image": PYTHON, "command": ["python3", "-c", HOLD_200_MIB]}]})
        task = api.wait(task_id, timeout=120)
        refused = [r for r in dev.faults.requests() if r.resource == "nodes/proxy" and r.code == 403
                   and r.client.endswith(":tesk-taskmaster")]
        taskmaster_log = cluster.kube().read_log(task_id_pod(cluster, task_id), "taskmaster", 256 * 1024)
    finally:
        assert admin.post(rbac, json=binding).status_code == 201
        admin.close()
    assert task["state"] == "COMPLETE", task["logs"]
    metadata = task["logs"][-1]["metadata"]
    assert float(metadata["tesk.executor.0.wall_seconds"]) >= 5
    assert not {"tesk.executor.0.peak_memory_bytes", "tesk.executor.0.cpu_seconds"} & set(metadata), metadata
    assert len(refused) == 1  # asked once, then never again for the task
    assert taskmaster_log.count("may not read the kubelet's stats (get on nodes/proxy") == 1, taskmaster_log


def task_id_pod(cluster: Cluster, task_id: str) -> str:
    """The name of the task's (first) taskmaster pod."""
    pods = cluster.kube().list("Pod", f"tesk.io/task-id={task_id},tesk.io/role=taskmaster")[0]
    return str(min(pods, key=lambda p: p["metadata"]["creationTimestamp"])["metadata"]["name"])


def test_the_deploy_roles_grant_exactly_the_verbs_used_above(cluster: Cluster, request: pytest.FixtureRequest) -> None:
    """Least verbs, both ways, against the rendered deploy/ Roles and ClusterRoles the stand-in enforced (the
    base's and the optional node-proxy grant of components/usage-sampling, as deployed here): every (resource,
    verb) the API and the taskmasters requested in this module is granted to their service account, and every
    one granted was requested (checked only when the whole module ran: a test left out makes fewer requests).

    No `delete` is added for objects created with ownerReferences: OwnerReferencesPermissionEnforcement asks
    for it only when an update changes them (a create may name owners freely since Kubernetes 1.11), and the
    stand-in enforces that plugin, so a missing grant would have been refused above."""
    dev = cluster.require_standin()
    rendered = rendered_deployment()
    granted = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): {
        (r, v) for rule in o["rules"] for r in rule["resources"] for v in rule["verbs"]}
        for o in rendered if o["kind"] in ("Role", "ClusterRole")}
    roles_of: dict[str, set[tuple[str, str]]] = {}  # service account -> the (namespace, name) of its roles
    for b in (o for o in rendered if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        where = b["metadata"].get("namespace", "")
        role = (where if b["roleRef"]["kind"] == "Role" else "", b["roleRef"]["name"])
        for s in b["subjects"]:
            if s["kind"] == "ServiceAccount":
                roles_of.setdefault(f"system:serviceaccount:{s.get('namespace') or where}:{s['name']}", set()).add(role)
    needed: dict[str, set[tuple[str, str]]] = {account: set() for account in roles_of}
    for record in dev.faults.requests():
        if record.client in needed:  # not the tests' observer, not the stand-in's own controllers
            needed[record.client].add((record.resource, record.verb))
    taskmaster = f"system:serviceaccount:{cluster.namespace}:tesk-taskmaster"
    assert needed[taskmaster] and needed[cluster.api_user], "no API or taskmaster request was recorded"
    for account, pairs in needed.items():
        allowed = set().union(*(granted[role] for role in roles_of[account]))
        assert pairs <= allowed, f"{account} lacks {sorted(pairs - allowed)}"
    module_tests = [item for item in request.session.items if item.module is request.module]
    defined = [name for name in dir(request.module) if name.startswith("test_")]
    if len(module_tests) < len(defined):
        pytest.skip("only part of this module ran: the unused-verb half needs every test's requests")
    for account, roles in roles_of.items():
        for role in roles:
            assert granted[role] <= needed[account], \
                f"{role} grants verbs no request needed: {sorted(granted[role] - needed[account])}"
