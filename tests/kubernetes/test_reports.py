"""The outputs filer's report reaches the task log whatever happens to the pod's log (R6).

The filer writes its report to its termination message, which travels in the pod status; only a
report larger than the kubelet keeps there (4096 bytes) is read back from the end of the log, whole
and exactly its size, or the task fails saying so: outputs are never silently lost.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kubernetes.conftest import Api, Cluster

pytestmark = pytest.mark.kubernetes


def outputs_task(host: str, files: int) -> dict[str, Any]:
    return {"outputs": [{"url": f"http://{host}/out/many/", "path": "/data/out", "type": "DIRECTORY"}],
            "executors": [{"image": "alpine", "command": [
                "sh", "-c", f"mkdir -p /data/out && for i in $(seq 1 {files}); do echo $i > /data/out/f-$i.txt; done"]}]}


def test_outputs_are_reported_while_the_pod_log_api_fails(api_factory: Any, cluster: Cluster,
                                                          files: tuple[str, dict[str, bytes]]) -> None:
    dev = cluster.require_standin()
    host, stored = files
    api: Api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host})
    taskmaster = f"system:serviceaccount:{cluster.namespace}:tesk-taskmaster"
    fault = dev.inject(verb="get", resource="pods/log", client=taskmaster, status=503, times=None,
                       message="the kubelet is unreachable")
    try:
        task = api.wait(api.submit(outputs_task(host, 3)))
    finally:
        dev.faults.remove(fault)
    assert task["state"] == "COMPLETE", json.dumps(task["logs"], indent=1)
    assert fault.hits > 0  # the executor's log could not be read, and yet:
    assert sorted(o["path"] for o in task["logs"][0]["outputs"]) == [f"/data/out/f-{i}.txt" for i in (1, 2, 3)]
    assert stored["/out/many/f-2.txt"] == b"2\n"


def test_a_report_too_big_for_the_termination_message_is_read_back_whole(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]]) -> None:
    host, _ = files
    api: Api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host})
    task = api.wait(api.submit(outputs_task(host, 150)), timeout=120)
    assert task["state"] == "COMPLETE", json.dumps(task["logs"], indent=1)
    outputs = task["logs"][0]["outputs"]
    assert len(json.dumps(outputs)) > 4096
    assert len(outputs) == 150 and {o["size_bytes"] for o in outputs} <= {"2", "3", "4", 2, 3, 4}
