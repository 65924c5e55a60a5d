"""The HTTP side of the metrics: `/metrics`, request timing, store timing and the task event consumer.

The metric objects are in `tesk.telemetry`, which every layer may import; this module is the API's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tesk.api.hub import EventHub, Listener
from tesk.models import State
from tesk.store import TaskStore
from tesk.telemetry import (
    BACKEND_QUEUE,
    STORE_LATENCY,
    STORE_OPERATIONS,
    TASK_DURATION,
    TASK_STATE_CHANGES,
    TASKS,
    observe_api_request,
)

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


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _timed(operation: str, method: F) -> F:
    histogram = STORE_LATENCY.labels(operation)

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    wrapper.__dict__["_tesk_timed"] = True
    return wrapper  # type: ignore[return-value]


def instrument_store(store: TaskStore) -> None:
    """Time the store's operations on this store object, so every caller (API, backend) is measured.

    The bound methods are replaced on the instance only; the class and other stores are untouched.
    Calling it twice does not time twice.
    """
    for operation in STORE_OPERATIONS:
        method = getattr(store, operation, None)
        if method is not None and not getattr(method, "_tesk_timed", False):
            setattr(store, operation, _timed(operation, method))


async def watch_task_events(hub: EventHub, listener: Listener) -> None:
    """Count state changes and observe the duration of each task that reaches a final state."""
    while True:
        event = await listener.get()
        TASK_STATE_CHANGES.labels(event.state.value).inc()
        if not event.state.is_terminal:
            continue
        stored = await event.stored()
        if stored is None or stored.task.creation_time is None:
            continue
        created = stored.task.creation_time
        ended = _end_time(stored.task.logs) or datetime.now(UTC)
        TASK_DURATION.labels(event.state.value).observe(max(0.0, (ended - created).total_seconds()))


def _end_time(logs: list[Any] | None) -> datetime | None:
    for task_log in reversed(logs or []):
        if task_log.end_time is not None:
            end: datetime = task_log.end_time
            return end
    return None


async def _refresh_store_gauges(app: FastAPI) -> None:
    """Tasks by state and the backend's queue, read now (a restart or another replica cannot skew them)."""
    store = app.state.store
    backend = app.state.backend
    counts: dict[State, int] = await store.count_by_state()
    for state in State:
        TASKS.labels(state.value).set(counts.get(state, 0))
    queue_length = getattr(backend, "queue_length", None)
    queued = queue_length() if callable(queue_length) else counts.get(State.QUEUED, 0)
    BACKEND_QUEUE.labels(backend.name).set(queued)


async def _metrics_guard(request: Request) -> None:
    """Open unless `TESK_METRICS_REQUIRE_AUTH` asks for a valid token."""
    access = request.app.state.access
    settings = getattr(access, "settings", None)
    if settings is not None and settings.metrics_require_auth:
        await access.caller(request)


def metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False, dependencies=[Depends(_metrics_guard)])
    async def metrics(request: Request) -> Response:
        """Prometheus text format (version 0.0.4) of every tesk metric and the process collectors."""
        await _refresh_store_gauges(request.app)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_metrics(app: FastAPI) -> None:
    """Serve `/metrics`, time requests and store operations, and follow task events (needs the hub)."""
    app.include_router(metrics_router())
    app.add_middleware(MetricsMiddleware)
    instrument_store(app.state.store)
    hub: EventHub = app.state.events
    hub.add_consumer("metrics", watch_task_events)
