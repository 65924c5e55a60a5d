"""The HTTP side of the client: one TES server, its errors as people read them, and following tasks.

Following a task uses the server's event stream (`/tasks/{id}/events`, a tesk extension) so a client
waiting for a task costs the server nothing between state changes; against a TES server without the
extension it falls back to polling with a growing interval.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Self

import httpx

import tesk

DEFAULT_URL = "http://localhost:8080"
API_PATH = "/ga4gh/tes/v1"
FINAL_STATES = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"})
STREAM_READ_TIMEOUT = 60.0
"""Longer than the server's keep-alive ping interval (15 s), so a quiet task does not look dead."""
POLL_START, POLL_MAX = 1.0, 10.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now" (overload, a proxy between replicas), worth the same request again."""
RETRY_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""A refused or reset connection: the server restarting or shedding load."""
RETRY_ATTEMPTS, RETRY_FIRST, RETRY_MAX = 6, 0.5, 10.0


class ClientError(Exception):
    """Something the user must hear about, already worded for them (the server's own message if any)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def api_base(url: str) -> str:
    """The TES base URL: `TESK_URL` may name the server (`http://host:8080`) or its TES path."""
    url = url.rstrip("/")
    if url.endswith((API_PATH, "/v1")):
        return url
    return url + API_PATH


@dataclass(frozen=True)
class Connection:
    url: str
    token: str | None

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> Connection:
        return cls(url or os.environ.get("TESK_URL") or DEFAULT_URL, token or os.environ.get("TESK_TOKEN") or None)


class TesClient:
    """A TES API client over httpx; every failure becomes a `ClientError` a person can act on."""

    def __init__(self, connection: Connection, timeout: float = 30.0, retry_first: float = RETRY_FIRST) -> None:
        self.base = api_base(connection.url)
        self.retry_first = retry_first
        headers = {"User-Agent": f"tesk-cli/{tesk.__version__}", "Accept": "application/json"}
        if connection.token:
            headers["Authorization"] = f"Bearer {connection.token}"
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One TES call, retried with backoff on 429/502/503/504 (after Retry-After, when given) and
        on a refused or reset connection. Every call here is safe to repeat: GETs, a cancel, and
        create, which sends an Idempotency-Key so a repeated POST gets the task the first one made."""
        pause = self.retry_first
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except RETRY_ERRORS as exc:
                if attempt == RETRY_ATTEMPTS:
                    raise self._unreachable(exc) from None
                wait = pause
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            else:
                if response.status_code not in RETRY_STATUSES or attempt == RETRY_ATTEMPTS:
                    if response.is_error:
                        raise error_from(response)
                    return response.json()
                wait = max(pause, retry_after(response))
            time.sleep(min(wait, RETRY_MAX))
            pause = min(pause * 2, RETRY_MAX)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _unreachable(self, exc: httpx.HTTPError) -> ClientError:
        return ClientError(
            f"cannot reach the TES server at {self.base} ({type(exc).__name__}: {exc}). "
            "Is it running (`tesk serve`)? Set TESK_URL to its address."
        )

    # -- TES operations ---------------------------------------------------------------------------

    def create(self, task: dict[str, Any]) -> str:
        key = {"Idempotency-Key": str(uuid.uuid4())}  # the same on every retry of this one create
        task_id: str = self.request("POST", "/tasks", json=task, headers=key)["id"]
        return task_id

    def get(self, task_id: str, view: str = "MINIMAL") -> dict[str, Any]:
        task: dict[str, Any] = self.request("GET", f"/tasks/{task_id}", params={"view": view})
        return task

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        page: dict[str, Any] = self.request("GET", "/tasks", params=params)
        return page

    def cancel(self, task_id: str) -> None:
        self.request("POST", f"/tasks/{task_id}:cancel")

    # -- following --------------------------------------------------------------------------------

    def follow(self, task_id: str, on_state: Callable[[str], None]) -> str:
        """Call `on_state` with each state the task enters until a final one, which is returned."""
        state = ""
        try:
            for state in self._stream_states(task_id):
                on_state(state)
                if state in FINAL_STATES:
                    return state
        except _NoEventStream:
            pass
        return self._poll(task_id, state, on_state)

    def _stream_states(self, task_id: str) -> Iterator[str]:
        """States from the event stream, reconnecting after a dropped connection (the server then
        sends the current state first, so nothing is lost)."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=STREAM_READ_TIMEOUT)
        last = ""
        while True:
            try:
                with self.http.stream("GET", f"/tasks/{task_id}/events", timeout=timeout) as response:
                    if response.status_code in (404, 405) and self._task_exists(task_id):
                        raise _NoEventStream
                    if response.is_error:
                        response.read()
                        raise error_from(response)
                    for name, data in sse_events(response.iter_lines()):
                        if name == "state" and data.get("state") != last:
                            last = data["state"]
                            yield last
                    if last in FINAL_STATES:
                        return
            except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError):
                pass  # a dropped stream: connect again
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            time.sleep(POLL_START)

    def _task_exists(self, task_id: str) -> bool:
        self.get(task_id)  # raises the server's own 404 message when the task is unknown
        return True

    def _poll(self, task_id: str, last: str, on_state: Callable[[str], None]) -> str:
        interval = POLL_START
        while True:
            state = str(self.get(task_id)["state"])
            if state != last:
                on_state(state)
                last, interval = state, POLL_START
            if state in FINAL_STATES:
                return state
            time.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX)


class _NoEventStream(Exception):
    """The server does not offer the event-stream extension."""


def retry_after(response: httpx.Response) -> float:
    """Seconds the server asked to wait (Retry-After in seconds; an HTTP date or nothing counts as 0)."""
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


def error_from(response: httpx.Response) -> ClientError:
    """The server's `message` when it sent the TES error body; otherwise the status and body start."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ClientError(body["message"], response.status_code)
    text = response.text.strip()[:300] or response.reason_phrase
    return ClientError(f"HTTP {response.status_code} from {response.request.url}: {text}", response.status_code)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, JSON data) pairs from the lines of a text/event-stream (comments skipped)."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                try:
                    yield name, json.loads("\n".join(data))
                except ValueError:
                    pass
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
