"""Issue 13 benchmark: a burst of concurrent POSTs on SQLite that clients retry after 503.

Two bursts of N concurrent POST /tasks (default 2,000) against `tesk serve` (SQLite, local backend in
drain mode, TESK_STORE_BUSY_SECONDS=0.5, no per-client connection cap: one load generator), each request with its own Idempotency-Key, retried with the
same key after a 503 as a client would:
  baseline  the burst alone;
  contended the same burst while another connection takes SQLite's write lock for 0.8 s out of every
            second, so the store cannot commit when the requests arrive.
For each it prints the answers other than 200/503 (target 0), tasks lost and duplicated after the
retries (target 0, counted from the server's own list), the share of 503 answers and the p99 latency
of one answer and of a task's whole create (retries included).

Usage: .venv/bin/python bench/overload.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from bench._common import tesk_server


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def burst(base: str, n: int, run: str) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    answer_times: list[float] = []
    create_times: list[float] = []
    ids: list[str] = []
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:

        async def one(i: int) -> None:
            key = str(uuid.uuid4())
            body = {"name": f"burst-{i}", "tags": {"run": run},
                    "executors": [{"image": "alpine", "command": ["true"]}]}
            started = time.perf_counter()
            while True:
                sent = time.perf_counter()
                try:
                    answer = await http.post("/tasks", json=body, headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    statuses[0] += 1  # a refused or reset connection: retried like a 503
                    await asyncio.sleep(0.2)
                    continue
                answer_times.append(time.perf_counter() - sent)
                statuses[answer.status_code] += 1
                if answer.status_code == 503:
                    await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
                    continue
                if answer.status_code == 200:
                    ids.append(answer.json()["id"])
                create_times.append(time.perf_counter() - started)
                return

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
        stored: list[str] = []
        token = None
        while True:
            params = {"tag_key": "run", "tag_value": run, "page_size": 2047} | ({"page_token": token} if token else {})
            page = (await http.get("/tasks", params=params)).json()
            stored += [t["id"] for t in page["tasks"]]
            token = page.get("next_page_token")
            if not token:
                break
    answers = sum(statuses.values())
    return {
        "other": answers - statuses[200] - statuses[503],
        "lost": n - len(set(ids) & set(stored)),
        "duplicated": len(stored) - len(set(ids)),
        "503_share": statuses[503] / answers,
        "p99_answer_ms": 1000 * p99(answer_times),
        "p99_create_ms": 1000 * p99(create_times),
        "seconds": elapsed,
        "statuses": dict(statuses),
    }


def hold_lock_repeatedly(db: Path, stop: threading.Event) -> None:
    """Another writer: SQLite's write lock held 0.8 s of every second."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        stop.wait(0.8)
        conn.execute("ROLLBACK")
        stop.wait(0.2)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tesk_server(
        Path(tmp), TESK_STORE_BUSY_SECONDS="0.5", TESK_MAX_CONNECTIONS_PER_CLIENT="0"
    ) as url:
        base = url + "/ga4gh/tes/v1"
        baseline = asyncio.run(burst(base, args.requests, "baseline"))
        stop = threading.Event()
        holder = threading.Thread(target=hold_lock_repeatedly, args=(Path(tmp) / "tesk.db", stop))
        holder.start()
        try:
            contended = asyncio.run(burst(base, args.requests, "contended"))
        finally:
            stop.set()
            holder.join()
    print(f"burst of {args.requests} concurrent POST /tasks on SQLite, 503s retried with the same Idempotency-Key")
    print(f"{'':28}{'baseline':>14}{'lock held 80%':>16}   target")
    rows = [
        ("answers not 200/503", "other", "{:.0f}", "0"),
        ("tasks lost", "lost", "{:.0f}", "0"),
        ("tasks duplicated", "duplicated", "{:.0f}", "0"),
        ("503 share", "503_share", "{:.1%}", "-"),
        ("p99 of one answer (ms)", "p99_answer_ms", "{:.0f}", "-"),
        ("p99 of a create (ms)", "p99_create_ms", "{:.0f}", "-"),
        ("whole burst (s)", "seconds", "{:.1f}", "-"),
    ]
    for label, key, fmt, target in rows:
        print(f"{label:28}{fmt.format(baseline[key]):>14}{fmt.format(contended[key]):>16}   {target}")
    print(f"statuses: baseline {baseline['statuses']}, contended {contended['statuses']}  (0 = connection error)")


if __name__ == "__main__":
    main()
