"""What an executor pod's container used, sampled from its node's kubelet while it runs (issue 14).

The kubelet's Summary API (`/stats/summary`, reached through the API server's node proxy) shows each
running container's current memory use (`memory.usageBytes`, page cache included, as the local
backend's cgroup high-water mark) and its cumulative CPU time (`cpu.usageCoreNanoSeconds`). Every
`interval` seconds the taskmaster reads the summary of each node that runs one of the step's pods;
the peak is the highest use seen, the CPU time the last value seen. The kubelet refreshes these
figures only at its housekeeping (cAdvisor reads each cgroup every 10 s, up to 15 s for a quiet
container), so a spike between two refreshes is missed, the CPU time is short by up to one refresh
plus one interval, and an executor that ends before the kubelet's first read of it has no figures
at all: the keys are then absent, never 0 or a guess.

The node proxy needs `get` on `nodes/proxy` cluster-wide, a grant that reaches far more than stats
(every kubelet endpoint that answers GET, exec over WebSocket included), so deployments add it on
purpose (deploy/kustomize/components/usage-sampling). Without it the API server answers 403: that
is said once in the taskmaster's log and sampling stops for the task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tesk.backends.kubernetes.kube import Forbidden, Kube, KubeError, Obj

log = logging.getLogger("tesk.taskmaster")


@dataclass
class Usage:
    """One pod's container as sampled so far."""

    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None


def _running(pod: Obj, container: str) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("name") == container and "running" in (s.get("state") or {}) for s in statuses)


def _figures(summary: Obj, uid: str, container: str) -> tuple[int | None, int | None]:
    """(memory usageBytes, cpu usageCoreNanoSeconds) of the pod's container in a summary, where shown."""
    for pod in summary.get("pods") or []:
        if (pod.get("podRef") or {}).get("uid") != uid:
            continue
        for entry in pod.get("containers") or []:
            if entry.get("name") == container:
                memory = (entry.get("memory") or {}).get("usageBytes")
                cpu = (entry.get("cpu") or {}).get("usageCoreNanoSeconds")
                return (memory if isinstance(memory, int) else None, cpu if isinstance(cpu, int) else None)
    return None, None


class UsageSampler:
    """Samples the running pods of a step from the kubelet Summary API of their nodes."""

    def __init__(self, kube: Kube, interval: float) -> None:
        self.kube = kube
        self.interval = interval
        self.refused = False
        """The API server refused the node proxy (403): no sample is asked for again."""

    async def follow(self, what: str, pods: Callable[[], list[Obj]], container: str,
                     usage: dict[str, Usage]) -> None:
        """Fill `usage` (by pod name) every `interval` until cancelled, or until the node proxy is refused."""
        failing = False
        while not self.refused:
            running = [p for p in pods() if (p.get("spec") or {}).get("nodeName") and _running(p, container)]
            summaries: dict[str, Obj] = {}
            for pod in running:
                node = str(pod["spec"]["nodeName"])
                try:
                    if node not in summaries:
                        summaries[node] = await asyncio.to_thread(self.kube.node_summary, node)
                except Forbidden as exc:
                    self.refused = True
                    log.warning("%s: its peak memory and CPU time are not measured: the taskmaster's service account "
                                "may not read the kubelet's stats (get on nodes/proxy, the optional grant in "
                                "deploy/kustomize/components/usage-sampling); the task runs on without them (%s)",
                                what, exc)
                    return
                except KubeError as exc:
                    if not failing:
                        log.warning("%s: could not read its node's stats (%s); trying again every %g s", what, exc,
                                    self.interval)
                    failing = True
                    continue
                failing = False
                memory, cpu = _figures(summaries[node], pod["metadata"].get("uid") or "", container)
                seen = usage.setdefault(pod["metadata"]["name"], Usage())
                if memory is not None:
                    seen.peak_memory_bytes = max(memory, seen.peak_memory_bytes or 0)
                if cpu is not None:
                    seen.cpu_seconds = cpu / 1e9
            await asyncio.sleep(self.interval)
