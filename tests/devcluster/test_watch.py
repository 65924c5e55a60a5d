"""Watches as kube-apiserver delivers them: one watch cache per resource, each with its own delay, so
changes of different resources reach a watcher in either order; bookmarks about once a minute; and
a watch that stays open and sends nothing (half-open), which only a client-side timeout ends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster import DevCluster
from devcluster.cluster import fast_config
from devcluster.resources import BY_PLURAL

NS = "default"


class Arrivals:
    """Events of several watch streams with the time each arrived, in arrival order."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str]] = []
        self.lock = threading.Lock()

    def of(self, kind: str, name: str, type_: str = "ADDED") -> float:
        with self.lock:
            return next(at for at, k, n, t in self.events if (k, n, t) == (kind, name, type_))

    def wait(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, self.events
            time.sleep(0.02)


@contextmanager
def watching(cluster: DevCluster, plurals: list[str], arrivals: Arrivals, query: str = "") -> Iterator[None]:
    """Watch each of `plurals` (core or batch) from now, in threads, until the block ends."""
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    version = httpx.get(f"{cluster.url}/api/v1/namespaces/{NS}/configmaps", headers=headers).json()[
        "metadata"]["resourceVersion"]
    opened = threading.Barrier(len(plurals) + 1)
    threads = []

    def read(plural: str) -> None:
        group = "apis/batch/v1" if plural == "jobs" else "api/v1"
        url = f"{cluster.url}/{group}/namespaces/{NS}/{plural}?watch=1&resourceVersion={version}&timeoutSeconds=5{query}"
        with httpx.stream("GET", url, headers=headers, timeout=10) as response:
            opened.wait()
            for line in response.iter_lines():
                if line:
                    event = json.loads(line)
                    obj = event["object"]
                    with arrivals.lock:
                        arrivals.events.append((time.monotonic(), obj.get("kind", ""),
                                                obj.get("metadata", {}).get("name", ""), event["type"]))

    for plural in plurals:
        thread = threading.Thread(target=read, args=(plural,), daemon=True)
        thread.start()
        threads.append(thread)
    opened.wait(timeout=10)
    yield
    cluster.drop_watches()
    for thread in threads:
        thread.join(timeout=10)


def create(cluster: DevCluster, plural: str, body: dict[str, Any]) -> None:
    group = "apis/batch/v1" if plural == "jobs" else "api/v1"
    response = httpx.post(f"{cluster.url}/{group}/namespaces/{NS}/{plural}", json=body,
                          headers={"Authorization": f"Bearer {cluster.admin_token}"})
    assert response.status_code == 201, response.text


def job(name: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "localhost/busybox:latest", "command": ["true"]}]}}}}


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


@pytest.mark.parametrize(("delays", "first"), [
    (None, "Job"),  # the default profile: a ConfigMap's watch cache is behind a Job's
    ({"jobs": 0.6}, "ConfigMap"),
])
def test_changes_of_different_resources_arrive_in_the_order_of_their_watch_caches(
        tmp_path: Path, delays: dict[str, float] | None, first: str) -> None:
    config = fast_config(state_dir=tmp_path / "dc", **({"watch_delays": delays} if delays is not None else {}))
    with DevCluster(config) as cluster:
        arrivals = Arrivals()
        store = cluster.store
        with watching(cluster, ["configmaps", "jobs"], arrivals):
            # Committed one after the other in one step of the cluster's loop: only the watch caches'
            # delays can reorder them (through the API, a slow machine spaces the creates out).
            cluster.call(lambda: [store.create(BY_PLURAL["configmaps"], NS, configmap("made-first")),
                                  store.create(BY_PLURAL["configmaps"], NS, configmap("made-second")),
                                  store.create(BY_PLURAL["jobs"], NS, job("made-third"))])
            arrivals.wait(3)
        configmap_at, job_at = arrivals.of("ConfigMap", "made-first"), arrivals.of("Job", "made-third")
        assert (job_at < configmap_at) == (first == "Job"), arrivals.events
        # within one resource the order of the changes holds
        assert configmap_at < arrivals.of("ConfigMap", "made-second")


def test_bookmarks_come_about_once_a_minute_by_default(tmp_path: Path) -> None:
    with DevCluster(fast_config(state_dir=tmp_path / "dc")) as cluster:
        assert cluster.config.bookmark_interval == 60.0
        arrivals = Arrivals()
        with watching(cluster, ["configmaps"], arrivals, "&allowWatchBookmarks=true"):
            time.sleep(3)
        assert [e for e in arrivals.events if e[3] == "BOOKMARK"] == []
    with DevCluster(fast_config(state_dir=tmp_path / "dc2", bookmark_interval=0.5)) as cluster:
        arrivals = Arrivals()
        with watching(cluster, ["configmaps"], arrivals, "&allowWatchBookmarks=true"):
            time.sleep(2)
        assert len([e for e in arrivals.events if e[3] == "BOOKMARK"]) >= 2


def test_a_half_open_watch_sends_nothing_and_outlives_its_timeout(devcluster: DevCluster) -> None:
    headers = {"Authorization": f"Bearer {devcluster.admin_token}"}
    url = f"{devcluster.url}/api/v1/namespaces/{NS}/configmaps?watch=1&timeoutSeconds=1"
    devcluster.inject(verb="watch", resource="configmaps", status=0, half_open=True, times=1)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), httpx.stream("GET", url, headers=headers, timeout=3) as response:
        assert response.status_code == 200
        create(devcluster, "configmaps", configmap("unseen"))
        list(response.iter_lines())
    assert time.monotonic() - started >= 3  # the server's own timeoutSeconds=1 did not end it
    with httpx.stream("GET", url, headers=headers, timeout=5) as response:  # the next watch is a normal one
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "unseen")]
