"""Push instead of polling: task state changes as Server-Sent Events, and the hub that fans them out.

Extensions to TES (documented in docs/extensions.md):
- `GET /ga4gh/tes/v1/tasks/{id}/events` streams one task: its current state first, then every change;
  the stream ends after a final state.
- `GET /ga4gh/tes/v1/events` streams every change of every task the caller may see.

Each event is `event: state` with data `{"id": ..., "state": ..., "time": ...}` (the same body a
callback receives). The `EventHub` subscribes to the store once and hands each change to every
listener: SSE streams, callbacks, metrics. A change is read from the store at most once however many
listeners need the task's owner, tags or times. Only changes made through this process's store are
seen; with several API replicas, each one streams the changes its own backend/controller makes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from tesk.api.routes import _access, _store, visible_task
from tesk.logs import task_context
from tesk.metrics import EVENT_STREAMS
from tesk.models import State
from tesk.store import StoredTask, TaskStore

log = logging.getLogger(__name__)

LISTENER_QUEUE_SIZE = 1000
CONSUMER_QUEUE_SIZE = 100_000
"""Callbacks and metrics may lag behind a burst of creates for a while; they must not lose changes."""
RETRY_MILLISECONDS = 2000
"""What EventSource clients wait before reconnecting."""
PING_SECONDS = 15
EVENT_PREFIX = "/ga4gh/tes/v1"


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


def _hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.events
    return hub


class EventStream(EventSourceResponse):
    """An SSE response that always completes its HTTP response, even when the server shuts down.

    sse-starlette stops streams on shutdown by cancelling them, which leaves the response unfinished
    and makes uvicorn log an error per open stream; closing the body ourselves keeps the log clean.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False

        async def tracking(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        await super().__call__(scope, receive, tracking)
        if not finished:
            with suppress(OSError, RuntimeError):  # the client may be gone already
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def _sse(event: TaskEvent) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event.payload()), event="state", retry=RETRY_MILLISECONDS)


OVERFLOW_EVENT = ServerSentEvent(
    data=json.dumps({"message": "this stream fell too far behind and was closed; read the tasks again and reconnect"}),
    event="overflow",
)

router = APIRouter()


@router.get(
    "/tasks/{id}/events",
    summary="StreamTaskEvents (tesk extension)",
    operation_id="StreamTaskEvents",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def task_events(request: Request, id: str) -> EventStream:
    """State changes of one task as Server-Sent Events: the current state, then each change.

    `event: state`, `data: {"id", "state", "time"}`. The stream ends after a final state. Same access
    rules as GetTask.
    """
    hub = _hub(request)
    listener = hub.listen(id)  # before reading the state, so no change can fall between the two
    try:
        _, stored = await visible_task(_store(request), _access(request), request, id)
    except BaseException:
        hub.unlisten(listener)
        raise
    first = TaskEvent(stored.id, stored.state, datetime.now(UTC), hub.store)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        with task_context(id), _open_stream(hub, listener):
            yield _sse(first)
            last = first.state
            while not last.is_terminal:
                event = await listener.get()
                if listener.overflowed:
                    yield OVERFLOW_EVENT
                    return
                if event.state != last:
                    last = event.state
                    yield _sse(event)

    return EventStream(stream(), ping=PING_SECONDS)


@router.get(
    "/events",
    summary="StreamEvents (tesk extension)",
    operation_id="StreamEvents",
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def all_events(request: Request) -> EventStream:
    """State changes of every task the caller may see (the tasks ListTasks would show them)."""
    access = _access(request)
    caller = await access.caller(request)
    visibility = access.visibility(caller)
    hub = _hub(request)
    listener = hub.listen()

    async def stream() -> AsyncIterator[ServerSentEvent | dict[str, Any]]:
        with _open_stream(hub, listener):
            yield {"comment": "listening"}
            while True:
                event = await listener.get()
                if listener.overflowed:
                    yield OVERFLOW_EVENT
                    return
                if not visibility.all:
                    stored = await event.stored()
                    if stored is None or not visibility.allows(stored.owner, stored.team):
                        continue
                yield _sse(event)

    return EventStream(stream(), ping=PING_SECONDS)


@contextmanager
def _open_stream(hub: EventHub, listener: Listener) -> Iterator[None]:
    """Count the open stream, and release its listener when the client goes away."""
    EVENT_STREAMS.inc()
    try:
        yield
    finally:
        EVENT_STREAMS.dec()
        hub.unlisten(listener)


def install_events(app: FastAPI) -> EventHub:
    """Add the event routes and run the hub (and its consumers) for as long as the app runs.

    The app's own lifespan (store, backend) runs inside the hub's, so the hub is subscribed before
    the backend reconciles tasks at start-up.
    """
    hub = EventHub(app.state.store)
    app.state.events = hub
    app.include_router(router, prefix=EVENT_PREFIX, tags=["Extensions"])
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        async with hub.running(), inner(application):
            yield

    app.router.lifespan_context = lifespan
    return hub
