"""Where a task's pods run when its volume is ReadWriteOnce (R9) and the task names zones (W3).

The stand-in here has two nodes in ONE zone, as a zonal cluster on a cloud has: the PV of the
block-like class (WaitForFirstConsumer, pinned to its zone) allows both nodes, but the attach/detach
controller attaches it to one node at a time. The scheduler breaks ties between equal nodes in turn,
so a backend that does not keep later steps on the volume's node sees them placed on the other one
and waiting on Multi-Attach.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubernetes.conftest import IMAGE, REAL_KUBECONFIG, Cluster

pytestmark = [pytest.mark.kubernetes,
              pytest.mark.skipif(bool(REAL_KUBECONFIG), reason="needs the stand-in's two nodes in one zone")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import subprocess

    from devcluster import DevCluster
    from devcluster.cluster import fast_config
    from devcluster.nodes import NodeConfig

    if subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing: build it with .ci/setup.d/25-tesk-image.sh")
    tmp = tmp_path_factory.mktemp("placement")
    nodes = (NodeConfig(name="node-1", zone="zone-a", address="127.0.0.1"),
             NodeConfig(name="node-2", zone="zone-a", address="127.0.0.2"))
    # A detach as slow as a cloud's makes a step on the wrong node plainly late, not just reported.
    with DevCluster(fast_config(state_dir=tmp / "devcluster", network="host", nodes=nodes,
                                volume_detach_delay=20.0)) as dev:
        observer = dev.write_kubeconfig(tmp / "tests.kubeconfig", user="tests")
        yield Cluster(dev.write_kubeconfig(tmp / "kubeconfig"), "default", dev, observer)


def step_pods(cluster: Cluster, task_id: str) -> list[dict[str, Any]]:
    items, _ = cluster.kube().list("Pod", f"tesk.io/task-id={task_id},tesk.io/role!=taskmaster")
    return sorted(items, key=lambda p: p["metadata"]["creationTimestamp"])


def test_every_step_of_a_read_write_once_task_runs_on_the_volumes_node(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]]) -> None:
    host, stored = files
    api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host},
                      access_mode="ReadWriteOnce")
    task_id = api.submit({
        "inputs": [{"url": f"http://{host}/in/numbers.txt", "path": "/data/in/numbers.txt"}],
        "outputs": [{"url": f"http://{host}/out/sorted.txt", "path": "/data/out/sorted.txt"}],
        "resources": {"zones": ["zone-a"]},
        "executors": [
            {"image": "alpine", "command": ["sort", "/data/in/numbers.txt"], "stdout": "/data/sorted.txt"},
            {"image": "alpine", "command": ["cp", "/data/sorted.txt", "/data/out/sorted.txt"]},
        ],
    })
    # Two executors, two filers and no Multi-Attach wait fit well within this; a step on the other node
    # would wait for the 20 s detach each time.
    task = api.wait(task_id, timeout=60)
    assert task["state"] == "COMPLETE", task["logs"]
    assert stored["/out/sorted.txt"] == b"1\n2\n3\n"
    pods = step_pods(cluster, task_id)
    roles = [p["metadata"]["labels"]["tesk.io/role"] for p in pods]
    assert roles == ["inputs", "executor", "executor", "outputs"]
    assert len({p["spec"]["nodeName"] for p in pods}) == 1, [(r, p["spec"]["nodeName"]) for r, p in zip(roles, pods)]
    events, _ = cluster.kube().list("Event", "")
    names = {p["metadata"]["name"] for p in pods}
    assert not [e["message"] for e in events
                if e["involvedObject"]["name"] in names and e["reason"] == "FailedAttachVolume"]
    for pod in pods:  # W3: filers keep to the task's zones as executors do
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a"]} in \
            terms["nodeSelectorTerms"][0]["matchExpressions"]
