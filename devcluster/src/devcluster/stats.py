"""The kubelet's Summary API (`GET /stats/summary`), reached through the API server's node proxy.

A real kubelet serves `/stats/summary` (types of `k8s.io/kubelet/pkg/apis/stats/v1alpha1`) from the
stats its embedded cAdvisor keeps: cAdvisor reads each container's cgroup at its housekeeping
interval (the kubelet sets 10 s, stretched up to 15 s for a container whose figures do not change,
`pkg/kubelet/cadvisor/cadvisor_linux.go`), and the summary shows the latest of those reads. So does
this one: `StatsCollector.housekeep` reads the cgroup of every running podman container of the
stand-in's pods every `period` seconds (default the kubelet's 10 s), and a summary is built from the
last round's reads. Memory is the current use (`usageBytes`: cgroup v1 `memory.usage_in_bytes`, v2
`memory.current`, page cache included), never a high-water mark: a spike between two rounds is not
seen, as on a cluster. `workingSetBytes` is that use less the inactive page cache, `rssBytes` the
anonymous memory, `usageCoreNanoSeconds` the cumulative CPU time (v1 `cpuacct.usage`, v2 `cpu.stat`
`usage_usec`), `usageNanoCores` the rate between the last two rounds (absent after the first).

A container is first seen at the round after it started, and gone from the summary at the first
round after it ended. Containers of host images (bubblewrap) have no cgroup of their own: they are
listed without cpu and memory, as the kubelet lists a container whose stats cAdvisor lacks.
`only_cpu_and_memory=true` (the query metrics-server sends) is honoured; the network, filesystem and
volume sections are not served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devcluster.store import timestamp

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_HOUSEKEEPING = 10.0
"""Seconds between the kubelet's (cAdvisor's) reads of each container's cgroup."""
PODMAN_PLACES = ("libpod_parent/libpod-{id}", "machine.slice/libpod-{id}.scope")
"""Where rootful podman puts a container's cgroup (cgroupfs and systemd cgroup managers)."""


class Pods(Protocol):
    """What the collector reads from the store."""

    def scan(self, plural: str, namespace: str | None = None) -> Iterable[dict[str, Any]]:
        ...


@dataclass(frozen=True)
class Reading:
    """One container's counters at one housekeeping round (None: not readable)."""

    time: str
    usage_bytes: int
    working_set_bytes: int
    rss_bytes: int | None
    cpu_nanoseconds: int
    monotonic: float


@dataclass
class _Container:
    name: str
    start_time: str
    reading: Reading | None
    nano_cores: int | None = None


