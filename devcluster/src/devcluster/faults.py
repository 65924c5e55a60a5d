"""Fault injection and request accounting for the stand-in API server.

Tests use these to prove that a client survives what a real cluster does under load (500s, 409s on
races, 429 with Retry-After from API priority and fairness, slow answers, watch streams cut by a
load balancer, 410 after etcd compaction) and to assert how many calls an operation costs.
Both are driven from the test thread while the server runs on its own loop, hence the lock.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

MAX_RECORDS = 100_000  # the request log keeps this many of the latest requests


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the server saw it."""

    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    resource: str  # plural, with "/subresource" when one was addressed (pods/log, jobs/status)
    namespace: str
    name: str
    client: str  # the authenticated user (from the bearer token) or system:anonymous
    user_agent: str
    code: int
    at: float


@dataclass
class Fault:
    """A rule that makes matching requests fail or slow down.

    Empty match fields match everything. `times` is how many requests it hits (None: until removed).
    `status` 0 means "do not fail" (use with `delay` for slow answers). For watches, `status` 410
    sends the ERROR event a compacted history would, `drop_after` closes the stream after that
    many seconds, and `half_open` (with `status` 0) keeps it open with nothing sent, not even bookmarks, until the client
    gives up (a connection whose peer is gone, or a stuck API server: only a client-side timeout ends it). `client` matches the user name or a substring of the User-Agent.
    """

    verb: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""
    client: str = ""
    status: int = 500
    delay: float = 0.0
    retry_after: int | None = None
    message: str = "injected fault"
    times: int | None = 1
    drop_after: float | None = None
    half_open: bool = False
    hits: int = field(default=0, init=False)

    def matches(self, verb: str, resource: str, namespace: str, name: str, client: str, user_agent: str) -> bool:
        """Whether this rule applies to a request."""
        return (
            (not self.verb or self.verb == verb)
            and (not self.resource or self.resource == resource)
            and (not self.namespace or self.namespace == namespace)
            and (not self.name or self.name == name)
            and (not self.client or self.client == client or self.client in user_agent)
            and (self.times is None or self.hits < self.times)
        )


class Faults:
    """The active fault rules and the log of requests, shared between the server and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._records: deque[RequestRecord] = deque(maxlen=MAX_RECORDS)
        self._watch_generation = 0

    def add(self, fault: Fault) -> Fault:
        """Activate a rule; returns it so a test can `remove` it or read `hits`."""
        with self._lock:
            self._rules.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Deactivate a rule."""
        with self._lock:
            if fault in self._rules:
                self._rules.remove(fault)

    def clear(self) -> None:
        """Deactivate every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, verb: str, resource: str, namespace: str, name: str, client: str, user_agent: str) -> Fault | None:
        """The first rule matching a request (counting the hit), or None."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(verb, resource, namespace, name, client, user_agent):
                    rule.hits += 1
                    return rule
        return None

    def drop_watches(self) -> None:
        """Close every watch stream that is open now (clients must resume from their last version)."""
        with self._lock:
            self._watch_generation += 1

    @property
    def watch_generation(self) -> int:
        """Bumped by `drop_watches`; an open stream ends when it sees a newer value."""
        return self._watch_generation

    def record(self, record: RequestRecord) -> None:
        """Log one request (called by the server)."""
        with self._lock:
            self._records.append(record)

    def requests(self, verb: str = "", resource: str = "", client: str = "", namespace: str = "") -> list[RequestRecord]:
        """The logged requests that match all the given fields (empty matches everything)."""
        with self._lock:
            records = list(self._records)
        return [
            r for r in records
            if (not verb or r.verb == verb)
            and (not resource or r.resource == resource)
            and (not client or r.client == client or client in r.user_agent)
            and (not namespace or r.namespace == namespace)
        ]

    def count(self, verb: str = "", resource: str = "", client: str = "", namespace: str = "") -> int:
        """How many logged requests match."""
        return len(self.requests(verb, resource, client, namespace))

    def counts(self, client: str = "") -> Counter[tuple[str, str]]:
        """Requests per (verb, resource), optionally for one client."""
        return Counter((r.verb, r.resource) for r in self.requests(client=client))

    def reset_counts(self) -> None:
        """Forget the logged requests (start counting afresh)."""
        with self._lock:
            self._records.clear()
