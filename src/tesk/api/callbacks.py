"""Per-task callbacks: a POST to a URL the task names, on every state change (a tesk extension).

A task asks for callbacks with the tag `tesk_callback_url` (a tag, not a backend parameter, so it
works the same on every backend and is visible in GetTask). The operator decides where tesk may send
requests: `TESK_CALLBACK_ALLOWED_HOSTS` lists host names (`*.example.org` for a domain's hosts;
`host:port` to pin a port). Without that list callbacks are off, and a task asking for one is refused
at create time (400), as is a URL whose host is not listed, so nobody learns about it only by silence.

Each POST carries `{"id", "state", "time"}` (the SSE event body) and an `X-Tesk-Delivery` header,
`<task id>/<state>`, the same on every retry so a receiver can drop duplicates. The changes of one task
are delivered in order; a failed attempt (connection error, 5xx, 429) is retried with exponential
backoff, other answers are final. Redirects are not followed, so the allow-list cannot be sidestepped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

import tesk
from tesk.config.callbacks import CallbackSettings
from tesk.errors import BadRequest
from tesk.logs import task_context
from tesk.telemetry import CALLBACK_DELIVERIES

if TYPE_CHECKING:
    from tesk.api.hub import EventHub, Listener, TaskEvent

log = logging.getLogger(__name__)

CALLBACK_TAG = "tesk_callback_url"


def host_allowed(url: str, patterns: list[str]) -> bool:
    """True when the URL is http(s) and its host (and port, when the pattern has one) is listed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    for pattern in patterns:
        name, _, want_port = pattern.partition(":")
        if want_port and want_port != str(port):
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def check_callback(tags: Mapping[str, str] | None, settings: CallbackSettings) -> None:
    """Refuse (400) a task whose callback URL this server will not call, saying what to change."""
    url = (tags or {}).get(CALLBACK_TAG)
    if url is None:
        return
    patterns = settings.host_patterns()
    if not patterns:
        raise BadRequest(
            f"tags.{CALLBACK_TAG}: this server does not send callbacks (the operator has not set "
            "TESK_CALLBACK_ALLOWED_HOSTS); remove the tag, or follow the task with "
            "GET /ga4gh/tes/v1/tasks/{id}/events instead"
        )
    if not host_allowed(url, patterns):
        raise BadRequest(
            f"tags.{CALLBACK_TAG}: {url!r} is not an http(s) URL on a host this server may call; "
            f"allowed hosts: {', '.join(patterns)}"
        )


class CallbackNotifier:
    """Delivers callbacks: one ordered queue per task, retries with backoff, bounded concurrency."""

    def __init__(self, settings: CallbackSettings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self._pending: dict[str, deque[tuple[str, dict[str, str]]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.max_concurrent)

    async def consume(self, hub: EventHub, listener: Listener) -> None:
        """The hub consumer: queue a delivery for each change of a task that has a callback URL."""
        async with httpx.AsyncClient(
            timeout=self.settings.timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": f"tesk/{tesk.__version__} (callbacks)"},
        ) as client:
            self._client = client
            try:
                while True:
                    await self._accept(await listener.get())
            finally:
                for worker in list(self._workers):
                    worker.cancel()
                await asyncio.gather(*self._workers, return_exceptions=True)

    async def _accept(self, event: TaskEvent) -> None:
        stored = await event.stored()
        url = (stored.task.tags or {}).get(CALLBACK_TAG) if stored is not None else None
        if not url:
            return
        if not host_allowed(url, self.settings.host_patterns()):
            CALLBACK_DELIVERIES.labels("refused").inc()
            log.warning("task %s: callback host of %s is no longer allowed; not sent", event.task_id, url)
            return
        queue = self._pending.get(event.task_id)
        if queue is not None:
            queue.append((url, event.payload()))
            return
        self._pending[event.task_id] = deque([(url, event.payload())])
        worker = asyncio.create_task(self._drain(event.task_id), name=f"tesk-callback-{event.task_id}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _drain(self, task_id: str) -> None:
        """Deliver one task's changes in order; the worker ends when its queue is empty."""
        queue = self._pending[task_id]
        with task_context(task_id):
            try:
                while queue:
                    url, payload = queue[0]
                    await self._deliver(task_id, url, payload)
                    queue.popleft()
            finally:
                self._pending.pop(task_id, None)

    async def _deliver(self, task_id: str, url: str, payload: dict[str, str]) -> None:
        delay = self.settings.backoff_seconds
        headers = {"X-Tesk-Delivery": f"{task_id}/{payload['state']}"}
        for attempt in range(1, self.settings.attempts + 1):
            async with self._slots:
                problem = await self._post(url, payload, headers)
            if problem is None:
                CALLBACK_DELIVERIES.labels("delivered").inc()
                return
            retryable, reason = problem
            if not retryable or attempt == self.settings.attempts:
                CALLBACK_DELIVERIES.labels("failed").inc()
                log.warning(
                    "task %s: callback for %s to %s failed after %d attempt(s): %s; giving up on it",
                    task_id, payload["state"], url, attempt, reason,
                )
                return
            CALLBACK_DELIVERIES.labels("retried").inc()
            log.info("task %s: callback to %s failed (%s); retrying in %.1fs", task_id, url, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.max_backoff_seconds)

    async def _post(self, url: str, payload: dict[str, str], headers: dict[str, str]) -> tuple[bool, str] | None:
        """None when delivered; else (worth retrying, why not)."""
        assert self._client is not None, "deliveries run only inside consume()"
        try:
            response = await self._client.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.is_success:
            return None
        retryable = response.status_code >= 500 or response.status_code == 429
        return retryable, f"HTTP {response.status_code}"
