"""The HTTP side of the metrics: `/metrics`, request timing and the task event consumer.

The metric objects are in `tesk.telemetry`, which every layer may import; this module is the API's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tesk.api.deps import ServicesDep
from tesk.api.hub import EventHub, Listener
from tesk.api.services import Services
from tesk.models import State, Task
from tesk.telemetry import (
    BACKEND_QUEUE,
    EXECUTOR_PEAK_MEMORY,
    TASK_DURATION,
    TASK_STATE_CHANGES,
    TASKS,
    observe_api_request,
)
from tesk.usage import usage_of

UNMATCHED_ROUTE = "<unmatched>"


class MetricsMiddleware:
    """Observes each HTTP request's time to first byte under its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        async def timed_send(message: Message) -> None:
            nonlocal observed
            if message["type"] == "http.response.start" and not observed:
                observed = True
                elapsed = time.perf_counter() - started
                observe_api_request(scope["method"], route_template(scope), message["status"], elapsed)
            await send(message)

        await self.app(scope, receive, timed_send)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/ga4gh/tes/v1/tasks/{id}`), or `<unmatched>`.

    The router writes what it matched (endpoint, path parameters) into the scope it was handed, the
    same dict this middleware holds; putting each parameter's name back in place of its value gives
    the template whatever way the route was declared or included (mounts give `/dashboard/{path}`).
    """
    if scope.get("endpoint") is None and scope.get("route") is None:
        return UNMATCHED_ROUTE
    path: str = scope["path"]
    for name, value in (scope.get("path_params") or {}).items():
        text = str(value)
        at = path.rfind(text)
        if at >= 0:
            path = path[:at] + "{" + name + "}" + path[at + len(text):]
    return path


async def watch_task_events(hub: EventHub, listener: Listener) -> None:
    """Count state changes; for each task that reaches a final state observe its duration and the
    peak memory of each executor whose backend measured it (an unmeasured executor adds no sample,
    so the histogram never counts a zero that was only a missing figure)."""
    while True:
        event = await listener.get()
        TASK_STATE_CHANGES.labels(event.state.value).inc()
        if not event.state.is_terminal:
            continue
        stored = await event.stored()
        if stored is not None:
            _observe_end(stored.task, event.state)


def _observe_end(task: Task, state: State) -> None:
    if task.creation_time is not None:
        ended = _end_time(task.logs) or datetime.now(UTC)
        TASK_DURATION.labels(state.value).observe(max(0.0, (ended - task.creation_time).total_seconds()))
    last_log = task.logs[-1] if task.logs else None
    for index in range(len(task.executors)):
        usage = usage_of(last_log, index)
        if usage is not None and usage.peak_memory_bytes is not None:
            EXECUTOR_PEAK_MEMORY.labels(state.value).observe(usage.peak_memory_bytes)


def _end_time(logs: list[Any] | None) -> datetime | None:
    for task_log in reversed(logs or []):
        if task_log.end_time is not None:
            end: datetime = task_log.end_time
            return end
    return None


async def _refresh_store_gauges(services: Services) -> None:
    """Tasks by state and the backend's queue, read now (a restart or another replica cannot skew them)."""
    store = services.store
    backend = services.backend
    counts: dict[State, int] = await store.count_by_state()
    for state in State:
        TASKS.labels(state.value).set(counts.get(state, 0))
    queue_length = getattr(backend, "queue_length", None)
    queued = queue_length() if callable(queue_length) else counts.get(State.QUEUED, 0)
    BACKEND_QUEUE.labels(backend.name).set(queued)


async def _metrics_guard(request: Request, services: ServicesDep) -> None:
    """Open unless `TESK_METRICS_REQUIRE_AUTH` asks for a valid token."""
    if services.config.auth.metrics_require_auth:
        await services.access.caller(request)


def metrics_router() -> APIRouter:
    """`/metrics`; the request timing is `MetricsMiddleware` and the store timing `tesk.store.timed`."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False, dependencies=[Depends(_metrics_guard)])
    async def metrics(services: ServicesDep) -> Response:
        """Prometheus text format (version 0.0.4) of every tesk metric and the process collectors."""
        await _refresh_store_gauges(services)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
