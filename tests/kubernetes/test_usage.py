"""The taskmaster's usage sampler against answers shaped as the kubelet's Summary API (no cluster)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tesk.backends.kubernetes.kube import KubeError
from tesk.backends.kubernetes.usage import Usage, UsageSampler


def pod(name: str, uid: str, node: str, running: bool = True) -> dict[str, Any]:
    state = {"running": {"startedAt": "2026-12-06T21:00:00Z"}} if running else {"waiting": {}}
    return {"metadata": {"name": name, "uid": uid}, "spec": {"nodeName": node},
            "status": {"containerStatuses": [{"name": "executor", "state": state}]}}


def summary(uid: str, memory: int, cpu: int) -> dict[str, Any]:
    other = {"podRef": {"name": "other", "namespace": "x", "uid": "u-other"},
             "containers": [{"name": "executor", "memory": {"usageBytes": 10**12}, "cpu": {"usageCoreNanoSeconds": 1}}]}
    mine = {"podRef": {"name": "p", "namespace": "x", "uid": uid}, "containers": [
        {"name": "sidecar", "memory": {"usageBytes": 10**12}},
        {"name": "executor", "memory": {"time": "t", "usageBytes": memory, "workingSetBytes": memory},
         "cpu": {"time": "t", "usageCoreNanoSeconds": cpu}}]}
    return {"node": {"nodeName": "n1"}, "pods": [other, mine]}


class Kubelet:
    """Answers `node_summary` from a script of answers (an exception is raised), then repeats the last."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def node_summary(self, node: str) -> dict[str, Any]:
        self.calls.append(node)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


async def sample(kubelet: Kubelet, pods: list[dict[str, Any]], rounds: int) -> dict[str, Usage]:
    usage: dict[str, Usage] = {}
    sampler = UsageSampler(kubelet, 0.01)  # type: ignore[arg-type]
    task = asyncio.create_task(sampler.follow("task t: executor 0", lambda: pods, "executor", usage))
    while len(kubelet.calls) < rounds and not task.done():
        await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return usage


def test_the_peak_is_the_highest_use_seen_and_the_cpu_time_the_last() -> None:
    kubelet = Kubelet([summary("u1", 100, 5 * 10**8), summary("u1", 300, 10**9), summary("u1", 200, 2 * 10**9)])
    usage = asyncio.run(sample(kubelet, [pod("p-1", "u1", "n1"), pod("p-2", "u2", "n1", running=False)], 3))
    assert usage["p-1"].peak_memory_bytes == 300 and usage["p-1"].cpu_seconds == 2.0
    assert "p-2" not in usage  # not running: its node is not asked about it
    assert set(kubelet.calls) == {"n1"}


def test_a_pod_the_summary_does_not_show_yet_has_no_figures() -> None:
    usage = asyncio.run(sample(Kubelet([summary("someone-else", 1, 1)]), [pod("p-1", "u1", "n1")], 2))
    assert usage["p-1"] == Usage(None, None)


def test_a_refused_node_proxy_is_said_once_and_never_asked_again(caplog: pytest.LogCaptureFixture) -> None:
    refused = KubeError.of(403, 'read the stats summary of node n1: nodes "n1" is forbidden: User "x" cannot get '
                                'resource "nodes/proxy" in API group "" at the cluster scope (HTTP 403)')
    kubelet = Kubelet([refused])
    with caplog.at_level(logging.WARNING, "tesk.taskmaster"):
        usage = asyncio.run(sample(kubelet, [pod("p-1", "u1", "n1")], 3))
    assert kubelet.calls == ["n1"] and usage == {}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "task t: executor 0" in messages[0] and "nodes/proxy" in messages[0]


def test_other_failures_are_said_once_and_sampling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    down = KubeError.of(503, "read the stats summary of node n1: the kubelet is not answering (HTTP 503)")
    kubelet = Kubelet([down, down, down, summary("u1", 42, 10**9)])
    with caplog.at_level(logging.WARNING, "tesk.taskmaster"):
        usage = asyncio.run(sample(kubelet, [pod("p-1", "u1", "n1")], 5))
    assert usage["p-1"].peak_memory_bytes == 42
    assert len(caplog.records) == 1 and "trying again" in caplog.records[0].getMessage()
