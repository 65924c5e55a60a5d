"""Controller parts on the stand-in without running pods: leader election, informer relist, merges."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.election import LeaseElector
from tesk.backends.kubernetes.informer import Cache, Informer
from tesk.backends.kubernetes.kube import Kube, load_api_client
from tesk.backends.kubernetes.state import Verdict, merge_logs
from tesk.models import State, TaskLog

pytestmark = pytest.mark.kubernetes


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kube, object]]:
    from devcluster import DevCluster
    from devcluster.cluster import fast_config

    tmp = tmp_path_factory.mktemp("controller")
    with DevCluster(fast_config(state_dir=tmp / "devcluster")) as dev:
        yield Kube(load_api_client(dev.write_kubeconfig(Path(tmp) / "kubeconfig")), "default"), dev


def wait(probe: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_only_one_elector_leads_and_a_successor_takes_over(kube: tuple[Kube, object]) -> None:
    client, _ = kube
    changes: list[tuple[str, bool]] = []
    first = LeaseElector(client, "test-lease", 2, lambda leading: changes.append(("first", leading)))
    second = LeaseElector(client, "test-lease", 2, lambda leading: changes.append(("second", leading)))
    first.start()
    wait(lambda: first.leading)
    second.start()
    time.sleep(1.5)  # several renewal periods: the second must stay a follower
    assert first.leading and not second.leading
    first.stop_event.set()
    first.join(5)  # gives the lease up on the way out
    wait(lambda: second.leading, timeout=5)
    second.stop_event.set()
    second.join(5)
    assert ("second", False) not in changes[:2] and ("first", True) in changes


def test_informer_relists_after_410_and_sees_every_change(kube: tuple[Kube, object]) -> None:
    client, dev = kube
    cache = Cache()
    seen: set[str] = set()
    lock = threading.Lock()

    def changed(ids: set[str]) -> None:
        with lock:
            seen.update(ids)

    selector = lb.MANAGED_SELECTOR + f",{lb.ROLE}=result"
    informer = Informer(client, "ConfigMap", selector, cache, changed)
    informer.start()
    wait(informer.synced.is_set)
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "task-a-result", "labels": lb.task_labels("task-a", lb.Role.RESULT)},
            "data": {"state": "RUNNING"}}
    client.create(body)
    wait(lambda: cache.result("task-a") == {"state": "RUNNING"})
    dev.compact()  # type: ignore[attr-defined]
    dev.drop_watches()  # type: ignore[attr-defined]
    client.patch("ConfigMap", "task-a-result", {"data": {"state": "COMPLETE"}})
    wait(lambda: (cache.result("task-a") or {}).get("state") == "COMPLETE")
    client.delete("ConfigMap", "task-a-result")
    wait(lambda: cache.result("task-a") is None)
    informer.stop()
    assert "task-a" in seen


def test_merge_logs_keeps_stored_lines_first_and_adds_the_reason_once() -> None:
    stored = [TaskLog(system_logs=["ignored unsupported backend_parameters: x"])]
    published = TaskLog(system_logs=["executor 1 of 1 exited with code 1"])
    merged = merge_logs(stored, Verdict(State.SYSTEM_ERROR, "the taskmaster failed", published))
    assert merged is not None
    assert merged[0].system_logs == ["ignored unsupported backend_parameters: x",
                                     "executor 1 of 1 exited with code 1", "the taskmaster failed"]
    assert merged[0].end_time is not None
    assert merge_logs(stored, Verdict(State.RUNNING)) is None


def test_informer_survives_a_410_whose_relist_fails_past_every_retry(kube: tuple[Kube, object]) -> None:
    """W5: right after an API server restart a watch gets 410 Gone and the relist gets 503s; the
    loop (the one the taskmaster uses for its pods too) must keep trying, then see new changes."""
    from devcluster.faults import Fault

    client, dev = kube
    cache = Cache()
    selector = lb.MANAGED_SELECTOR + f",{lb.ROLE}=result"
    informer = Informer(client, "ConfigMap", selector, cache, lambda ids: None)
    informer.start()
    wait(informer.synced.is_set)
    faults = dev.faults  # type: ignore[attr-defined]
    relist = faults.add(Fault(verb="list", resource="configmaps", status=503, times=client.attempts + 2))
    faults.add(Fault(verb="watch", resource="configmaps", status=410, times=1))
    dev.drop_watches()  # type: ignore[attr-defined]
    wait(lambda: relist.hits >= client.attempts, timeout=20)  # one whole relist has failed
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "task-b-result", "labels": lb.task_labels("task-b", lb.Role.RESULT)},
            "data": {"state": "COMPLETE"}}
    client.create(body)
    wait(lambda: cache.result("task-b") == {"state": "COMPLETE"}, timeout=30)
    assert informer.is_alive()
    informer.stop()
    client.delete("ConfigMap", "task-b-result")


def test_informer_gives_up_a_half_open_watch_and_sees_the_changes_it_missed(kube: tuple[Kube, object]) -> None:
    """R1: a watch that stays open and sends nothing (a peer gone without a FIN, a stuck API server)
    is abandoned by the client once the server's own timeout and the read slack have passed; the
    loop resumes and sees what changed meanwhile."""
    from devcluster.faults import Fault

    client, dev = kube
    cache = Cache()
    selector = lb.MANAGED_SELECTOR + f",{lb.ROLE}=result"
    informer = Informer(client, "ConfigMap", selector, cache, lambda ids: None, watch_timeout=1)
    informer.start()
    wait(informer.synced.is_set)
    stuck = dev.faults.add(Fault(verb="watch", resource="configmaps", status=0, half_open=True, times=1))  # type: ignore[attr-defined]
    dev.drop_watches()  # type: ignore[attr-defined]
    wait(lambda: stuck.hits == 1)
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "task-c-result", "labels": lb.task_labels("task-c", lb.Role.RESULT)},
            "data": {"state": "COMPLETE"}}
    client.create(body)
    wait(lambda: cache.result("task-c") == {"state": "COMPLETE"}, timeout=1 + client.request_timeout[1] + 10)
    informer.stop()
    client.delete("ConfigMap", "task-c-result")


def test_informer_lists_in_pages_and_trims_each_page_before_asking_for_the_next(kube: tuple[Kube, object]) -> None:
    """R3: with thousands of tasks' objects the list comes in `limit`-sized pages (`continue`), and each
    object is trimmed as its page arrives, so no whole untrimmed list is ever held."""
    client, dev = kube
    selector = lb.MANAGED_SELECTOR + f",{lb.ROLE}=result"
    for i in range(1100):
        client.create({"apiVersion": "v1", "kind": "ConfigMap", "immutable": True,
                       "metadata": {"name": f"page-{i:04d}-result", "labels": lb.task_labels(f"page-{i:04d}", lb.Role.RESULT),
                                    "finalizers": ["example.com/keep"]},
                       "data": {"state": "COMPLETE"}})
    lists = lambda: dev.faults.count(verb="list", resource="configmaps")  # type: ignore[attr-defined]  # noqa: E731
    before = lists()
    trimmed_after: list[int] = []  # list requests made when each object was trimmed

    class Counting(Cache):
        def trim(self, obj: dict[str, object]) -> dict[str, object]:
            trimmed_after.append(lists() - before)
            return super().trim(obj)

    counting = Counting()
    informer = Informer(client, "ConfigMap", selector, counting, lambda ids: None)
    informer.start()
    wait(informer.synced.is_set, timeout=30)
    informer.stop()
    assert lists() - before == 3  # pages of 500, 500 and 100
    assert trimmed_after[0] == 1 and trimmed_after[499] == 1 and trimmed_after[500] == 2 and trimmed_after[-1] == 3
    held = counting.get("ConfigMap", "page-0007-result")
    assert held is not None and held["data"] == {"state": "COMPLETE"}
    assert "immutable" not in held and "finalizers" not in held["metadata"]
    assert len(counting.task_ids("ConfigMap")) >= 1100
