"""Prometheus metrics: what an operator needs to see that tesk is healthy (served by `tesk.api.metrics`).

The metric objects live at module level in the default registry, so any part of tesk can count what
only it sees: the Kubernetes backend calls `count_kubernetes_request`, the filer calls
`count_staged_bytes`. This module imports no web framework, so a backend, the filer or a taskmaster
pod can count without loading the API. Figures that live in the store (tasks by state, queue length)
are read at scrape time rather than tracked, so they stay right after a restart and across replicas
sharing a store.

API latency is labelled by route *template* (`/ga4gh/tes/v1/tasks/{id}`), never the raw path, so the
number of series does not grow with the number of tasks. It is the time to the response's first byte,
which for an event stream is the time to open it rather than how long the client stayed.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
EXECUTOR_PEAK_MEMORY = Histogram(
    "tesk_executor_peak_memory_bytes",
    "Peak memory of each executor of a task that reached a final state, by that state; only executors "
    "whose backend measured it (the tesk.executor.<i>.peak_memory_bytes log metadata key).",
    ["state"],
    buckets=tuple(float(2**power) for power in range(24, 37)),  # 16 MiB, 32 MiB, ... 64 GiB
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
