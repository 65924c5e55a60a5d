"""The default `noauth` profile end to end: no checks, creator `anonymousUser`, Authorization ignored."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import tes

from tests.api.conftest import Api, make_api, task_body


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.delenv("TESK_AUTH", raising=False)
    monkeypatch.delenv("SPRING_PROFILES_ACTIVE", raising=False)
    yield from make_api(tmp_path)


def test_py_tes_client_works_without_credentials(api: Api, tmp_path: Path) -> None:
    """py-tes 0.4.x sends `Authorization: Basic None:None` when it has no credentials (see below)."""
    client = tes.HTTPClient(api.url)
    task_id = client.create_task(tes.Task(executors=[tes.Executor(image="alpine", command=["true"])]))
    assert client.get_task(task_id).id == task_id
    with sqlite3.connect(tmp_path / "tesk.db") as db:
        assert db.execute("SELECT owner, team FROM tasks WHERE id = ?", (task_id,)).fetchone() == (
            "anonymousUser",
            None,
        )


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic Tm9uZTpOb25l", "garbage"])
def test_any_authorization_header_is_ignored(api: Api, header: str) -> None:
    response = api.tes.post("/tasks", json=task_body(), headers={"Authorization": header})
    assert response.status_code == 200, response.text
    listed = api.tes.get("/tasks", headers={"Authorization": header})
    assert response.json()["id"] in {t["id"] for t in listed.json()["tasks"]}
