"""The kubelet's Summary API through the node proxy: real cgroup figures of the stand-in's containers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from devcluster import DevCluster
from devcluster.pytest_plugin import wait_for

pytestmark = pytest.mark.devcluster

PYTHON = "python:3.11-slim-bookworm"
MIB = 2**20
# 100 MiB held while the CPU is kept busy for 20 s, so consecutive housekeeping rounds see CPU time grow.
HOLD_AND_SPIN = "b = b'x' * (100 << 20)\nimport time\nend = time.time() + 20\nwhile time.time() < end: pass"


def summary(http: httpx.Client, node: str, **params: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/nodes/{node}/proxy/stats/summary", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def container_of(body: dict[str, Any], uid: str, name: str) -> dict[str, Any] | None:
    for pod in body["pods"]:
        if pod["podRef"]["uid"] == uid:
            return next((c for c in pod["containers"] if c["name"] == name and "memory" in c), None)
    return None


def test_the_summary_shows_each_running_container_s_memory_and_cpu_as_it_changes(devcluster: DevCluster) -> None:
    http = httpx.Client(base_url=devcluster.url, headers={"Authorization": f"Bearer {devcluster.admin_token}"},
                        timeout=30)
    pod = {"metadata": {"name": "spin"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": PYTHON, "command": ["python3", "-c", HOLD_AND_SPIN]}]}}
    created = http.post("/api/v1/namespaces/default/pods", json=pod)
    assert created.status_code == 201, created.text
    uid = created.json()["metadata"]["uid"]

    def scheduled() -> str | None:
        return http.get("/api/v1/namespaces/default/pods/spin").json()["spec"].get("nodeName")

    node = wait_for(scheduled, what="the pod to be bound")
    first = wait_for(lambda: container_of(summary(http, node), uid, "main"), timeout=60,
                     what="the container in its node's summary")
    assert set(first["memory"]) >= {"time", "usageBytes", "workingSetBytes"}
    assert set(first["cpu"]) >= {"time", "usageCoreNanoSeconds"}
    assert first["startTime"] and first["memory"]["time"]

    def grown() -> dict[str, Any] | None:
        now = container_of(summary(http, node), uid, "main")
        return now if now and now["memory"]["usageBytes"] >= 100 * MIB and \
            now["cpu"]["usageCoreNanoSeconds"] > first["cpu"]["usageCoreNanoSeconds"] else None

    later = wait_for(grown, timeout=30, what="the container's 100 MiB and growing CPU time")
    assert 100 * MIB <= later["memory"]["usageBytes"] < 140 * MIB, later
    assert later["memory"]["workingSetBytes"] <= later["memory"]["usageBytes"]
    assert later["cpu"]["usageNanoCores"] > 0, later  # it spins (as much of a core as the machine gives it)
    whole = summary(http, node)
    entry = next(p for p in whole["pods"] if p["podRef"]["uid"] == uid)
    assert entry["podRef"] == {"name": "spin", "namespace": "default", "uid": uid}
    assert whole["node"]["nodeName"] == node and "systemContainers" in whole["node"]
    assert "systemContainers" not in summary(http, node, only_cpu_and_memory="true")["node"]

    other = next(n["metadata"]["name"] for n in http.get("/api/v1/nodes").json()["items"]
                 if n["metadata"]["name"] != node)
    assert container_of(summary(http, other), uid, "main") is None  # each node shows its own pods

    http.delete("/api/v1/namespaces/default/pods/spin", params={"gracePeriodSeconds": "0"})
    wait_for(lambda: container_of(summary(http, node), uid, "main") is None, timeout=30,
             what="the deleted pod's container to leave the summary")


def test_the_node_proxy_answers_like_the_api_server_and_kubelet(devcluster: DevCluster) -> None:
    http = httpx.Client(base_url=devcluster.url, headers={"Authorization": f"Bearer {devcluster.admin_token}"},
                        timeout=30)
    missing = http.get("/api/v1/nodes/no-such-node/proxy/stats/summary")
    assert missing.status_code == 404 and missing.json()["message"] == 'nodes "no-such-node" not found'
    unknown = http.get("/api/v1/nodes/devcluster-1/proxy/no/such/path")
    assert (unknown.status_code, unknown.text) == (404, "404 page not found\n")
    resources = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
    assert resources["nodes/proxy"]["kind"] == "NodeProxyOptions" and "get" in resources["nodes/proxy"]["verbs"]
    started = time.monotonic()
    empty = summary(http, "devcluster-2")
    assert empty["pods"] == [] and time.monotonic() - started < 5
