"""A half-open connection is noticed (R1): client-side timeouts on requests and watches, TCP keepalive.

The peer here accepts connections and then says nothing, as an API server behind a load balancer
that dropped the connection does; without client-side timeouts each call below would hang forever.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tesk.backends.kubernetes.kube import Kube, Unreachable, keep_alive


@pytest.fixture
def silent_peer() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback server that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def kube_for(url: str) -> Kube:
    configuration = client.Configuration()
    configuration.host = url
    configuration.retries = False  # as load_api_client sets it
    api_client = client.ApiClient(configuration)
    keep_alive(api_client)
    return Kube(api_client, "default", attempts=2, request_timeout=(1.0, 1.0))


def test_a_request_to_a_silent_server_fails_within_its_timeout(silent_peer: tuple[str, list[socket.socket]]) -> None:
    url, accepted = silent_peer
    started = time.monotonic()
    with pytest.raises(Unreachable, match="could not be reached"):
        kube_for(url).get("Job", "task-x")
    assert time.monotonic() - started < 15  # 2 attempts of a 1 s read timeout and back-off (was: forever)
    assert accepted  # it did connect: the server just never answered


def test_a_watch_on_a_silent_connection_ends_after_its_timeout_plus_the_read_timeout(
        silent_peer: tuple[str, list[socket.socket]]) -> None:
    url, _ = silent_peer
    kube = kube_for(url)
    stop = threading.Event()
    events: list[object] = []
    done = threading.Event()

    def watch() -> None:
        try:
            events.extend(kube.watch("Pod", "a=b", "5", 1, stop))
        except Exception as exc:  # noqa: BLE001 (the test asserts on what came out)
            events.append(exc)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    assert done.wait(10), "the watch hung on a connection that says nothing"


def test_connections_carry_tcp_keepalive(silent_peer: tuple[str, list[socket.socket]]) -> None:
    url, _ = silent_peer
    kube = kube_for(url)
    pool = kube.api_client.rest_client.pool_manager.connection_from_url(url)
    conn = pool._get_conn()
    conn.connect()
    try:
        assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    finally:
        conn.close()
