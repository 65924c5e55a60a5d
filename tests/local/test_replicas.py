"""Replicas: several real `tesk serve` processes (local backend, podman) on one real PostgreSQL store.

Every task reports each start of its container to a counting HTTP endpoint on 127.0.0.1 (host
network), then waits until the test opens a gate, so the tests count exactly how often each task's
container started, and by which replica's hand. Leases are short (2 s) to keep the tests quick.
"""

from __future__ import annotations

import collections
import http.server
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.local.conftest import IMAGE, engine_available
from tests.local.server import Server
from tests.local.test_restart import task_ids_with_containers

pytestmark = [pytest.mark.containers, pytest.mark.postgres]

TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}
LEASE = 2.0


class Counter:
    """Counts GET /start/<mark>; GET /go answers 404 until `open` is set."""

    def __init__(self) -> None:
        counter = self
        self.starts: collections.Counter[str] = collections.Counter()
        self.open = False
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/start/"):
                    with counter.lock:
                        counter.starts[self.path.removeprefix("/start/")] += 1
                    self.send_response(200)
                else:
                    self.send_response(200 if counter.open else 404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def task(self, mark: str, gated: bool = True) -> dict[str, Any]:
        wait = f"until busybox wget -q -O /dev/null {self.url}/go; do busybox sleep 0.1; done; " if gated else ""
        script = f"busybox wget -q -O /dev/null {self.url}/start/{mark}; {wait}echo done"
        return {"name": mark, "executors": [{"image": IMAGE, "command": ["busybox", "sh", "-c", script]}]}


@pytest.fixture
def counter() -> Iterator[Counter]:
    started = Counter()
    yield started
    started.server.shutdown()


@pytest.fixture
def replicas(tmp_path: Path, fresh_postgres_url: str) -> Iterator[Callable[..., Server]]:
    """`replicas(**env)` starts one more `tesk serve` on the shared store, with its own data folder."""
    if not engine_available("podman"):
        pytest.skip("podman is not installed on this machine")
    started: list[Server] = []

    def start(**env: str) -> Server:
        data_dir = tmp_path / f"replica{len(started)}"
        data_dir.mkdir()
        server = Server(data_dir, {
            "TESK_DATABASE_URL": fresh_postgres_url, "TESK_LOCAL_ENGINE": "podman", "TESK_LOCAL_NETWORK": "host",
            "TESK_LOCAL_PULL": "never", "TESK_LOCAL_DEFAULT_CPU_CORES": "0.1",
            "TESK_LOCAL_LEASE_SECONDS": str(LEASE), "TESK_LOCAL_CANCEL_POLL_SECONDS": "0.2",
        } | env)
        started.append(server)  # first, so a server that failed to answer is still stopped
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def post(server: Server, body: dict[str, Any]) -> str:
    response = httpx.post(f"{server.url}/tasks", json=body, timeout=10)
    response.raise_for_status()
    task_id: str = response.json()["id"]
    return task_id


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def states(server: Server, ids: list[str]) -> list[str]:
    return [server.task(i)["state"] for i in ids]


def all_in(server: Server, ids: list[str], wanted: set[str]) -> bool:
    return all(state in wanted for state in states(server, ids))


def test_a_restarting_replica_leaves_the_other_replicas_running_tasks_alone(
    replicas: Callable[..., Server], counter: Counter
) -> None:
    a, b = replicas(), replicas()
    marks = [f"a{i}" for i in range(4)]
    ids = [post(a, counter.task(mark)) for mark in marks]
    wait_until("every task runs", lambda: all_in(a, ids, {"RUNNING"}) and all(counter.starts[m] for m in marks))
    b.kill()  # a crash, then a restart on the same folder: B resumes only what B holds
    b.start()
    time.sleep(1.5 * LEASE)  # long enough for a lease to run out, were anything wrong
    assert all_in(b, ids, {"RUNNING"})
    counter.open = True
    wait_until("every task ends", lambda: all_in(b, ids, TERMINAL))
    assert states(a, ids) == ["COMPLETE"] * len(ids)
    assert dict(counter.starts) == {mark: 1 for mark in marks}, "each task's container started once"
    for task_id in ids:
        assert len(a.task(task_id)["logs"]) == 1, a.task(task_id)


def test_a_cancel_through_another_replica_stops_the_container(
    replicas: Callable[..., Server], counter: Counter
) -> None:
    a, b = replicas(), replicas()
    task_id = post(a, counter.task("c"))
    wait_until("the task runs", lambda: a.task(task_id)["state"] == "RUNNING" and counter.starts["c"] == 1)
    assert task_id in task_ids_with_containers()
    asked = time.monotonic()
    httpx.post(f"{b.url}/tasks/{task_id}:cancel", timeout=10).raise_for_status()
    wait_until("the task is CANCELED", lambda: b.task(task_id)["state"] == "CANCELED", timeout=5)
    wait_until("its container is gone", lambda: task_id not in task_ids_with_containers(), timeout=5)
    assert time.monotonic() - asked < 5
    system_logs = b.task(task_id)["logs"][-1]["system_logs"]
    assert any("canceled through another replica" in line for line in system_logs), system_logs


def test_the_tasks_of_a_killed_replica_are_taken_over_by_exactly_one_other(
    replicas: Callable[..., Server], counter: Counter
) -> None:
    a, b, c = replicas(TESK_LOCAL_MAX_TASKS="3"), replicas(), replicas()
    marks = [f"k{i}" for i in range(3)]
    ids = [post(a, counter.task(mark)) for mark in marks]
    queued = post(a, counter.task("k-queued"))  # A runs 3 at most: this one waits in A's queue
    wait_until("every task runs", lambda: all_in(a, ids, {"RUNNING"}) and all(counter.starts[m] for m in marks))
    killed = time.monotonic()
    a.kill()
    wait_until("the tasks run again elsewhere", lambda: all(counter.starts[m] == 2 for m in marks), timeout=20)
    taken_after = time.monotonic() - killed
    # A renewed at most a third of the lease before it was killed, so its lease ran at least this long.
    assert taken_after >= LEASE * 2 / 3, "nobody takes over before the lease has expired"
    counter.open = True
    wait_until("every task ends", lambda: all_in(b, [*ids, queued], TERMINAL))
    assert states(c, [*ids, queued]) == ["COMPLETE"] * 4
    assert dict(counter.starts) == {mark: 2 for mark in marks} | {"k-queued": 1}, "A's run, then one taker's"
    takers = set()
    for task_id in ids:
        interrupted, rerun = b.task(task_id)["logs"]
        [line] = [line for line in interrupted["system_logs"] if "took it over" in line]
        takers.add(line.split("; replica ")[1].split()[0])
        assert rerun["logs"][0]["stdout"] == "done\n"
    assert len(takers) == 1, takers
    assert len(b.task(queued)["logs"]) == 1
    assert not set(ids) & task_ids_with_containers(), "A's containers were removed by the taker"


def test_a_burst_split_across_two_replicas_runs_every_task_once(
    replicas: Callable[..., Server], counter: Counter
) -> None:
    a, b = replicas(), replicas()
    marks = [f"b{i}" for i in range(12)]
    counter.open = True
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: post((a, b)[i % 2], counter.task(marks[i], gated=False)), range(len(marks))))
    wait_until("every task ends", lambda: all_in(a, ids, TERMINAL), timeout=60)
    assert states(b, ids) == ["COMPLETE"] * len(ids)
    assert dict(counter.starts) == {mark: 1 for mark in marks}


def test_a_paused_replica_that_lost_its_lease_stops_and_serves_again(
    replicas: Callable[..., Server], counter: Counter
) -> None:
    a, b = replicas(), replicas()
    task_id = post(a, counter.task("p"))
    wait_until("the task runs", lambda: a.task(task_id)["state"] == "RUNNING" and counter.starts["p"] == 1)
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        wait_until("B runs the task again", lambda: counter.starts["p"] == 2, timeout=20)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    wait_until("A noticed and started afresh", lambda: "starting afresh" in (a.data_dir / "server.log").read_text())
    counter.open = True
    wait_until("the task ends", lambda: b.task(task_id)["state"] in TERMINAL)
    task = b.task(task_id)
    assert task["state"] == "COMPLETE" and len(task["logs"]) == 2, task
    assert counter.starts["p"] == 2
    after = post(a, counter.task("p-after", gated=False))  # A holds a lease again and runs what it accepts
    wait_until("A's new task ends", lambda: a.task(after)["state"] in TERMINAL)
    assert a.task(after)["state"] == "COMPLETE"
