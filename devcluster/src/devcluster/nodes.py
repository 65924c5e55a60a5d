"""The stand-in's nodes: what each one offers (labels, taints, allocatable resources) and what pods ask for.

Every node runs its pods with the same podman on this host; a node is a name, an address and a set
of labels the scheduler and the storage provisioners look at, so a backend can be shown placing the
steps of a task on different nodes (and what that costs on a real cluster). The default profile has
two nodes in different zones, as a small regional cluster has.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from devcluster.quantity import Quantity
from devcluster.store import timestamp

REGION = "devcluster"


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity ("500m", "1.5Gi", "2") as a number of base units."""
    return float(Quantity.parse(value).value)


def host_memory() -> int:
    """This machine's MemTotal in bytes (8 GiB when it cannot be read)."""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")) * 1024
    except (OSError, StopIteration):
        return 8 * 2**30


@dataclass
class NodeConfig:
    """One node: its name, zone, address, labels, taints and allocatable resources."""

    name: str = "devcluster"
    zone: str = "zone-a"
    address: str = "127.0.0.1"  # status.hostIP of its pods; every node is this host
    cpu: float = float(os.cpu_count() or 1)
    memory: int = 0  # bytes; 0 = the host's MemTotal
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)  # {"key", "value", "effect"}

    def __post_init__(self) -> None:
        if not self.memory:
            self.memory = host_memory()

    def node_object(self) -> dict[str, Any]:
        """The `v1 Node` object served at /api/v1/nodes."""
        capacity = {"cpu": f"{self.cpu:g}", "memory": f"{self.memory // 1024}Ki", "pods": str(self.pods),
                    "ephemeral-storage": "100Gi"}
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "topology.kubernetes.io/zone": self.zone, "topology.kubernetes.io/region": REGION, **self.labels}
        moment = timestamp()
        identity = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.{REGION}"))
        spec: dict[str, Any] = {"taints": [dict(t) for t in self.taints]} if self.taints else {}
        return {
            "metadata": {"name": self.name, "labels": labels},
            "spec": spec,
            "status": {
                "capacity": capacity, "allocatable": capacity,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status", "lastHeartbeatTime": moment,
                                "lastTransitionTime": moment}],
                "addresses": [{"type": "InternalIP", "address": self.address},
                              {"type": "Hostname", "address": self.name}],
                "nodeInfo": {"kubeletVersion": "v1.32.0-tesk-devcluster", "kubeProxyVersion": "v1.32.0-tesk-devcluster",
                             "containerRuntimeVersion": "podman://4", "operatingSystem": "linux",
                             "architecture": "amd64", "kernelVersion": os.uname().release,
                             "osImage": "tesk devcluster", "machineID": identity, "systemUUID": identity,
                             "bootID": identity},
            },
        }


def default_nodes(count: int = 2, cpu: float = 0.0, memory: int = 0) -> tuple[NodeConfig, ...]:
    """The default profile: `count` nodes, each in a zone of its own (zone-a, zone-b, ...)."""
    if count < 1:
        raise ValueError("the stand-in needs at least one node")
    return tuple(NodeConfig(name=f"devcluster-{index + 1}", zone=f"zone-{chr(ord('a') + index)}",
                            address=f"127.0.0.{index + 1}", cpu=cpu or NodeConfig().cpu, memory=memory)
                 for index in range(count))


def pod_requests(spec: dict[str, Any]) -> dict[str, float]:
    """Effective requests: max(sum over containers, max over init containers) per resource."""
    def requests(container: dict[str, Any]) -> dict[str, float]:
        resources = container.get("resources") or {}
        values = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {k: parse_quantity(v) for k, v in values.items() if k in ("cpu", "memory")}

    total = {"cpu": 0.0, "memory": 0.0}
    for container in spec.get("containers") or []:
        for key, value in requests(container).items():
            total[key] += value
    for container in spec.get("initContainers") or []:
        for key, value in requests(container).items():
            total[key] = max(total[key], value)
    return total
