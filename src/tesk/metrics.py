"""Prometheus metrics served at `/metrics`: what an operator needs to see that tesk is healthy.

The metric objects live at module level in the default registry, so any part of tesk can count what
only it sees: the Kubernetes backend calls `count_kubernetes_request`, the filer calls
`count_staged_bytes`. Figures that live in the store (tasks by state, queue length) are read at scrape
time rather than tracked, so they stay right after a restart and across replicas sharing a store.

API latency is labelled by route *template* (`/ga4gh/tes/v1/tasks/{id}`), never the raw path, so the
number of series does not grow with the number of tasks. It is the time to the response's first byte,
which for an event stream is the time to open it rather than how long the client stayed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tesk.models import State

if TYPE_CHECKING:
    from tesk.api.events import EventHub, Listener
    from tesk.store import TaskStore

log = logging.getLogger(__name__)

TASKS = Gauge("tesk_tasks", "Tasks in the store, by state (read from the store at scrape time).", ["state"])
TASK_STATE_CHANGES = Counter(
    "tesk_task_state_changes_total", "State changes made through this server, by the state entered.", ["state"]
)
TASK_DURATION = Histogram(
    "tesk_task_duration_seconds",
    "Time from a task's creation to its final state, by final state.",
    ["state"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
)
API_LATENCY = Histogram(
    "tesk_api_request_duration_seconds",
    "Time to the first byte of API responses, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STORE_LATENCY = Histogram(
    "tesk_store_operation_duration_seconds",
    "Duration of task store operations (including waits for the write lock and group commit).",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BACKEND_QUEUE = Gauge(
    "tesk_backend_queue_length", "Tasks accepted but not yet started by the backend.", ["backend"]
)
KUBERNETES_REQUESTS = Counter(
    "tesk_kubernetes_api_requests_total",
    "Kubernetes API requests made by this process, by verb, resource and HTTP status code.",
    ["verb", "resource", "code"],
)
STAGED_BYTES = Counter(
    "tesk_filer_staged_bytes_total",
    "Bytes the filer moved in this process, by URL scheme and direction (in = inputs, out = outputs).",
    ["scheme", "direction"],
)
CALLBACK_DELIVERIES = Counter(
    "tesk_callback_deliveries_total",
    "Callback POSTs, by outcome: delivered, retried (an attempt failed and will be repeated), "
    "failed (gave up), refused (host not allowed).",
    ["outcome"],
)
EVENT_STREAMS = Gauge("tesk_event_streams", "Open Server-Sent Event streams.")

STORE_OPERATIONS = ("create", "get", "list", "update", "ids_in_states", "count_by_state")
UNMATCHED_ROUTE = "<unmatched>"


def count_kubernetes_request(verb: str, resource: str, code: int) -> None:
    """Count one Kubernetes API call; `verb` as Kubernetes names them (get, list, watch, create, ...)."""
    KUBERNETES_REQUESTS.labels(verb=verb, resource=resource, code=str(code)).inc()


def count_staged_bytes(scheme: str, direction: str, size: int) -> None:
    """Count bytes the filer transferred; `direction` is "in" (inputs) or "out" (outputs)."""
    STAGED_BYTES.labels(scheme=scheme, direction=direction).inc(size)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


_API_CHILDREN: dict[tuple[str, str, int], Any] = {}


def observe_api_request(method: str, route: str, status: int, seconds: float) -> None:
    """Record one API request under its route template.

    Labelled children are looked up once per (method, route, status) and kept: `labels()` takes a
    lock and builds a key on every call, which is most of the cost on a fast route. Methods outside
    HTTP's usual set count as OTHER, so no client can grow the number of series.
    """
    method = method if method in HTTP_METHODS else "OTHER"
    key = (method, route, status)
    child = _API_CHILDREN.get(key)
    if child is None:
        child = _API_CHILDREN[key] = API_LATENCY.labels(method, route, str(status))
    child.observe(seconds)


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


def _metrics_guard() -> Callable[[Request], Awaitable[None]]:
    from tesk.auth.fastapi import metrics_dependency

    return metrics_dependency()


def metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False, dependencies=[Depends(_metrics_guard())])
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
