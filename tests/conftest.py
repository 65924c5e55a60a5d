"""Fixtures shared by every test area: a real HTTP server on 127.0.0.1 for a tesk app."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving an app in a thread, with its lifespan, on a random loopback port."""

    def __init__(self, app: FastAPI, **options: Any) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@contextmanager
def serving(app: FastAPI, **options: Any) -> Iterator[ServerThread]:
    """`app` served on loopback; `options` go to uvicorn's Config (e.g. `http=` as `tesk serve` sets it)."""
    server = ServerThread(app, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client(base_url: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=30, **kwargs)


# The throwaway PostgreSQL server (marker `postgres`), shared by every area that tests on PostgreSQL.
from tests.pg import fresh_postgres_url, postgres_server, postgres_url  # noqa: F401
