"""Lease-based leader election: at most one API replica's controller acts on the cluster.

Every replica runs the informers (so cancel finds objects without a GET), but only the replica that
holds the Lease writes the store from what they show.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.kube import Conflict, Kube, KubeError, NotFound, Obj

log = logging.getLogger("tesk.kubernetes.election")


def lease_manifest(metadata: Obj, spec: Obj) -> Obj:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class LeaseElector(threading.Thread):
    """Lease-based leader election: at most one controller acts; a dead leader is replaced after the lease.

    Writes go through `replace` with the Lease's resourceVersion, so two candidates can never both win.
    As in client-go, a follower judges expiry by its own clock: the lease has expired when its record
    has not changed for `leaseDurationSeconds` since this replica first saw it so, so clock skew between
    machines does not matter. A leader stops acting (`acting`) when it has not renewed within the
    renew deadline, which is shorter than the lease, so it has stopped before anyone else may start.
    """

    def __init__(self, kube: Kube, name: str, lease_seconds: float, on_change: Callable[[bool], None],
                 renew_deadline: float | None = None) -> None:
        super().__init__(name="tesk-leader-election", daemon=True)
        self.kube, self.name, self.lease_seconds, self.on_change = kube, name, lease_seconds, on_change
        self.renew_deadline = renew_deadline if renew_deadline is not None else lease_seconds * 2 / 3
        if not 0 < self.renew_deadline < lease_seconds:
            raise ValueError(f"the renew deadline ({self.renew_deadline}s) must be shorter than the lease "
                             f"({lease_seconds}s)")
        self.identity = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self.leading = False
        self._renewed = 0.0
        """time.monotonic() of our last successful acquire or renew."""
        self._observed: tuple[tuple[object, ...], float] | None = None
        """The other holder's lease record as last seen, and the local time it was first seen so."""

    @property
    def acting(self) -> bool:
        """Leading, and renewed within the renew deadline: only then may the controller write."""
        return self.leading and time.monotonic() - self._renewed < self.renew_deadline

    def _now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

    def _expired(self, current: Obj) -> bool:
        """Has the holder's record stayed the same for its whole duration, by our clock?"""
        record = (current.get("holderIdentity"), current.get("renewTime"), current.get("leaseTransitions"),
                  current.get("acquireTime"))
        now = time.monotonic()
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
        duration = float(current.get("leaseDurationSeconds") or self.lease_seconds)
        return now - self._observed[1] > duration

    def try_acquire(self) -> bool:
        started = time.monotonic()
        lease = self.kube.get("Lease", self.name)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, int(self.lease_seconds)),
                "renewTime": self._now()}
        if lease is None:
            body = lease_manifest({"name": self.name, "labels": {lb.MANAGED_BY: lb.MANAGER}},
                                  spec | {"acquireTime": self._now(), "leaseTransitions": 0})
            try:
                self.kube.create(body)
            except Conflict:
                return False
            self._renewed = started
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        if holder and holder != self.identity and not self._expired(current):
            return False
        if holder != self.identity:
            spec["acquireTime"] = self._now()
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        body = lease_manifest(lease["metadata"], current | spec)
        try:
            self.kube.replace("Lease", self.name, body)
        except (Conflict, NotFound):
            return False
        self._renewed = started  # counted from before the requests: a slow answer eats into the deadline
        return True

    def run(self) -> None:
        period = max(0.5, self.lease_seconds / 3)
        while not self.stop_event.is_set():
            try:
                leading = self.try_acquire()
            except Exception as exc:  # noqa: BLE001 (an unreadable Lease must not end the election)
                log.warning("leader election: %s", exc)
                leading = self.acting  # keep leading only while the renew deadline allows
            if leading != self.leading:
                self.leading = leading
                log.info("controller %s %s", self.identity, "is the leader" if leading else "is not the leader")
                self.on_change(leading)
            self.stop_event.wait(period)
        if self.leading:
            self.release()

    def release(self) -> None:
        """Give the lease up on shutdown (no holder) so another replica takes over at once."""
        try:
            lease = self.kube.get("Lease", self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.replace("Lease", self.name, lease)
        except KubeError as exc:
            log.info("leader election: could not release the lease (%s)", exc)
        self.leading = False
