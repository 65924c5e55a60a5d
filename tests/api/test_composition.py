"""Two apps composed in one process from two configurations share no state: each has its own store,
limits, service-info, callback rules and idempotency keys (only the Prometheus registry is common)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, make_api, task_body


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Api, Api]]:
    first = make_api(tmp_path / "a", server={"max_body_bytes": 64 * 1024}, service_info={"name": "first"},
                     callbacks={"allowed_hosts": "hooks.example.org"})
    second = make_api(tmp_path / "b", service_info={"name": "second"})
    yield next(first), next(second)
    next(first, None)
    next(second, None)


def test_two_apps_in_one_process_keep_their_own_state(two: tuple[Api, Api]) -> None:
    a, b = two
    assert (a.tes.get("/service-info").json()["name"], b.tes.get("/service-info").json()["name"]) == (
        "first", "second")

    made = a.tes.post("/tasks", json=task_body()).json()["id"]
    assert b.tes.get(f"/tasks/{made}").status_code == 404
    assert [t["id"] for t in a.tes.get("/tasks").json()["tasks"]] == [made]
    assert b.tes.get("/tasks").json()["tasks"] == []
    assert (a.backend.submitted, b.backend.submitted) == ([made], [])

    big = task_body(inputs=[{"path": "/in/x", "content": "x" * (100 * 1024)}])
    assert a.tes.post("/tasks", json=big).status_code == 413
    assert b.tes.post("/tasks", json=big).status_code == 200

    hooked = task_body(tags={"tesk_callback_url": "https://hooks.example.org/tes"})
    assert a.tes.post("/tasks", json=hooked).status_code == 200
    refused = b.tes.post("/tasks", json=hooked)
    assert refused.status_code == 400 and "does not send callbacks" in refused.json()["message"]

    key = {"Idempotency-Key": "same-key-on-both"}
    ids = [api.tes.post("/tasks", json=task_body(), headers=key).json()["id"] for api in (a, b)]
    assert ids[0] != ids[1]
    assert httpx.get(f"{a.url}/readyz").status_code == httpx.get(f"{b.url}/readyz").status_code == 200
