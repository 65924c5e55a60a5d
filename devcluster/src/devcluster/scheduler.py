"""The stand-in's kube-scheduler: one pass binds every pending pod that fits a node, or says why none fits.

A pass runs PreFilter on the pod's claims, the filters of `scheduling` on each node, then the
VolumeBinding filter (a bound claim's PV must allow the node). Among the nodes that pass, the choice
goes round-robin: kube-scheduler scores nodes by what other workloads happen to request and breaks
ties at random, so a client can count on nothing but the filters; taking turns means two pods in a
row land on different nodes whenever both fit, which shows a client that assumed otherwise at once,
and repeatably. A claim of a
WaitForFirstConsumer class is provisioned and bound on the chosen node before the pod is bound, as
the VolumeBinding plugin's PreBind waits for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devcluster import storage
from devcluster.controllers import EventRecorder
from devcluster.nodes import NodeConfig, pod_requests
from devcluster.resources import BY_PLURAL
from devcluster.scheduling import (
    NODE_AFFINITY_MISMATCH,
    Rejection,
    fit_error,
    node_affinity_fits,
    resource_shortage,
    taint_reason,
    untolerated_taint,
)
from devcluster.store import Store, timestamp

SCHEDULER = "default-scheduler"


@dataclass
class NodeUse:
    """What the pods bound to a node take of it, in one pass."""

    node: dict[str, Any]
    config: NodeConfig
    requested: dict[str, float] = field(default_factory=lambda: {"cpu": 0.0, "memory": 0.0})
    pods: int = 0

    def add(self, spec: dict[str, Any]) -> None:
        for key, value in pod_requests(spec).items():
            self.requested[key] += value
        self.pods += 1

    def free(self) -> dict[str, float]:
        return {"cpu": self.config.cpu - self.requested["cpu"], "memory": self.config.memory - self.requested["memory"]}


class Scheduler:
    """Binds pending pods to the nodes; reports the unschedulable ones once per distinct message."""

    def __init__(self, store: Store, events: EventRecorder, nodes: tuple[NodeConfig, ...],
                 on_pvc_bound: Callable[[dict[str, Any]], None]) -> None:
        self.store = store
        self.on_pvc_bound = on_pvc_bound
        self.events = events
        self.nodes = nodes
        self._turn = itertools.count()
        self._unschedulable: dict[str, str] = {}  # pod uid -> the message last reported

    def schedule(self) -> None:
        """One pass over the pending pods, oldest first."""
        pods = self.store.scan("pods")
        pending = [p for p in pods if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")]
        self._unschedulable = {uid: m for uid, m in self._unschedulable.items()
                               if uid in {p["metadata"]["uid"] for p in pending}}
        use = {n.name: NodeUse(self.store.find("nodes", "", n.name) or n.node_object(), n) for n in self.nodes}
        for pod in pods:
            name = pod["spec"].get("nodeName")
            if name in use and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                try:
                    use[name].add(pod["spec"])
                except ValueError:
                    continue
        for pod in sorted(pending, key=lambda p: p["metadata"]["creationTimestamp"]):
            self._schedule_one(pod, use)

    def _schedule_one(self, pod: dict[str, Any], use: dict[str, NodeUse]) -> None:
        claims, prefilter = self._claims(pod)
        rejections: dict[str, Rejection] = {}
        feasible: list[NodeUse] = []
        if not prefilter:
            for name, node_use in use.items():
                rejection = self._filter(pod, claims, node_use)
                if rejection is None:
                    feasible.append(node_use)
                else:
                    rejections[name] = rejection
        if not feasible:
            self._report(pod, fit_error(len(use), prefilter, rejections))
            return
        chosen = feasible[next(self._turn) % len(feasible)]
        for claim in claims:
            if claim["spec"].get("volumeName"):
                continue
            self.on_pvc_bound(claim)
            if not storage.provision(self.store, self.events, claim, chosen.node):
                return  # the claim changed under the pass; the next one retries
        meta = pod["metadata"]
        self.store.bind_pod(meta["namespace"], meta["name"], chosen.config.name)
        self._set_scheduled(pod, "True", "", "")
        chosen.add(pod["spec"])
        self._unschedulable.pop(meta["uid"], None)
        self.events.record(pod, "Normal", "Scheduled",
                           f"Successfully assigned {meta['namespace']}/{meta['name']} to {chosen.config.name}", SCHEDULER)

    def _claims(self, pod: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """VolumeBinding's PreFilter: the pod's claims, or why no node can be considered."""
        namespace = pod["metadata"]["namespace"]
        claims: list[dict[str, Any]] = []
        for volume in pod["spec"].get("volumes") or []:
            source = volume.get("persistentVolumeClaim")
            if not source:
                continue
            claim = self.store.find("persistentvolumeclaims", namespace, source["claimName"])
            if claim is None:
                return [], f'persistentvolumeclaim "{source["claimName"]}" not found'
            if claim["metadata"].get("deletionTimestamp"):
                return [], f'persistentvolumeclaim "{source["claimName"]}" is being deleted'
            if not claim["spec"].get("volumeName") and not storage.waits_for_consumer(self.store, claim):
                return [], storage.UNBOUND_IMMEDIATE
            claims.append(claim)
        return claims, ""

    def _filter(self, pod: dict[str, Any], claims: list[dict[str, Any]], use: NodeUse) -> Rejection | None:
        """The filter plugins in kube-scheduler's order; the first that rejects the node decides."""
        spec = pod["spec"]
        taint = untolerated_taint(spec, use.node)
        if taint is not None:
            return Rejection((taint_reason(taint),))
        if not node_affinity_fits(spec, use.node):
            return Rejection((NODE_AFFINITY_MISMATCH,))
        try:
            requests = pod_requests(spec)
        except ValueError as exc:
            return Rejection((str(exc),))
        shortage = resource_shortage(requests, use.free(), use.config.pods - use.pods)
        if shortage:
            return Rejection(shortage, resolvable=True)
        if any(c["spec"].get("volumeName") and storage.node_conflicts(self.store, c, use.node) for c in claims):
            return Rejection((storage.VOLUME_CONFLICT,))
        return None

    def _report(self, pod: dict[str, Any], message: str) -> None:
        key = pod["metadata"]["uid"]
        if self._unschedulable.get(key) != message:
            self._unschedulable[key] = message
            self._set_scheduled(pod, "False", "Unschedulable", message)
            self.events.record(pod, "Warning", "FailedScheduling", message, SCHEDULER)

    def _set_scheduled(self, pod: dict[str, Any], value: str, reason: str, message: str) -> None:
        current = self.store.find("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        if current is None:
            return
        status = current.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c["type"] != "PodScheduled"]
        entry: dict[str, Any] = {"type": "PodScheduled", "status": value, "lastProbeTime": None,
                                 "lastTransitionTime": timestamp()}
        if reason:
            entry.update(reason=reason, message=message)
        status["conditions"] = [entry, *conditions]
        self.store.update(BY_PLURAL["pods"], current["metadata"]["namespace"], current["metadata"]["name"], current,
                          "status")
