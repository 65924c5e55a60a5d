"""Benchmark (a): submit -> COMPLETE of a trivial task through `tesk serve` versus a bare `podman run`.

Both sides run the same image and command (`true`) with `--network none`, alternating one by one so
that machine noise hits both alike. Prints the median of each and the overhead (target <= 150 ms).
Usage: .venv/bin/python bench/local_overhead.py [ROUNDS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.local.server import Server

IMAGE = "localhost/busybox:latest"
POLL = 0.005


def bare_run() -> float:
    started = time.perf_counter()
    subprocess.run(["podman", "run", "--rm", "--network", "none", IMAGE, "true"], check=True)
    return time.perf_counter() - started


def task_run(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    task_id = client.post(f"{url}/tasks", json={"executors": [{"image": IMAGE, "command": ["true"]}]}).json()["id"]
    while True:
        state = client.get(f"{url}/tasks/{task_id}").json()["state"]
        if state == "COMPLETE":
            return time.perf_counter() - started
        if state in ("EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
            raise RuntimeError(f"task {task_id} ended {state}")
        time.sleep(POLL)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), {"TESK_LOCAL_NETWORK": "none", "TESK_LOCAL_PULL": "never", "TESK_LOG_LEVEL": "warning"})
        server.start()
        try:
            with httpx.Client(timeout=30) as client:
                task_run(client, server.url)  # warm-up: first container start, first store writes
                bare_run()
                tasks, bare = [], []
                for _ in range(rounds):
                    tasks.append(task_run(client, server.url))
                    bare.append(bare_run())
        finally:
            server.stop()
    t, b = statistics.median(tasks), statistics.median(bare)
    print(f"rounds: {rounds}")
    print(f"bare podman run --rm {IMAGE} true: median {b * 1000:.0f} ms")
    print(f"tesk submit -> COMPLETE (same command):   median {t * 1000:.0f} ms")
    print(f"overhead: median {(t - b) * 1000:.0f} ms (target <= 150 ms)")


if __name__ == "__main__":
    main()
