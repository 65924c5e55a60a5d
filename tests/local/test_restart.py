"""Restart safety through the real server: `tesk serve` is killed with SIGKILL while tasks run."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.local.conftest import ENGINES, IMAGE, engine_available
from tests.local.server import Server

pytestmark = pytest.mark.containers

TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


@pytest.fixture(params=ENGINES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    engine: str = request.param
    if not engine_available(engine):
        pytest.skip(f"{engine} is not installed on this machine")
    srv = Server(tmp_path, {
        "TESK_LOCAL_ENGINE": engine, "TESK_LOCAL_NETWORK": "host", "TESK_LOCAL_PULL": "never",
        "TESK_LOCAL_DEFAULT_CPU_CORES": "0.1",
    })
    srv.start()
    yield srv
    srv.stop()


class Gate:
    """An HTTP endpoint on 127.0.0.1 that answers 404 until the test opens it."""

    def __init__(self) -> None:
        gate = self
        self.open = False

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if gate.open else 404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/go"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def task_ids_with_containers() -> set[str]:
    """Task ids on the labels of every container podman has (one call, however many tasks)."""
    out = subprocess.run(["podman", "ps", "-a", "--format", '{{index .Labels "tesk.task-id"}}'],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def processes_waiting_on(url: str) -> int:
    """Host processes of the `process` engine whose command line names the gate's URL."""
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(url in part for part in proc.info["cmdline"] or []):
                count += 1
    return count


def test_kill_9_while_ten_tasks_run_then_restart(server: Server) -> None:
    podman = server.env["TESK_LOCAL_ENGINE"] == "podman"
    # Every run waits for a go-ahead from the test over host networking: the first runs are still
    # running when the server is killed, and the runs after the restart end as soon as they start.
    # (busybox by name: it is the image's shell, and on the host for the process engine.)
    gate = Gate()
    wait = f"until busybox wget -q -O /dev/null {gate.url}; do busybox sleep 0.1; done; echo done"
    body = {"executors": [{"image": IMAGE, "command": ["busybox", "sh", "-c", wait]}]}
    ids = [httpx.post(f"{server.url}/tasks", json=body, timeout=10).json()["id"] for _ in range(10)]
    deadline = time.monotonic() + 30

    def all_started() -> bool:
        return set(ids) <= task_ids_with_containers() if podman else processes_waiting_on(gate.url) >= 10

    while not all(server.task(i)["state"] == "RUNNING" for i in ids) or not all_started():
        assert time.monotonic() < deadline, [server.task(i)["state"] for i in ids]
        time.sleep(0.1)

    server.kill()
    time.sleep(0.5)
    if podman:
        assert set(ids) <= task_ids_with_containers(), "the containers outlive the killed server"
    else:
        assert processes_waiting_on(gate.url) == 0, "the process engine's executors die with the server"
    server.start()
    gate.open = True
    deadline = time.monotonic() + 60
    while not all(server.task(i)["state"] in TERMINAL for i in ids):
        assert time.monotonic() < deadline, [server.task(i)["state"] for i in ids]
        time.sleep(0.2)
    for task_id in ids:
        task = server.task(task_id)
        assert task["state"] == "COMPLETE", task
        interrupted, rerun = task["logs"]
        assert any("server stopped while the task was RUNNING" in line for line in interrupted["system_logs"])
        assert rerun["logs"][0]["stdout"] == "done\n"
    if podman:
        assert not set(ids) & task_ids_with_containers(), "no container of these tasks is left"
    gate.server.shutdown()
