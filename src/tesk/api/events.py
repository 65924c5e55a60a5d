"""Push instead of polling: task state changes as Server-Sent Events, and the hub that fans them out.

Extensions to TES (documented in docs/extensions.md):
- `GET /ga4gh/tes/v1/tasks/{id}/events` streams one task: its current state first, then every change;
  the stream ends after a final state.
- `GET /ga4gh/tes/v1/events` streams every change of every task the caller may see.

Each event is `event: state` with data `{"id": ..., "state": ..., "time": ...}` (the same body a
callback receives). The streams are listeners of the `tesk.api.hub.EventHub`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Receive, Scope, Send

from tesk.api.deps import ServicesDep, visible_task
from tesk.api.hub import EventHub, Listener, TaskEvent
from tesk.logs import task_context
from tesk.telemetry import EVENT_STREAMS

RETRY_MILLISECONDS = 2000
"""What EventSource clients wait before reconnecting."""
PING_SECONDS = 15
EVENT_PREFIX = "/ga4gh/tes/v1"


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
async def task_events(request: Request, services: ServicesDep, id: str) -> EventStream:
    """State changes of one task as Server-Sent Events: the current state, then each change.

    `event: state`, `data: {"id", "state", "time"}`. The stream ends after a final state. Same access
    rules as GetTask.
    """
    hub = services.hub
    listener = hub.listen(id)  # before reading the state, so no change can fall between the two
    try:
        _, stored = await visible_task(services.store, services.access, request, id)
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
async def all_events(request: Request, services: ServicesDep) -> EventStream:
    """State changes of every task the caller may see (the tasks ListTasks would show them)."""
    caller = await services.access.caller(request)
    visibility = services.access.visibility(caller)
    hub = services.hub
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
