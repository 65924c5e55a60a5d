"""Issue 8: what metrics cost the API — CPU time per GET /tasks/{id} with request and store timing
vs without (the baseline: the same app with the metrics middleware and store timing removed).

The requests go through the whole ASGI app in this process (no sockets), and the figure is CPU time
(time.process_time), so other work on a busy machine does not skew the comparison. Runs alternate
between the two apps; medians are reported. Target: >= 0.9x the baseline's throughput.

Usage: .venv/bin/python bench/metrics.py [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/, whose devcluster.py
# would shadow the devcluster package

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.api.metrics import MetricsMiddleware
from tesk.config import TeskConfig

TASK = {"name": "bench", "executors": [{"image": "alpine", "command": ["true"]}]}


def build(data_dir: str, metrics: bool):  # type: ignore[no-untyped-def]
    services = compose(TeskConfig.read(server={"data_dir": Path(data_dir)}))
    if not metrics:  # the API on the untimed store, without the request timing middleware
        services = dataclasses.replace(services, store=services.store.inner)
    app = create_app(services)
    if not metrics:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not MetricsMiddleware]
    return app


async def get(app, path: str) -> int:  # type: ignore[no-untyped-def]
    """One GET straight through the ASGI app (no client library, no socket): only the server's work."""
    status = 0
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]

    await app(scope, receive, send)
    return status


async def cpu_per_request(app, requests: int) -> float:  # type: ignore[no-untyped-def]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench/ga4gh/tes/v1") as http:
            task_id = (await http.post("/tasks", json=TASK)).json()["id"]
        path = f"/ga4gh/tes/v1/tasks/{task_id}"
        for _ in range(200):  # warm-up
            await get(app, path)
        start = time.process_time()
        for _ in range(requests):
            status = await get(app, path)
        assert status == 200
        return (time.process_time() - start) / requests


def main() -> None:
    os.environ["TESK_LOCAL_MAX_TASKS"] = "0"  # drain: the task is stored, never run
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    for _ in range(args.rounds):
        for metrics, results in ((False, off), (True, on)):
            with tempfile.TemporaryDirectory() as data:
                results.append(asyncio.run(cpu_per_request(build(data, metrics), args.requests)))
    with_metrics, without = statistics.median(on), statistics.median(off)
    print(f"GET /tasks/{{id}} CPU per request: with metrics {with_metrics * 1e6:.0f} us, without {without * 1e6:.0f} us "
          f"(medians of {args.rounds} alternating runs of {args.requests}) -> throughput {without / with_metrics:.2f}x "
          "of the baseline (target >= 0.9x)")


if __name__ == "__main__":
    main()
