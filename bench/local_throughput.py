"""Benchmark (b): 100 trivial tasks through `tesk serve` versus the same 100 containers started
directly, with the same parallelism (target: tesk >= 0.8x the direct throughput).

The server runs at most PARALLEL tasks at once (TESK_LOCAL_MAX_TASKS); the direct side keeps PARALLEL
`podman run --rm` processes going. Both use `--network none` and the same image and command.
Usage: .venv/bin/python bench/local_throughput.py [TASKS] [PARALLEL] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
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
    async with httpx.AsyncClient(timeout=60) as client:
        body = {"executors": [{"image": IMAGE, "command": ["true"]}]}
        started = time.perf_counter()
        ids = [r.json()["id"] for r in await asyncio.gather(*(client.post(f"{url}/tasks", json=body) for _ in range(count)))]
        pending = set(ids)
        while pending:
            await asyncio.sleep(0.25)
            page = (await client.get(f"{url}/tasks", params={"page_size": 2000})).json()["tasks"]
            states = {t["id"]: t["state"] for t in page}
            for task_id in list(pending):
                if states.get(task_id) in TERMINAL:
                    if states[task_id] != "COMPLETE":
                        raise RuntimeError(f"task {task_id} ended {states[task_id]}")
                    pending.discard(task_id)
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
