"""The hub that fans the store's task state changes out to listeners: SSE streams, callbacks, metrics.

The `EventHub` subscribes to the store once and hands each change to every listener. A change is read
from the store at most once however many listeners need the task's owner, tags or times. Only changes
made through this process's store are seen; with several API replicas, each one sees the changes its
own backend/controller makes. Nothing here knows HTTP: the SSE routes are in `tesk.api.events`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tesk.models import State
from tesk.store import StoredTask, TaskStore

log = logging.getLogger("tesk.api.events")

LISTENER_QUEUE_SIZE = 1000
CONSUMER_QUEUE_SIZE = 100_000
"""Callbacks and metrics may lag behind a burst of creates for a while; they must not lose changes."""
@dataclass
class TaskEvent:
    """One state change. `stored()` reads the task once, shared by every listener that asks."""

    task_id: str
    state: State
    time: datetime
    store: TaskStore = field(repr=False)
    _fetch: asyncio.Future[StoredTask | None] | None = field(default=None, repr=False)

    async def stored(self) -> StoredTask | None:
        if self._fetch is None:
            self._fetch = asyncio.ensure_future(self.store.get(self.task_id))
        return await asyncio.shield(self._fetch)

    def payload(self) -> dict[str, str]:
        """The JSON body of an SSE event and of a callback POST."""
        return {
            "id": self.task_id,
            "state": self.state.value,
            "time": self.time.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }


class Listener:
    """A bounded queue of events for one consumer; a consumer that falls behind is told, not blocked.

    `task_id` set: only that task's changes (a per-task stream); None: every change.
    """

    def __init__(self, task_id: str | None = None, maxsize: int = LISTENER_QUEUE_SIZE) -> None:
        self.task_id = task_id
        self.queue: asyncio.Queue[TaskEvent] = asyncio.Queue(maxsize)
        self.overflowed = False

    def put(self, event: TaskEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            if not self.overflowed:
                log.warning(
                    "an event listener (%s) fell %d events behind; it misses the change of task %s and later ones",
                    self.task_id or "all tasks", self.queue.maxsize, event.task_id,
                )
            self.overflowed = True

    async def get(self) -> TaskEvent:
        return await self.queue.get()


Consumer = Callable[["EventHub", Listener], Awaitable[None]]


class EventHub:
    """Fans the store's state changes out to listeners; runs while the app runs."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._listeners: set[Listener] = set()
        self._by_task: dict[str, set[Listener]] = {}
        """Per-task listeners, so a change wakes only the streams of its own task."""
        self._consumers: dict[str, Consumer] = {}

    def listen(self, task_id: str | None = None, maxsize: int = LISTENER_QUEUE_SIZE) -> Listener:
        """Register a listener now: every change published after this call reaches it."""
        listener = Listener(task_id, maxsize)
        if task_id is None:
            self._listeners.add(listener)
        else:
            self._by_task.setdefault(task_id, set()).add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        if listener.task_id is None:
            self._listeners.discard(listener)
            return
        listeners = self._by_task.get(listener.task_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._by_task[listener.task_id]

    def add_consumer(self, name: str, consumer: Consumer) -> None:
        """A long-running coroutine fed by its own listener while the app runs (callbacks, metrics)."""
        self._consumers[name] = consumer

    def publish(self, task_id: str, state: State) -> None:
        event = TaskEvent(task_id, state, datetime.now(UTC), self.store)
        for listener in [*self._listeners, *self._by_task.get(task_id, ())]:
            listener.put(event)

    async def _pump(self) -> None:
        async for task_id, state in self.store.subscribe():
            self.publish(task_id, state)

    async def _supervise(self, name: str, consumer: Consumer) -> None:
        """Run a consumer; if it fails, log why and start it again rather than lose its events."""
        listener = self.listen(maxsize=CONSUMER_QUEUE_SIZE)
        try:
            while True:
                try:
                    await consumer(self, listener)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("the %s event consumer failed; restarting it", name)
                    await asyncio.sleep(1)
        finally:
            self.unlisten(listener)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self._pump(), name="tesk-events")]
        tasks += [asyncio.create_task(self._supervise(n, c), name=f"tesk-events-{n}") for n, c in self._consumers.items()]
        await asyncio.sleep(0)  # let the pump subscribe before the backend starts changing states
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
