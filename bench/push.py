"""Issue 8: what following tasks costs the server — event streams (push) vs polling (the baseline).

N tasks are followed for a fixed window by the two ways a client can learn that they changed:
- baseline: GET /tasks/{id} once per second per task (what Cromwell-style clients do);
- push: one /tasks/{id}/events stream per task.
The figures: the server process's CPU seconds while the tasks wait (psutil), then, after every task
is cancelled (QUEUED -> CANCELING -> CANCELED), the delay from sending the cancel request to the client
knowing the task is CANCELED. Same server (a `tesk serve` subprocess, local backend draining so
tasks stay QUEUED until cancelled), same tasks, same machine, in one run.

Usage: .venv/bin/python bench/push.py [--tasks 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from bench._common import TESK, free_port, process

TASK = {"executors": [{"image": "alpine", "command": ["true"]}]}


async def poll(http: httpx.AsyncClient, task_id: str, seen: dict[str, float], ready: set[str]) -> None:
    while True:
        r = await http.get(f"/tasks/{task_id}")
        ready.add(task_id)
        if r.json()["state"] == "CANCELED":
            seen[task_id] = time.monotonic()
            return
        await asyncio.sleep(1.0)


async def stream(http: httpx.AsyncClient, task_id: str, seen: dict[str, float], ready: set[str]) -> None:
    async with http.stream("GET", f"/tasks/{task_id}/events", timeout=httpx.Timeout(10, read=None)) as r:
        async for line in r.aiter_lines():
            ready.add(task_id)
            if line.startswith("data:") and json.loads(line[5:])["state"] == "CANCELED":
                seen[task_id] = time.monotonic()
                return


async def scenario(url: str, server: psutil.Process, how: str, tasks: int, seconds: float) -> tuple[float, float, int]:
    """(server CPU seconds while following idle tasks, median delay to see a cancel, tasks that saw it)."""
    limits = httpx.Limits(max_connections=tasks + 10, max_keepalive_connections=tasks + 10)
    async with httpx.AsyncClient(base_url=url + "/ga4gh/tes/v1", limits=limits, timeout=60) as http:
        ids = [(await http.post("/tasks", json=TASK)).json()["id"] for _ in range(tasks)]
        seen: dict[str, float] = {}
        follow = {"poll": poll, "push": stream}.get(how)
        ready: set[str] = set()
        followers = [asyncio.create_task(follow(http, t, seen, ready)) for t in ids] if follow else []
        while follow and len(ready) < len(ids):  # every follower has started
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        cpu_before = sum(server.cpu_times()[:2])
        await asyncio.sleep(seconds)
        cpu = sum(server.cpu_times()[:2]) - cpu_before
        cancelled: dict[str, float] = {}
        async with httpx.AsyncClient(base_url=url + "/ga4gh/tes/v1", timeout=60) as other:
            for task_id in ids:
                cancelled[task_id] = time.monotonic()
                await other.post(f"/tasks/{task_id}:cancel")
        await asyncio.wait_for(asyncio.gather(*followers), 120)
        delays = [seen[t] - cancelled[t] for t in ids if t in seen]
        return cpu, statistics.median(delays) if delays else float("nan"), len(delays)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {"TESK_DATA_DIR": data, "TESK_LOCAL_MAX_TASKS": "0", "TESK_LOG_LEVEL": "warning",
               "TESK_MAX_CONNECTIONS_PER_CLIENT": "0"}  # every follower holds a connection from 127.0.0.1
        with process([TESK, "serve", "--host", "127.0.0.1", "--port", str(port)], env, f"{url}/healthz") as proc:
            server = psutil.Process(proc.pid)
            results = {how: asyncio.run(scenario(url, server, how, args.tasks, args.seconds)) for how in ("idle", "poll", "push")}
    (poll_cpu, poll_delay, poll_n), (push_cpu, push_delay, push_n) = results["poll"], results["push"]
    idle_cpu = results["idle"][0]
    print(f"{args.tasks} QUEUED tasks followed for {args.seconds:.0f}s (server CPU in that time), then all cancelled")
    print(f"nobody following     : server CPU {idle_cpu:6.2f}s  (the floor: the server's own background work)")
    print(f"baseline polling 1/s : server CPU {poll_cpu:6.2f}s  cancel seen after {poll_delay * 1000:7.1f} ms (median, {poll_n} tasks)")
    print(f"event streams (push) : server CPU {push_cpu:6.2f}s  cancel seen after {push_delay * 1000:7.1f} ms (median, {push_n} tasks)")
    print(f"push / polling       : CPU {push_cpu / poll_cpu:.2f}x (above the floor: "
          f"{(push_cpu - idle_cpu) / max(poll_cpu - idle_cpu, 1e-9):.2f}x), delay {push_delay / poll_delay:.3f}x")


if __name__ == "__main__":
    main()
