"""Slow heads, slow bodies and connection hoarding are cut off; normal clients never notice.

Raw sockets against a real uvicorn server on 127.0.0.1 running tesk's guarded protocol (as
`tesk serve` does), with short bounds so the tests stay quick.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.api.connections import guarded_protocol
from tesk.config import TeskConfig
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import RecordingBackend, task_body
from tests.conftest import ServerThread, serving
from tests.local.server import Server

BOUND = 1.0
CAP = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = TeskConfig.read(server={
        "data_dir": tmp_path_factory.mktemp("connections"),
        "header_timeout_seconds": BOUND,
        "body_timeout_seconds": BOUND,
        "max_connections_per_client": CAP,
    })
    store = SqlTaskStore(config.database_url)
    app = create_app(compose(config, store=store, backend=RecordingBackend(store)))
    with serving(app, http=guarded_protocol(config.server)) as running:
        yield running


def connect(server: ServerThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def post_head(length: int) -> bytes:
    return (
        f"POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_shorter_than_its_content_length_is_cut_with_408(server: ServerThread) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(post_head(1000) + b'{"executors":')
        answer = read_all(sock)
        elapsed = time.monotonic() - started
    status, body = status_and_body(answer)
    assert status == 408 and b"connection: close" in answer.lower()
    assert "TESK_BODY_TIMEOUT_SECONDS" in str(body["message"]) and body["status_code"] == 408
    assert BOUND * 0.9 <= elapsed < BOUND + 3, elapsed


def test_a_body_trickled_byte_by_byte_is_cut_at_the_bound_not_kept_alive(server: ServerThread) -> None:
    """The bound is on the whole body, so a byte now and then does not keep the connection."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(post_head(1000))
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < BOUND + 3:
            try:
                sock.sendall(b" ")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer and answer.endswith(b"}"):
                break
        elapsed = time.monotonic() - started
    assert status_and_body(answer)[0] == 408, answer
    assert elapsed < BOUND + 2, elapsed


@pytest.mark.parametrize("sent", [b"", b"GET /ga4gh/tes/v1/service-info HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_head_that_never_ends_is_cut_with_408(server: ServerThread, sent: bytes) -> None:
    """A silent connection, and a head missing its final blank line while headers keep coming."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        sock.settimeout(0.2)
        answer = b""
        for n in range(40):
            try:
                if sent:
                    sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    status, body = status_and_body(answer)
    assert status == 408 and "TESK_HEADER_TIMEOUT_SECONDS" in str(body["message"])
    assert BOUND * 0.9 <= elapsed < BOUND + 3, elapsed


def test_connections_per_client_are_capped(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as warm:
        assert warm.get("/healthz").status_code == 200  # nothing else of this test module is open
    time.sleep(0.2)
    held = [connect(server) for _ in range(CAP)]
    try:
        for sock in held:  # each completes a request and stays open (keep-alive)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        with connect(server) as extra:
            answer = read_all(extra)
        status, body = status_and_body(answer)
        assert status == 429 and b"retry-after: 1" in answer.lower()
        assert f"{CAP} connections" in str(body["message"])
        held.pop().close()
        time.sleep(0.2)
        with connect(server) as again:
            again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert read_all(again).startswith(b"HTTP/1.1 200"), "a freed slot is usable again"
    finally:
        for sock in held:
            sock.close()


def test_normal_clients_are_unaffected(server: ServerThread) -> None:
    """Keep-alive across the bounds, a large body, and a body sent in two parts with a pause."""
    with httpx.Client(base_url=server.url + "/ga4gh/tes/v1", timeout=10) as tes:
        first = tes.post("/tasks", json=task_body())
        assert first.status_code == 200, first.text
        time.sleep(BOUND * 1.3)  # idle between requests is uvicorn's keep-alive, not the head bound
        big = task_body(description="x" * (4 * 1024 * 1024))
        assert tes.post("/tasks", json=big).status_code == 200
        assert tes.get(f"/tasks/{first.json()['id']}").json()["state"] == "QUEUED"
    body = json.dumps(task_body()).encode()
    with connect(server) as sock:
        sock.sendall(post_head(len(body)) + body[:10])
        time.sleep(BOUND * 0.4)
        sock.sendall(body[10:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_tesk_serve_applies_the_bounds_from_the_environment(tmp_path: Path) -> None:
    serving_process = Server(tmp_path, {"TESK_HEADER_TIMEOUT_SECONDS": "0.5", "TESK_LOCAL_MAX_TASKS": "0"})
    serving_process.start()
    try:
        with socket.create_connection(("127.0.0.1", serving_process.port), timeout=10) as sock:
            started = time.monotonic()
            answer = read_all(sock)
        assert status_and_body(answer)[0] == 408
        assert time.monotonic() - started < 3
    finally:
        serving_process.stop()


def test_a_short_head_bound_holds_after_a_longer_body_bound(tmp_path: Path) -> None:
    """Deadlines of different lengths on one keep-alive connection: each is kept, none is late."""
    config = TeskConfig.read(server={"data_dir": tmp_path, "header_timeout_seconds": 0.5, "body_timeout_seconds": 3})
    store = SqlTaskStore(config.database_url)
    app = create_app(compose(config, store=store, backend=RecordingBackend(store)))
    with serving(app, http=guarded_protocol(config.server)) as running, connect(running) as sock:
        body = json.dumps(task_body()).encode()
        sock.sendall(post_head(len(body)) + body[:5])
        time.sleep(1)  # past the head bound, within the body bound
        sock.sendall(body[5:])
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = read_all(sock)
        elapsed = time.monotonic() - started
    assert status_and_body(answer)[0] == 408
    assert 0.4 <= elapsed < 1.5, elapsed
