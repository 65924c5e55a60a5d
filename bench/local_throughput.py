"""Benchmark (b): 100 trivial tasks through `tesk serve` versus the same 100 containers started
directly, with the same parallelism (target: tesk >= 0.8x the direct throughput).

The server runs at most PARALLEL tasks at once (TESK_LOCAL_MAX_TASKS); the direct side keeps PARALLEL
`podman run --rm` processes going. Both use `--network none` and the same image and command.
Usage: .venv/bin/python bench/local_throughput.py [TASKS] [PARALLEL] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package
from tests.local.server import Server

IMAGE = "localhost/busybox:latest"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


async def direct(count: int, parallel: int) -> float:
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec("podman", "run", "--rm", "--network", "none", IMAGE, "true")
            if await proc.wait() != 0:
                raise RuntimeError("a direct podman run failed")

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started


async def through_server(url: str, count: int) -> float:
    """Submit `count` tasks at once and wait for all to end, told by the server's event stream."""
    async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", f"{url}/events") as events:
        lines = events.aiter_lines()
        assert (await anext(lines)).startswith(":"), "the stream opens with a comment once it listens"
        body = {"executors": [{"image": IMAGE, "command": ["true"]}]}
        started = time.perf_counter()
        posts = await asyncio.gather(*(client.post(f"{url}/tasks", json=body) for _ in range(count)))
        pending = {r.json()["id"] for r in posts}
        async for line in lines:
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event["id"] in pending and event["state"] in TERMINAL:
                if event["state"] != "COMPLETE":
                    task = (await client.get(f"{url}/tasks/{event['id']}", params={"view": "FULL"})).json()
                    raise RuntimeError(f"task {event['id']} ended {event['state']}: {task['logs'][-1]['system_logs']}")
                pending.discard(event["id"])
                if not pending:
                    break
        return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), {
            "TESK_LOCAL_NETWORK": "none", "TESK_LOCAL_PULL": "never", "TESK_LOG_LEVEL": "warning",
            "TESK_LOCAL_MAX_TASKS": str(parallel), "TESK_LOCAL_DEFAULT_CPU_CORES": "0",
        })
        server.start()
        try:
            asyncio.run(through_server(server.url, 2))  # warm-up
            # Alternate the two sides so that changes in the machine's load hit both alike.
            bare = served = 0.0
            for _ in range(rounds):
                bare += asyncio.run(direct(count, parallel))
                served += asyncio.run(through_server(server.url, count))
        finally:
            server.stop()
    total = count * rounds
    print(f"{count} trivial containers, {parallel} at a time, {rounds} alternating rounds")
    print(f"direct podman run --rm:  {bare:.1f} s  ({total / bare:.2f} tasks/s)")
    print(f"through tesk serve:      {served:.1f} s  ({total / served:.2f} tasks/s)")
    print(f"ratio: {bare / served:.2f}x the direct throughput (target >= 0.8x)")


if __name__ == "__main__":
    main()
