"""API fixtures: the real app over a real SQLite (or PostgreSQL) store, with a recording backend.

The recording backend stands in for a backend only in these API tests, which are about the HTTP
contract; it keeps what it was asked to do so tests can check that the API called it, and it
finishes a cancel the way every backend must (CANCELING -> CANCELED).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.backends import BackendError
from tesk.config import TeskConfig
from tesk.limits import TIME_LIMIT_PARAMETERS
from tesk.models import State
from tesk.store import StoredTask, TaskStore
from tesk.store.sql import SqlTaskStore
from tests.conftest import client, serving


class RecordingBackend:
    name = "recording"
    backend_parameters = frozenset({"vmsize", "queue"}) | TIME_LIMIT_PARAMETERS
    replica_id = None

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.submitted: list[str] = []
        self.notes: dict[str, list[str]] = {}
        self.cancelled: list[tuple[str, str]] = []
        self.refuse: str | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def submit(self, stored: StoredTask, notes: Sequence[str]) -> None:
        if self.refuse:
            raise BackendError(self.refuse, 503)
        self.submitted.append(stored.id)
        self.notes[stored.id] = list(notes)

    async def cancel(self, stored: StoredTask, by: str) -> None:
        self.cancelled.append((stored.id, by))
        await self.store.update(stored.id, state=State.CANCELED, only_from=frozenset({State.CANCELING}))


class Api:
    def __init__(self, url: str, backend: RecordingBackend, store: SqlTaskStore) -> None:
        self.url = url
        self.backend = backend
        self.store = store
        self.http = client(url)
        self.tes = client(url + "/ga4gh/tes/v1")


def make_api(tmp_path: Path, database_url: str | None = None, **sections: dict[str, Any]) -> Iterator[Api]:
    """The API on the recording backend; `sections` override fields of the configuration's sections
    (`server={"max_body_bytes": 1024}`)."""
    server = {"data_dir": tmp_path} | sections.pop("server", {})
    store_section = {"database_url": database_url} | sections.pop("store", {})
    cfg = TeskConfig.read(server=server, store=store_section, **sections)
    store = SqlTaskStore(cfg.database_url, busy_seconds=cfg.store.busy_seconds)
    backend = RecordingBackend(store)
    app = create_app(compose(cfg, store=store, backend=backend))
    with serving(app) as server:
        api = Api(server.url, backend, store)
        yield api
        api.http.close()
        api.tes.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


def task_body(**extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "hello",
        "executors": [{"image": "alpine", "command": ["echo", "hello"]}],
    }
    body.update(extra)
    return body


def create(tes: httpx.Client, **extra: object) -> str:
    r = tes.post("/tasks", json=task_body(**extra))
    assert r.status_code == 200, r.text
    task_id: str = r.json()["id"]
    return task_id
