"""The attach/detach controller for exclusive volumes: a ReadWriteOnce block volume is on one node at a time.

Why: on a cloud's block disks a pod scheduled to another node than the one holding its volume waits
in ContainerCreating until every pod using the volume on the first node has ended and the disk has
been detached there; meanwhile the controller reports `FailedAttachVolume` Multi-Attach events. A
backend that spreads the steps of a task over nodes pays that wait at every step (a few seconds to
six minutes on real clouds); the stand-in makes it visible. The texts are the attach/detach
controller's (pkg/controller/volume/attachdetach/reconciler, `Multi-Attach error for volume "<pv>"
...`); `detach_delay` stands for the unmount and the cloud's detach call after the last pod ended.
"""

from __future__ import annotations

import time
from typing import Any

from devcluster import storage
from devcluster.controllers import EventRecorder
from devcluster.store import Store

CONTROLLER = "attachdetach-controller"
EXCLUSIVE = "Volume is already exclusively attached to one node and can't be attached to another"


class Attachments:
    """Which node each exclusive volume is attached to, reconciled once per kubelet pass."""

    def __init__(self, store: Store, events: EventRecorder, detach_delay: float, enabled: bool = True) -> None:
        self.store = store
        self.events = events
        self.detach_delay = detach_delay
        self.enabled = enabled
        self.attached: dict[str, str] = {}  # PV name -> node
        self._released: dict[str, float] = {}  # PV name -> when its node's last pod using it ended
        self._reported: dict[tuple[str, str], str] = {}  # (pod uid, PV) -> the last event message

    def _exclusive_volumes(self, pod: dict[str, Any]) -> list[str]:
        """The names of the exclusive PVs a pod's claims are bound to."""
        names = []
        for volume in pod["spec"].get("volumes") or []:
            source = volume.get("persistentVolumeClaim")
            claim = source and self.store.find("persistentvolumeclaims", pod["metadata"]["namespace"],
                                               source["claimName"])
            pv = storage.claim_volume(self.store, claim) if claim else None
            if pv is not None and storage.exclusive(pv):
                names.append(pv["metadata"]["name"])
        return names

    def ready(self, pod: dict[str, Any]) -> bool:
        """Whether every exclusive volume of a bound pod is attached to its node (the kubelet may mount)."""
        if not self.enabled:
            return True
        node = pod["spec"].get("nodeName")
        return all(self.attached.get(name) == node for name in self._exclusive_volumes(pod))

    def reconcile(self) -> None:
        """Detach volumes whose node no longer runs a pod using them, then attach or report Multi-Attach."""
        if not self.enabled:
            return
        users: dict[str, dict[str, list[dict[str, Any]]]] = {}
        pods = sorted(self.store.scan("pods"), key=lambda p: p["metadata"]["creationTimestamp"])
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for name in self._exclusive_volumes(pod):
                users.setdefault(name, {}).setdefault(node, []).append(pod)
        self._detach(users)
        live = {p["metadata"]["uid"] for p in pods}
        self._reported = {k: v for k, v in self._reported.items() if k[0] in live}
        for name, by_node in users.items():
            for node, waiting in by_node.items():
                attaching = name not in self.attached
                holder = self.attached.setdefault(name, node)
                for pod in waiting:
                    if holder == node:
                        # Said to the pods there when the volume is attached, and to any that waited for it.
                        if attaching or (pod["metadata"]["uid"], name) in self._reported:
                            self._event(pod, name, "Normal", "SuccessfulAttachVolume",
                                        f'AttachVolume.Attach succeeded for volume "{name}"')
                    else:
                        self._event(pod, name, "Warning", "FailedAttachVolume",
                                    self._multi_attach(pod, name, by_node.get(holder, [])))

    def _detach(self, users: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
        now = time.monotonic()
        for name, node in list(self.attached.items()):
            if users.get(name, {}).get(node):
                self._released.pop(name, None)
                continue
            if now - self._released.setdefault(name, now) >= self.detach_delay:
                del self.attached[name]
                del self._released[name]

    @staticmethod
    def _multi_attach(pod: dict[str, Any], name: str, holders: list[dict[str, Any]]) -> str:
        """The reconciler's message: which pods hold the volume (names only in the waiting pod's namespace)."""
        prefix = f'Multi-Attach error for volume "{name}"'
        if not holders:
            return f"{prefix} {EXCLUSIVE}"
        namespace = pod["metadata"]["namespace"]
        local = [p["metadata"]["name"] for p in holders if p["metadata"]["namespace"] == namespace]
        others = len(holders) - len(local)
        if not local:
            return f"{prefix} Volume is already used by {others} pod(s) in different namespaces"
        message = f"{prefix} Volume is already used by pod(s) {', '.join(local)}"
        return f"{message} and {others} pod(s) in different namespaces" if others else message

    def _event(self, pod: dict[str, Any], name: str, kind: str, reason: str, message: str) -> None:
        key = (pod["metadata"]["uid"], name)
        if self._reported.get(key) != message:
            self._reported[key] = message
            self.events.record(pod, kind, reason, message, CONTROLLER)