@dataclass
class _Pod:
    name: str
    namespace: str
    uid: str
    start_time: str
    containers: list[_Container]


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _flat_keys(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    values: dict[str, int] = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def read_cgroup(container_id: str, root: Path, now: float) -> Reading | None:
    """The container's counters now, from its cgroup (v1 or v2); None when it has none (yet, or any more)."""
    v2 = (root / "cgroup.controllers").exists()
    for place in PODMAN_PLACES:
        relative = place.format(id=container_id)
        if v2:
            folder = root / relative
            usage = _number(folder / "memory.current")
            stat = _flat_keys(folder / "memory.stat")
            cpu_usec = _flat_keys(folder / "cpu.stat").get("usage_usec")
            cpu = None if cpu_usec is None else cpu_usec * 1000
            inactive, rss = stat.get("inactive_file", 0), stat.get("anon")
        else:
            memory = root / "memory" / relative
            usage = _number(memory / "memory.usage_in_bytes")
            stat = _flat_keys(memory / "memory.stat")
            cpu = _number(root / "cpuacct" / relative / "cpuacct.usage")
            inactive, rss = stat.get("total_inactive_file", 0), stat.get("total_rss")
        if usage is not None and cpu is not None:
            return Reading(timestamp(), usage, max(usage - inactive, 0), rss, cpu, now)
    return None


class StatsCollector:
    """cAdvisor's part of the kubelets of the stand-in's nodes: housekeeping rounds and the summaries."""

    def __init__(self, store: Pods, nodes: Iterable[str], period: float = KUBELET_HOUSEKEEPING,
                 root: Path = CGROUP_ROOT) -> None:
        self.store = store
        self.nodes = set(nodes)
        self.period = period
        self.root = root
        self.started = timestamp()
        self._pods: dict[str, list[_Pod]] = {node: [] for node in self.nodes}
        self._previous: dict[str, Reading] = {}

    async def run(self) -> None:
        """Housekeeping every `period` until cancelled."""
        while True:
            try:
                self.housekeep()
            except Exception:  # keep the rounds going; the failure is logged for the developer
                log.exception("devcluster stats housekeeping failed")
            await asyncio.sleep(self.period)

    def housekeep(self) -> None:
        """Read every running container's cgroup and keep the round's pods per node."""
        now = asyncio.get_running_loop().time()
        pods: dict[str, list[_Pod]] = {node: [] for node in self.nodes}
        readings: dict[str, Reading] = {}
        for pod in self.store.scan("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            if node not in pods:
                continue
            containers = []
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                running = (status.get("state") or {}).get("running")
                if not running:
                    continue
                runtime, _, container_id = str(status.get("containerID") or "").partition("://")
                reading = read_cgroup(container_id, self.root, now) if runtime == "podman" else None
                if reading is None and runtime == "podman":
                    continue  # its cgroup is not there yet (or no longer): cAdvisor has not seen it
                entry = _Container(status["name"], running.get("startedAt") or "", reading)
                if reading is not None:
                    readings[container_id] = reading
                    before = self._previous.get(container_id)
                    if before is not None and reading.monotonic > before.monotonic:
                        entry.nano_cores = int((reading.cpu_nanoseconds - before.cpu_nanoseconds)
                                               / (reading.monotonic - before.monotonic))
                containers.append(entry)
            if containers:
                meta = pod["metadata"]
                pods[node].append(_Pod(meta["name"], meta["namespace"], meta["uid"],
                                       (pod.get("status") or {}).get("startTime") or "", containers))
        self._previous = readings
        self._pods = pods

    def summary(self, node: str, only_cpu_and_memory: bool = False) -> dict[str, Any]:
        """The node's Summary as the last round left it."""
        pods = []
        for pod in self._pods.get(node, []):
            containers = [self._container(c) for c in pod.containers]
            entry: dict[str, Any] = {"podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                                     "startTime": pod.start_time, "containers": containers}
            measured = [c for c in containers if "memory" in c]
            if measured:
                entry["cpu"] = {"time": measured[0]["cpu"]["time"],
                                "usageCoreNanoSeconds": sum(c["cpu"]["usageCoreNanoSeconds"] for c in measured)}
                entry["memory"] = {"time": measured[0]["memory"]["time"],
                                   "usageBytes": sum(c["memory"]["usageBytes"] for c in measured),
                                   "workingSetBytes": sum(c["memory"]["workingSetBytes"] for c in measured)}
            pods.append(entry)
        node_stats: dict[str, Any] = {"nodeName": node, "startTime": self.started}
        if not only_cpu_and_memory:
            node_stats["systemContainers"] = []
        return {"node": node_stats, "pods": pods}

    def _container(self, container: _Container) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": container.name, "startTime": container.start_time}
        reading = container.reading
        if reading is None:
            return entry
        cpu: dict[str, Any] = {"time": reading.time, "usageCoreNanoSeconds": reading.cpu_nanoseconds}
        if container.nano_cores is not None:
            cpu["usageNanoCores"] = container.nano_cores
        memory: dict[str, Any] = {"time": reading.time, "usageBytes": reading.usage_bytes,
                                  "workingSetBytes": reading.working_set_bytes}
        if reading.rss_bytes is not None:
            memory["rssBytes"] = reading.rss_bytes
        entry["cpu"], entry["memory"] = cpu, memory
        return entry
