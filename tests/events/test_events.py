"""Server-Sent Events: a running task's transitions reach a subscriber, as they happen."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, create, make_api, task_body
from tests.conftest import client
from tests.events.conftest import IMAGE, guarded_api, local_server, sse_events

FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


@pytest.mark.containers
def test_task_stream_follows_a_running_task_to_its_end(tmp_path: Path) -> None:
    with local_server(tmp_path) as server, client(server.url + "/ga4gh/tes/v1") as tes:
        task_id = create(tes, executors=[{"image": IMAGE, "command": ["sh", "-c", "sleep 0.5; echo done"]}])
        with tes.stream("GET", f"/tasks/{task_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))  # the server ends the stream after a final state
        states = [data["state"] for _, data in events]
        assert {name for name, _ in events} == {"state"}
        assert all(data["id"] == task_id and data["time"].endswith("Z") for _, data in events)
        assert states[-1] == "COMPLETE", states
        assert "RUNNING" in states, states
        order = ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"]
        assert states == sorted(states, key=order.index), f"out of order: {states}"
        assert len(states) == len(set(states)), f"a state was sent twice: {states}"


@pytest.mark.containers
def test_list_wide_stream_sees_every_task(tmp_path: Path) -> None:
    with local_server(tmp_path) as server, client(server.url + "/ga4gh/tes/v1") as tes:
        seen: list[dict[str, Any]] = []
        listening = threading.Event()

        def follow() -> None:
            with tes.stream("GET", "/events") as response:
                listening.set()  # headers arrive after the server registered the stream
                for _, data in sse_events(response):
                    seen.append(data)
                    if sum(d["state"] in FINAL for d in seen) == 2:
                        return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert listening.wait(10)
        ok = create(tes, executors=[{"image": IMAGE, "command": ["true"]}])
        failing = create(tes, executors=[{"image": IMAGE, "command": ["sh", "-c", "exit 4"]}])
        reader.join(30)
        assert not reader.is_alive(), f"the stream did not deliver both final states: {seen}"
        by_task = {t: [d["state"] for d in seen if d["id"] == t] for t in (ok, failing)}
        assert by_task[ok][0] == "QUEUED" and by_task[ok][-1] == "COMPLETE", by_task
        assert by_task[failing][0] == "QUEUED" and by_task[failing][-1] == "EXECUTOR_ERROR", by_task


@pytest.fixture
def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from make_api(tmp_path)


def test_cancel_is_streamed_and_a_finished_task_stream_ends_at_once(api: Api) -> None:
    task_id = create(api.tes)
    with api.tes.stream("GET", f"/tasks/{task_id}/events") as response:
        events = sse_events(response)
        first = next(events)
        assert first == ("state", {"id": task_id, "state": "QUEUED", "time": first[1]["time"]})
        assert api.tes.post(f"/tasks/{task_id}:cancel").status_code == 200
        rest = [data["state"] for _, data in events]
    assert rest == ["CANCELING", "CANCELED"]
    with api.tes.stream("GET", f"/tasks/{task_id}/events") as response:
        assert [data["state"] for _, data in sse_events(response)] == ["CANCELED"]


def test_unknown_task_stream_is_a_json_404(api: Api) -> None:
    r = api.tes.get("/tasks/task-nosuchtask/events")
    assert r.status_code == 404
    assert "task-nosuchtask" in r.json()["message"]


@pytest.fixture
def guarded(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from guarded_api(tmp_path)


def test_streams_honour_access_like_get_and_list(guarded: Api) -> None:
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    assert guarded.tes.get("/events").status_code == 401
    mine = guarded.tes.post("/tasks", json=task_body(), headers=alice).json()["id"]
    theirs = guarded.tes.post("/tasks", json=task_body(), headers=bob).json()["id"]
    r = guarded.tes.get(f"/tasks/{theirs}/events", headers=alice)
    assert r.status_code == 403 and theirs in r.json()["message"]
    with guarded.tes.stream("GET", "/events", headers=alice) as response:
        events = sse_events(response)
        guarded.tes.post(f"/tasks/{theirs}:cancel", headers=bob)
        guarded.tes.post(f"/tasks/{mine}:cancel", headers=alice)
        seen = [next(events)[1] for _ in range(2)]
    assert [(d["id"], d["state"]) for d in seen] == [(mine, "CANCELING"), (mine, "CANCELED")]
