"""A task store whose operations are timed: every caller of it (the API, the backend) is measured.

`TimedStore(inner)` wraps the store the composition built, so the latency of `STORE_OPERATIONS` lands
in `tesk_store_operation_duration_seconds` without replacing any method of the inner store; every other
member of the `TaskStore` protocol is the inner store's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tesk.store import TaskStore
from tesk.telemetry import STORE_LATENCY, STORE_OPERATIONS


def _timed(inner: TaskStore, operation: str) -> Callable[..., Awaitable[Any]]:
    """`inner`'s operation, observed; the method is looked up on each call, so the wrapper always runs
    what the inner store has now."""
    histogram = STORE_LATENCY.labels(operation)

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await getattr(inner, operation)(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed


class TimedStore:
    """`inner`, with each operation of `STORE_OPERATIONS` observed in the store latency histogram."""

    def __init__(self, inner: TaskStore) -> None:
        self.inner = inner
        # The timed operations are this object's own attributes, made once here: a call costs one
        # coroutine frame more, and no lookup through __getattr__ (GetTask's fast lane calls `get`).
        for operation in STORE_OPERATIONS:
            setattr(self, operation, _timed(inner, operation))

    def __getattr__(self, name: str) -> Any:
        """Everything else (open, close, subscribe, the replica leases, ...) is the inner store's."""
        return getattr(self.inner, name)
