"""Callbacks: POSTs on every state change of a task, retried after a failure, only to allowed hosts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tesk.api.callbacks import CALLBACK_TAG, host_allowed
from tesk.config import CallbackSettings
from tests.api.conftest import task_body
from tests.conftest import client
from tests.events.conftest import IMAGE, CallbackReceiver, local_server


@pytest.mark.containers
def test_callback_receives_every_transition_and_retries_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"TESK_CALLBACK_ALLOWED_HOSTS": "127.0.0.1", "TESK_CALLBACK_BACKOFF_SECONDS": "0.05"}
    with (
        CallbackReceiver(fail_first=1) as receiver,
        local_server(tmp_path, monkeypatch, **env) as server,
        client(server.url + "/ga4gh/tes/v1") as tes,
    ):
        body = task_body(executors=[{"image": IMAGE, "command": ["true"]}], tags={CALLBACK_TAG: receiver.url})
        r = tes.post("/tasks", json=body)
        assert r.status_code == 200, r.text
        task_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while not any(b["state"] == "COMPLETE" for b, _ in receiver.received):
            assert time.monotonic() < deadline, f"no COMPLETE callback; got {receiver.received}"
            time.sleep(0.05)
    states = [body["state"] for body, _ in receiver.received]
    assert states == ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"], states
    assert receiver.attempts == len(states) + 1, "the failed first POST must have been repeated"
    assert all(body["id"] == task_id for body, _ in receiver.received)
    assert [delivery for _, delivery in receiver.received] == [f"{task_id}/{s}" for s in states]


def test_callbacks_to_hosts_not_allowed_are_refused_at_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.api.conftest import make_api

    monkeypatch.setenv("TESK_CALLBACK_ALLOWED_HOSTS", "hooks.example.org, 127.0.0.1:9")
    for api in make_api(tmp_path):
        for url in ("http://10.0.0.1/hook", "http://127.0.0.1:8080/hook", "ftp://hooks.example.org/x", "not a url"):
            r = api.tes.post("/tasks", json=task_body(tags={CALLBACK_TAG: url}))
            assert r.status_code == 400, (url, r.text)
            assert "allowed hosts: hooks.example.org, 127.0.0.1:9" in r.json()["message"]
        ok = api.tes.post("/tasks", json=task_body(tags={CALLBACK_TAG: "https://hooks.example.org/x"}))
        assert ok.status_code == 200, ok.text


def test_without_an_allow_list_a_callback_tag_is_refused(tmp_path: Path) -> None:
    from tests.api.conftest import make_api

    for api in make_api(tmp_path):
        r = api.tes.post("/tasks", json=task_body(tags={CALLBACK_TAG: "http://127.0.0.1/hook"}))
        assert r.status_code == 400
        assert "TESK_CALLBACK_ALLOWED_HOSTS" in r.json()["message"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://a.example.org/x", True),
        ("https://example.org/x", False),
        ("https://evil-example.org/x", False),
        ("http://h.test:8443/", True),
        ("http://h.test/", False),
        ("https://h.test/", False),
        ("http://user@a.example.org/", True),
        ("http://a.example.org:99999/", False),
    ],
)
def test_host_patterns(url: str, allowed: bool) -> None:
    patterns = CallbackSettings(allowed_hosts="*.example.org,h.test:8443").host_patterns()
    assert host_allowed(url, patterns) is allowed


@pytest.mark.parametrize(("status", "attempts_per_state"), [(400, 1), (503, 3)])
def test_final_answers_are_not_retried_and_retries_stop_at_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, attempts_per_state: int
) -> None:
    from tests.api.conftest import make_api

    monkeypatch.setenv("TESK_CALLBACK_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("TESK_CALLBACK_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("TESK_CALLBACK_ATTEMPTS", "3")
    with CallbackReceiver(fail_first=1000, failure_status=status) as receiver:
        for api in make_api(tmp_path):
            r = api.tes.post("/tasks", json=task_body(tags={CALLBACK_TAG: receiver.url}))
            api.tes.post(f"/tasks/{r.json()['id']}:cancel")  # QUEUED, CANCELING, CANCELED
            deadline = time.monotonic() + 10
            while receiver.attempts < 3 * attempts_per_state:
                assert time.monotonic() < deadline, f"only {receiver.attempts} attempts"
                time.sleep(0.02)
            time.sleep(0.3)  # room for any attempt that should not happen
    assert receiver.attempts == 3 * attempts_per_state
    assert receiver.received == []
