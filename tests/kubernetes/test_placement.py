"""Where a task's pods run when its volume is ReadWriteOnce (R9) and the task names zones (W3).

The stand-in here has two nodes in ONE zone, as a zonal cluster on a cloud has: the PV of the
block-like class (WaitForFirstConsumer, pinned to its zone) allows both nodes, but the attach/detach
controller attaches it to one node at a time. The scheduler breaks ties between equal nodes in turn,
so a backend that does not keep later steps on the volume's node sees them placed on the other one
and waiting on Multi-Attach.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tesk.backends.kubernetes.labels import Role
from tests.kubernetes.conftest import REAL_KUBECONFIG, TERMINAL, Cluster, standin

pytestmark = [pytest.mark.kubernetes,
              pytest.mark.skipif(bool(REAL_KUBECONFIG), reason="needs the stand-in's two nodes in one zone")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from devcluster.nodes import NodeConfig

    nodes = (NodeConfig(name="node-1", zone="zone-a", address="127.0.0.1"),
             NodeConfig(name="node-2", zone="zone-a", address="127.0.0.2"))
    # A detach as slow as a cloud's makes a step on the wrong node plainly late, not just reported.
    with standin(tmp_path_factory, "placement", nodes=nodes, volume_detach_delay=20.0) as deployed_cluster:
        yield deployed_cluster


def watch_steps(api: Any, cluster: Cluster, task_id: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Every scheduled step pod of the task, by name, seen while it runs (until it ends or `timeout`).

    Two executors, two filers and no Multi-Attach wait take a few seconds here; a step on the other
    node waits for the previous node's 20 s detach each time.
    """
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while api.get(task_id, view="MINIMAL")["state"] not in TERMINAL:
        assert time.monotonic() < deadline, f"task {task_id} did not end in {timeout} s; steps: {sorted(seen)}"
        items, _ = cluster.kube().list("Pod", f"tesk.io/task-id={task_id},tesk.io/role!=taskmaster")
        seen.update({p["metadata"]["name"]: p for p in items if p["spec"].get("nodeName")})
        time.sleep(0.2)
    return seen


def test_every_step_of_a_read_write_once_task_runs_on_the_volumes_node(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]]) -> None:
    host, stored = files
    api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host},
                      access_mode="ReadWriteOnce")
    task_id = api.submit({
        "inputs": [{"url": f"http://{host}/in/numbers.txt", "path": "/data/in/numbers.txt"}],
        "outputs": [{"url": f"http://{host}/out/sorted.txt", "path": "/data/out/sorted.txt"}],
        "volumes": ["/scratch"],
        "resources": {"zones": ["zone-a"]},
        "executors": [
            {"image": "alpine", "command": ["sort", "/data/in/numbers.txt"], "stdout": "/scratch/sorted.txt"},
            {"image": "alpine", "command": ["cp", "/scratch/sorted.txt", "/data/out/sorted.txt"]},
        ],
    })
    seen = watch_steps(api, cluster, task_id)  # the step pods go with their Jobs when the task ends
    task = api.get(task_id)
    assert task["state"] == "COMPLETE", json.dumps(task["logs"], indent=1)
    assert stored["/out/sorted.txt"] == b"1\n2\n3\n"
    pods = sorted(seen.values(), key=lambda p: p["metadata"]["creationTimestamp"])
    roles = [p["metadata"]["labels"]["tesk.io/role"] for p in pods]
    assert roles == [Role.INPUTS, Role.EXECUTOR, Role.EXECUTOR, Role.OUTPUTS]
    assert len({p["spec"]["nodeName"] for p in pods}) == 1, [(r, p["spec"]["nodeName"]) for r, p in zip(roles, pods)]
    events, _ = cluster.kube().list("Event", "")
    assert not [e["message"] for e in events if e["involvedObject"]["name"] in seen
                and e["reason"] == "FailedAttachVolume"]
    for pod in pods:  # W3: filers keep to the task's zones as executors do
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a"]} in \
            terms["nodeSelectorTerms"][0]["matchExpressions"]
