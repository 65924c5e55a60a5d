"""Leader election judged by this replica's clock, with a renew deadline (R2), on a fake Lease API."""

from __future__ import annotations

import time
from typing import Any

from tesk.backends.kubernetes.election import LeaseElector
from tesk.backends.kubernetes.kube import Conflict, Obj, Unreachable


class FakeLeases:
    """One Lease; `replace` checks the resourceVersion like the API server; `down` fails every call."""

    def __init__(self, spec: Obj) -> None:
        self.lease: Obj = {"metadata": {"name": "l", "resourceVersion": "1"}, "spec": spec}
        self.down = False

    def get(self, kind: str, name: str) -> Obj | None:
        if self.down:
            raise Unreachable(0, "get Lease l: connection refused")
        return {"metadata": dict(self.lease["metadata"]), "spec": dict(self.lease["spec"])}

    def replace(self, kind: str, name: str, body: Obj) -> Obj:
        if self.down:
            raise Unreachable(0, "replace Lease l: connection refused")
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "the object has been modified")
        version = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
        self.lease = {"metadata": {"name": "l", "resourceVersion": version}, "spec": dict(body["spec"])}
        return self.lease

    def renew_by_other(self) -> None:
        """The other holder renews, writing a renewTime from its own (far behind) clock."""
        spec = self.lease["spec"] | {"renewTime": f"2001-01-01T00:00:{int(time.monotonic() * 100) % 60:02d}.000000Z"}
        self.lease = {"metadata": {"name": "l", "resourceVersion": str(int(self.lease["metadata"]["resourceVersion"]) + 1)},
                      "spec": spec}


def elector(leases: Any, lease_seconds: float = 1.0) -> LeaseElector:
    return LeaseElector(leases, "l", lease_seconds, lambda leading: None)


def test_a_holder_with_a_skewed_clock_keeps_the_lease_while_it_renews() -> None:
    leases = FakeLeases({"holderIdentity": "other", "leaseDurationSeconds": 1,
                         "renewTime": "2001-01-01T00:00:00.000000Z"})  # its clock is 25 years behind ours
    follower = elector(leases)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert not follower.try_acquire()  # comparing renewTime with our clock would take it at once
        leases.renew_by_other()
        time.sleep(0.2)
    # the holder stops renewing: after one lease duration unchanged (by our clock), we take over
    assert not follower.try_acquire()
    time.sleep(1.2)
    assert follower.try_acquire()
    assert leases.lease["spec"]["holderIdentity"] == follower.identity


def test_a_leader_that_cannot_renew_stops_acting_before_the_lease_runs_out() -> None:
    leases = FakeLeases({"holderIdentity": "", "leaseDurationSeconds": 1})
    leader = elector(leases, lease_seconds=3.0)
    leader.start()
    try:
        deadline = time.monotonic() + 5
        while not leader.acting:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        leases.down = True
        cut = time.monotonic()
        while leader.acting:
            time.sleep(0.05)
        stopped_after = time.monotonic() - cut
        assert stopped_after < 3.0  # before any other replica may take the lease over
    finally:
        leader.stop_event.set()
        leader.join(5)


def test_release_leaves_no_holder_so_a_successor_need_not_wait() -> None:
    leases = FakeLeases({"holderIdentity": "", "leaseDurationSeconds": 1})
    first, second = elector(leases, 30), elector(leases, 30)
    assert first.try_acquire()
    first.leading = True
    first.release()
    assert second.try_acquire()
