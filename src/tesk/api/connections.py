"""Bounds on what one HTTP connection can hold: slow request heads, slow bodies, connections per client.

uvicorn times out idle keep-alive connections (`timeout_keep_alive`), but not a request whose head
arrives a byte at a time, nor one whose `Content-Length` promises more than is ever sent: such a
connection, and the request task waiting in `receive()`, would stay open for good. Nor does it limit
how many connections one client opens. `guarded_protocol` extends uvicorn's httptools protocol (the
one `uvicorn[standard]` runs, given to uvicorn as its `http` class) with three bounds, from
`tesk.config.ServerSettings`:

- the head of each request (request line and headers) must arrive within `TESK_HEADER_TIMEOUT_SECONDS`
  of the connection opening or of the request's first byte;
- its body within `TESK_BODY_TIMEOUT_SECONDS` of the end of the head;
- a client (peer address) may hold at most `TESK_MAX_CONNECTIONS_PER_CLIENT` connections (0: no cap).

A request that misses its deadline gets 408 and the connection is closed (if the application had
already begun its answer, the connection is just closed); a connection over the cap gets 429 with
`Retry-After` and is closed before anything is read. The answers carry tesk's JSON error body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tesk.config import ServerSettings

log = logging.getLogger("tesk.api")

_REASONS = {408: b"Request Timeout", 429: b"Too Many Requests"}


def raw_error(status: int, message: str, *extra_headers: tuple[str, str]) -> bytes:
    """A complete HTTP/1.1 error answer that closes the connection, with tesk's JSON body."""
    body = json.dumps({"message": message, "status_code": status}).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        *extra_headers,
    ]
    head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
    return head + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n" + body


def guarded_protocol(settings: ServerSettings) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the bounds of `settings` (one class per server)."""
    head_timeout = settings.header_timeout_seconds
    body_timeout = settings.body_timeout_seconds
    cap = settings.max_connections_per_client
    tick = min(head_timeout, body_timeout)
    open_per_client: Counter[str] = Counter()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # One timer per connection, firing at most `tick` after it was set, which is never after the
        # deadline of any request armed since (each is at least `tick` away). Arming and disarming for
        # each request just write `_due`, so the polled GetTask pays no timer of its own.
        _timer: asyncio.TimerHandle | None = None
        _due: float | None = None
        _part = "head"
        _limit = 0.0
        _counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and cap:
                if open_per_client[host] >= cap:
                    log.warning(
                        "client %s already holds %d connections (TESK_MAX_CONNECTIONS_PER_CLIENT); refused one more",
                        host,
                        cap,
                    )
                    transport.write(
                        raw_error(
                            429,
                            f"This client already holds {cap} connections to this server; close some or "
                            "reuse them, then retry.",
                            ("retry-after", "1"),
                        )
                    )
                    transport.close()
                    return
                open_per_client[host] += 1
                self._counted = host
            self._arm(head_timeout, "head")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._counted is not None:
                open_per_client[self._counted] -= 1
                if open_per_client[self._counted] <= 0:
                    del open_per_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(head_timeout, "head")

        def on_headers_complete(self) -> None:
            self._arm(body_timeout, "body")
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self, seconds: float, part: str) -> None:
            now = self.loop.time()
            self._part, self._limit, self._due = part, seconds, now + seconds
            if self._timer is None:
                self._timer = self.loop.call_at(now + tick, self._check)

        def _disarm(self) -> None:
            self._due = None

        def _check(self) -> None:
            self._timer = None
            if self._due is None:
                return
            now = self.loop.time()
            if now < self._due:
                self._timer = self.loop.call_at(min(self._due, now + tick), self._check)
                return
            self._due = None
            self._expired(self._limit, self._part)

        def _expired(self, seconds: float, part: str) -> None:
            if self.transport.is_closing():
                return
            cycle: Any = self.cycle
            if part == "head" and cycle is not None and not cycle.response_complete:
                # A pipelined request's head, behind one still being answered: its turn has not come.
                self._arm(seconds, part)
                return
            answered = part == "body" and cycle is not None and cycle.response_started
            client = "%s:%d" % self.client if self.client else "a client"
            log.warning("%s did not send the request %s within %.0f s; connection closed", client, part, seconds)
            if not answered:
                self.transport.write(
                    raw_error(
                        408,
                        f"The request {part} did not arrive within {seconds:g} s "
                        f"(TESK_{'HEADER' if part == 'head' else 'BODY'}_TIMEOUT_SECONDS); send it whole, faster.",
                    )
                )
            self.transport.close()

    return GuardedHttpToolsProtocol
