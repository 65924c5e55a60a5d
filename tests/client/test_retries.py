"""The `tesk` client retries 503/429 and refused or reset connections with backoff, and a retried
create makes one task (it sends an Idempotency-Key)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tesk.client.http import Connection, TesClient
from tesk.config import TeskConfig
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import Api, RecordingBackend, make_api, task_body
from tests.conftest import ServerThread, free_port


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path, store={"busy_seconds": 0.2})


def test_create_retries_a_busy_store_and_makes_one_task(quick: Api, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "tesk.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(1.5, lambda: (other.execute("ROLLBACK"), other.close()))
    started = time.monotonic()
    timer.start()
    try:
        with TesClient(Connection(quick.url, None), retry_first=0.1) as client:
            task_id = client.create(task_body())
            assert time.monotonic() - started >= 1.4, "it was answered 503 at first and retried"
            assert client.get(task_id)["state"] == "QUEUED"
    finally:
        timer.join()
    listed = quick.tes.get("/tasks").json()["tasks"]
    assert [t["id"] for t in listed] == [task_id] and quick.backend.submitted == [task_id]


def test_a_server_that_is_not_up_yet_is_retried(tmp_path: Path) -> None:
    port = free_port()
    config = TeskConfig.read(server={"data_dir": tmp_path})
    store = SqlTaskStore(config.database_url)
    from tesk.api.app import create_app
    from tesk.api.compose import compose

    server = ServerThread(create_app(compose(config, store=store, backend=RecordingBackend(store))))
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.server.config.port = port
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:
        with TesClient(Connection(f"http://127.0.0.1:{port}", None), retry_first=0.2) as client:
            task_id = client.create(task_body())  # connection refused at first
            assert client.get(task_id)["state"] == "QUEUED"
    finally:
        starter.join()
        server.stop()
