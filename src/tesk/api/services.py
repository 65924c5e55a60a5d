"""What one running API is made of: the objects `tesk.api.compose.compose` builds and the app serves.

Handlers receive a `Services` through the `tesk.api.deps.services_of` dependency; nothing of it lives
in module globals or `app.state`, so two apps in one process share nothing but the Prometheus registry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tesk.api.access import Access
from tesk.api.hub import EventHub
from tesk.auth.fastapi import SwaggerOAuth
from tesk.backends import Backend
from tesk.config import TeskConfig
from tesk.store import TaskStore


class KeyLocks:
    """One lock per (caller, Idempotency-Key) while a request with it is in flight on this server, so a
    retry that arrives before the first attempt finished waits for it instead of making a second task."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, owner: str, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get((owner, key), (asyncio.Lock(), 0))
        self._locks[(owner, key)] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[(owner, key)]
            if users == 1:
                del self._locks[(owner, key)]
            else:
                self._locks[(owner, key)] = (lock, users - 1)


@dataclass(frozen=True)
class Services:
    """The configuration and the services built from it, handed to `create_app`."""

    config: TeskConfig
    store: TaskStore
    """Timed (`tesk.store.timed.TimedStore`); the backend writes through the same object."""
    backend: Backend
    access: Access
    hub: EventHub
    service_info: dict[str, Any]
    """The GetServiceInfo body, built once: it changes only with the configuration."""
    oauth: SwaggerOAuth | None = None
    """Swagger UI's Authorize button and the OpenAPI security schemes; None: no login in Swagger UI."""
    idempotency_locks: KeyLocks = field(default_factory=KeyLocks)
