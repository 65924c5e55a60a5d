"""Benchmark (a): submit -> COMPLETE of a trivial task through `tesk serve` versus a bare `podman run`.

Both sides run the same image and command (`true`) with `--network none`, alternating one by one so
that machine noise hits both alike. Prints the median of each and the overhead (target <= 150 ms).
Usage: .venv/bin/python bench/local_overhead.py [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package
from tests.local.server import Server

IMAGE = "localhost/busybox:latest"


def bare_run() -> float:
    started = time.perf_counter()
    subprocess.run(["podman", "run", "--rm", "--network", "none", IMAGE, "true"], check=True)
    return time.perf_counter() - started


def seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def task_run(client: httpx.Client, url: str) -> tuple[float, dict[str, float]]:
    """Submit -> COMPLETE as the client sees it, and where the time went according to the task's log."""
    started = time.perf_counter()
    task_id = client.post(f"{url}/tasks", json={"executors": [{"image": IMAGE, "command": ["true"]}]}).json()["id"]
    # The server's event stream says when the state changes: no polling load on a busy machine.
    with client.stream("GET", f"{url}/tasks/{task_id}/events") as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            state = json.loads(line[5:])["state"]
            if state == "COMPLETE":
                break
            if state in ("EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
                raise RuntimeError(f"task {task_id} ended {state}")
    elapsed = time.perf_counter() - started
    task = client.get(f"{url}/tasks/{task_id}", params={"view": "FULL"}).json()
    log = task["logs"][-1]
    executor = log["logs"][0]
    parts = {
        "created -> runner start": seconds(log["start_time"], task["creation_time"]),
        "runner start -> container start": seconds(executor["start_time"], log["start_time"]),
        "container run": seconds(executor["end_time"], executor["start_time"]),
        "container end -> task end": seconds(log["end_time"], executor["end_time"]),
    }
    return elapsed, parts


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), {"TESK_LOCAL_NETWORK": "none", "TESK_LOCAL_PULL": "never", "TESK_LOG_LEVEL": "warning"})
        server.start()
        try:
            with httpx.Client(timeout=30) as client:
                task_run(client, server.url)  # warm-up: first container start, first store writes
                bare_run()
                tasks, bare, parts = [], [], []
                for _ in range(rounds):
                    elapsed, part = task_run(client, server.url)
                    tasks.append(elapsed)
                    parts.append(part)
                    bare.append(bare_run())
        finally:
            server.stop()
    t, b = statistics.median(tasks), statistics.median(bare)
    print(f"rounds: {rounds}")
    print(f"bare podman run --rm {IMAGE} true: median {b * 1000:.0f} ms")
    print(f"tesk submit -> COMPLETE (same command):   median {t * 1000:.0f} ms")
    paired = statistics.median(task - base for task, base in zip(tasks, bare, strict=True))
    print(f"overhead: difference of medians {(t - b) * 1000:.0f} ms, median of paired differences "
          f"{paired * 1000:.0f} ms (target <= 150 ms)")
    print("where a task's time goes (medians, from its log):")
    for name in parts[0]:
        print(f"  {name}: {statistics.median(p[name] for p in parts) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
