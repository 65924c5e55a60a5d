"""A real tesk server on 127.0.0.1 running tasks with the local backend (podman), for the users' tools.

Shared by tests/events, tests/client, tests/metrics and tests/dashboard: tasks really run, so their
state changes are the ones users will see. The API-only tests use tests/api's recording backend.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from starlette.requests import Request

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.auth.principal import Forbidden, Principal, Unauthenticated
from tesk.backends.local import LocalBackend
from tesk.config import TeskConfig
from tesk.store import Visibility
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import Api, RecordingBackend
from tests.conftest import ServerThread, serving

IMAGE = "alpine"


@contextmanager
def local_server(data_dir: Path, monkeypatch: pytest.MonkeyPatch | None = None, **env: str) -> Iterator[ServerThread]:
    """A server whose tasks run in podman containers (no network, no pulls); `env` sets TESK_* first."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed on this machine")
    for name, value in env.items():
        assert monkeypatch is not None, "pass monkeypatch to set environment variables"
        monkeypatch.setenv(name, value)
    config = TeskConfig.read(server={"data_dir": data_dir}, local={"engine": "podman", "network": "none", "pull": "never"})
    store = SqlTaskStore(config.database_url)
    backend = LocalBackend.from_config(config, store)
    with serving(create_app(compose(config, store=store, backend=backend))) as server:
        yield server


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, parsed data) of each event of a text/event-stream response, as a browser reads it."""
    name, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


class CallbackReceiver:
    """An HTTP server on 127.0.0.1 that records callback POSTs and fails the first `fail_first` of them
    with `failure_status`."""

    def __init__(self, fail_first: int = 0, failure_status: int = 503) -> None:
        self.received: list[tuple[dict[str, Any], str]] = []
        self.failures_left = fail_first
        self.failure_status = failure_status
        self.attempts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.attempts += 1
                    failing = receiver.failures_left > 0
                    if failing:
                        receiver.failures_left -= 1
                    else:
                        receiver.received.append((body, self.headers.get("X-Tesk-Delivery", "")))
                self.send_response(receiver.failure_status if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class HeaderAccess:
    """A stand-in for tesk.auth at the Access seam: the bearer token *is* the user id; owners only."""

    async def caller(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise Unauthenticated("A bearer token is required.")
        return Principal(user_id=header.removeprefix("Bearer "))

    def team_for_create(self, caller: Principal, tags: Any) -> str | None:
        return None

    def visibility(self, caller: Principal) -> Visibility:
        return Visibility(owner=caller.user_id)

    def check_access(self, caller: Principal, task_id: str, owner: str, team: str | None) -> None:
        if owner != caller.user_id:
            raise Forbidden(f"task {task_id} belongs to someone else")

    async def aclose(self) -> None:
        return None


def guarded_api(tmp_path: Path) -> Iterator[Api]:
    """The API (recording backend) behind `HeaderAccess`: every request needs `Bearer <user>`."""
    config = TeskConfig.read(server={"data_dir": tmp_path})
    store = SqlTaskStore(config.database_url)
    backend = RecordingBackend(store)
    with serving(create_app(compose(config, store=store, backend=backend, access=HeaderAccess()))) as server:
        api = Api(server.url, backend, store)
        yield api
        api.http.close()
        api.tes.close()
