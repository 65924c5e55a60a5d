"""Issue 2 benchmarks, all in one run on this machine:

(a) GET /tasks/{id}?view=MINIMAL requests/s vs a bare Starlette route returning constant JSON
    (same uvicorn, same flags, same wrk load)                            target >= 0.5x
(b) POST /tasks sustained rate on SQLite (local backend in drain mode)    target >= 1,000 tasks/s
(c) one 256-task MINIMAL page at 100,000 stored tasks vs at 1,000         target <= 1.5x

Usage: .venv/bin/python bench/api.py [--seconds 5] [--big 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from bench._common import free_port, process, tesk_server, wrk
from tesk.models import State, Task
from tesk.store import new_task_id
from tesk.store.sql import SqlTaskStore

TASK = '{"name":"bench","executors":[{"image":"alpine","command":["true"]}],"tags":{"run":"bench"}}'


def bench_get(seconds: int, rounds: int = 4) -> None:
    """Both servers up at once; wrk alternates between them, so machine noise hits both alike."""
    port = free_port()
    bare_url = f"http://127.0.0.1:{port}/tasks/x"
    cmd = [sys.executable, "-m", "uvicorn", "bench._bare_app:app", "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning"]
    ours: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, tesk_server(Path(tmp)) as url, process(cmd, ready_url=bare_url):
        task_id = httpx.post(f"{url}/ga4gh/tes/v1/tasks", content=TASK).json()["id"]
        tesk_url = f"{url}/ga4gh/tes/v1/tasks/{task_id}?view=MINIMAL"
        wrk(tesk_url, 1)  # warm-up
        wrk(bare_url, 1)
        for _ in range(rounds):
            ours.append(wrk(tesk_url, seconds)["rps"])
            bare.append(wrk(bare_url, seconds)["rps"])
    ratios = sorted(o / b for o, b in zip(ours, bare, strict=True))
    print(f"(a) GET MINIMAL: tesk {statistics.median(ours):.0f} req/s vs bare Starlette {statistics.median(bare):.0f} "
          f"req/s (medians of {rounds} alternating {seconds}s wrk runs, 32 connections); per-round ratio median "
          f"{statistics.median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x (target >= 0.5x)")


def bench_post(seconds: int) -> None:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{TASK}'\n"
    )
    with tempfile.TemporaryDirectory() as tmp, tesk_server(Path(tmp)) as url:
        result = wrk(f"{url}/ga4gh/tes/v1/tasks", seconds, connections=64, script=script)
        stored = count_tasks(url)
    script.unlink()
    print(f"(b) POST /tasks on SQLite: {result['rps']:.0f} tasks/s sustained over {seconds}s "
          f"({stored} tasks stored, non-2xx {result['non2xx']:.0f}) (target >= 1,000/s; Funnel ~50/s)")


def count_tasks(url: str) -> int:
    total, token = 0, None
    with httpx.Client(timeout=60) as client:
        while True:
            params: dict[str, str | int] = {"page_size": 2047}
            if token:
                params["page_token"] = token
            body = client.get(f"{url}/ga4gh/tes/v1/tasks", params=params).json()
            total += len(body["tasks"])
            token = body.get("next_page_token")
            if not token:
                return total


async def fill(data_dir: Path, count: int) -> None:
    store = SqlTaskStore(f"sqlite+aiosqlite:///{data_dir / 'tesk.db'}")
    await store.open()
    states = [State.COMPLETE, State.COMPLETE, State.EXECUTOR_ERROR, State.RUNNING]
    batch = 2000
    for start in range(0, count, batch):
        tasks = []
        for i in range(start, min(count, start + batch)):
            task = Task.model_validate_json(TASK)
            task.id, task.state, task.creation_time = new_task_id(), states[i % 4], datetime.now(UTC)
            task.name = f"bench-{i}"
            tasks.append(store.create(task, "anonymousUser", None))
        await asyncio.gather(*tasks)
    await store.close()


def page_times(urls: list[str], params: dict[str, str | int], rounds: int = 100) -> list[float]:
    """Median time of one page from each server, requests interleaved so noise hits all alike."""
    clients = [httpx.Client(base_url=url, timeout=60) for url in urls]
    samples: list[list[float]] = [[] for _ in urls]
    try:
        for _ in range(5):
            for client in clients:
                client.get("/ga4gh/tes/v1/tasks", params=params)
        for _ in range(rounds):
            for i, client in enumerate(clients):
                start = time.perf_counter()
                r = client.get("/ga4gh/tes/v1/tasks", params=params)
                samples[i].append(time.perf_counter() - start)
                assert len(r.json()["tasks"]) == 256, r.text[:200]
    finally:
        for client in clients:
            client.close()
    return [statistics.median(s) * 1000 for s in samples]


def bench_pages(big: int) -> None:
    counts = (1000, big)
    with tempfile.TemporaryDirectory() as small_dir, tempfile.TemporaryDirectory() as big_dir:
        for count, folder in zip(counts, (small_dir, big_dir), strict=True):
            start = time.perf_counter()
            asyncio.run(fill(Path(folder), count))
            filled = time.perf_counter() - start
            print(f"    {count:>7} tasks stored in {filled:.1f}s ({count / filled:.0f}/s through the store)")
        with tesk_server(Path(small_dir)) as small_url, tesk_server(Path(big_dir)) as big_url:
            urls = [small_url, big_url]
            cases: dict[str, dict[str, str | int]] = {
                "first page": {"page_size": 256},
                "state=COMPLETE": {"page_size": 256, "state": "COMPLETE"},
                "tag run=bench": {"page_size": 256, "tag_key": "run", "tag_value": "bench"},
            }
            ratios = {}
            for label, params in cases.items():
                small, large = page_times(urls, params)
                ratios[label] = large / small
                print(f"    {label}: {small:.2f} ms at 1,000 tasks, {large:.2f} ms at {big:,} (median, interleaved)")
    print(f"(c) 256-task MINIMAL page at {big:,} vs 1,000 tasks: {ratios['first page']:.2f}x "
          f"(state filter {ratios['state=COMPLETE']:.2f}x, tag filter {ratios['tag run=bench']:.2f}x) "
          "(target <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    bench_get(args.seconds)
    bench_post(args.seconds)
    bench_pages(args.big)


if __name__ == "__main__":
    main()
