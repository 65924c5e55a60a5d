"""Overload answers a client survives: 503 + Retry-After when the store is busy, never a 500 or a hung
request, and exactly one task for a retried POST carrying the same `Idempotency-Key`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.config import TeskConfig
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import Api, RecordingBackend, make_api, task_body
from tests.conftest import serving


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Api]:
    """A server whose store gives up after 0.3 s."""
    yield from make_api(tmp_path, store={"busy_seconds": 0.3})


def all_ids(api: Api) -> list[str]:
    return [t["id"] for t in api.tes.get("/tasks", params={"page_size": 2047}).json()["tasks"]]


def posts_at_once(api: Api, key: str, count: int) -> list[httpx.Response]:
    """`count` creates sent concurrently, each carrying Idempotency-Key `key`."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(
            lambda _: httpx.post(f"{api.url}/ga4gh/tes/v1/tasks", json=task_body(),
                                 headers={"Idempotency-Key": key}, timeout=30),
            range(count)))


def test_sqlite_locked_by_another_connection_is_503_with_retry_after(quick: Api, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "tesk.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock, as another process writing would
    try:
        started = time.monotonic()
        busy = quick.tes.post("/tasks", json=task_body(), headers={"Idempotency-Key": "k-1"})
        waited = time.monotonic() - started
        assert busy.status_code == 503, busy.text
        assert busy.headers["retry-after"] == "1"
        assert "task store is busy" in busy.json()["message"] and busy.json()["status_code"] == 503
        assert waited < 3, f"answered after {waited:.1f} s, not within the bound"
        assert all_ids(quick) == [], "reads still work (WAL) and nothing was stored"
    finally:
        other.execute("ROLLBACK")
        other.close()
    retried = quick.tes.post("/tasks", json=task_body(), headers={"Idempotency-Key": "k-1"})
    assert retried.status_code == 200, retried.text
    again = quick.tes.post("/tasks", json=task_body(), headers={"Idempotency-Key": "k-1"})
    assert again.json() == retried.json()
    assert all_ids(quick) == [retried.json()["id"]], "exactly one task"
    assert quick.backend.submitted == [retried.json()["id"]]


def test_a_retried_post_with_the_same_idempotency_key_makes_one_task(api: Api) -> None:
    first = api.tes.post("/tasks", json=task_body(), headers={"Idempotency-Key": "same"})
    assert first.status_code == 200
    # Ten retries at once (a client that lost the answer, several times over): one task.
    answers = posts_at_once(api, "same", 10)
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["id"] for a in answers} == {first.json()["id"]}
    other = api.tes.post("/tasks", json=task_body(), headers={"Idempotency-Key": "different"})
    without = api.tes.post("/tasks", json=task_body())
    assert len({first.json()["id"], other.json()["id"], without.json()["id"]}) == 3
    assert sorted(all_ids(api)) == sorted([first.json()["id"], other.json()["id"], without.json()["id"]])


def test_concurrent_first_attempts_with_one_key_make_one_task(api: Api) -> None:
    answers = posts_at_once(api, "race", 8)
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["id"] for a in answers}) == 1
    assert all_ids(api) == [answers[0].json()["id"]]


def test_a_bad_idempotency_key_is_a_clear_400_and_stores_nothing(api: Api) -> None:
    for key in ("", "x" * 256):
        answer = api.tes.post("/tasks", json=task_body(), headers={"Idempotency-Key": key})
        assert answer.status_code == 400 and "Idempotency-Key" in answer.json()["message"]
    assert all_ids(api) == []


def test_a_backend_that_cannot_take_work_is_503_with_retry_after(api: Api) -> None:
    api.backend.refuse = "the cluster has no room"
    answer = api.tes.post("/tasks", json=task_body())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "the cluster has no room" in answer.json()["message"]


@pytest.mark.postgres
def test_postgresql_pool_exhausted_is_503_with_retry_after(tmp_path: Path, fresh_postgres_url: str) -> None:
    config = TeskConfig.read(server={"data_dir": tmp_path}, store={"database_url": fresh_postgres_url, "busy_seconds": 0.5})
    store = SqlTaskStore(config.database_url, busy_seconds=config.store.busy_seconds)
    loops: list[asyncio.AbstractEventLoop] = []
    real_open = store.open

    async def open_and_note_loop() -> None:
        loops.append(asyncio.get_running_loop())
        await real_open()

    store.open = open_and_note_loop  # type: ignore[method-assign]
    backend = RecordingBackend(store)
    with serving(create_app(compose(config, store=store, backend=backend))) as server:
        base = server.url + "/ga4gh/tes/v1"
        made = httpx.post(f"{base}/tasks", json=task_body(), timeout=30).json()["id"]
        held: list[Any] = []
        release = asyncio.Event()

        async def hold_every_connection() -> None:
            engine = store._async_engine()
            held.extend([await engine.connect() for _ in range(engine.pool.size() + 20)])  # type: ignore[attr-defined]
            await release.wait()
            for conn in held:
                await conn.close()

        holding = asyncio.run_coroutine_threadsafe(hold_every_connection(), loops[0])
        deadline = time.monotonic() + 10
        while len(held) < 30:
            assert time.monotonic() < deadline, "could not check out the pool"
            time.sleep(0.02)
        try:
            for method, path in (("POST", "/tasks"), ("GET", f"/tasks/{made}"), ("GET", "/tasks")):
                started = time.monotonic()
                answer = httpx.request(method, base + path, json=task_body() if method == "POST" else None,
                                       headers={"Idempotency-Key": "pg-1"}, timeout=30)
                assert answer.status_code == 503, (method, path, answer.text)
                assert answer.headers["retry-after"] == "1"
                assert time.monotonic() - started < 5
        finally:
            loops[0].call_soon_threadsafe(release.set)
            holding.result(timeout=10)
        retried = httpx.post(f"{base}/tasks", json=task_body(), headers={"Idempotency-Key": "pg-1"}, timeout=30)
        assert retried.status_code == 200
        listed = httpx.get(f"{base}/tasks", timeout=30).json()["tasks"]
        assert sorted(t["id"] for t in listed) == sorted([made, retried.json()["id"]]), "none lost, none doubled"
