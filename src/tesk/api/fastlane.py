"""GetTask, answered before the application's middleware stack: the request clients repeat most.

Workflow engines poll every task every few seconds, so this one request decides how many tasks a
server can follow. Measured on this machine, FastAPI's layers around a route (error, telemetry and
body-limit middleware, the exit stack, the route table) cost more than the work of the request
itself, and so did Starlette's Request, query and Response objects. `TesApp` therefore hands this
request to `TaskReadFastLane`, which reads the task with the store and access objects it was built
with, writes the ASGI messages itself, records the request in the API latency metric, and answers
errors exactly as the application's handlers do. `tesk.api.openapi.GET_TASK_OPENAPI` describes it in
the OpenAPI document, since no FastAPI route does.
"""

from __future__ import annotations

import logging
import re
import time
from json.encoder import encode_basestring
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tesk.api.access import Access
from tesk.api.deps import visible_task
from tesk.api.openapi import build_openapi
from tesk.api.responses import error_response, internal_error_response, json_bytes
from tesk.api.routes import parse_view
from tesk.api.services import Services
from tesk.errors import ApiError
from tesk.models import View, render_task
from tesk.store import TaskStore
from tesk.telemetry import observe_api_request

log = logging.getLogger("tesk.api")

_VIEW_OF_QUERY = {b"": View.MINIMAL} | {f"view={v.value}".encode(): v for v in View}
"""The query strings clients send, parsed once; anything else goes through the full parser."""

_JSON_HEADERS = (b"content-type", b"application/json")


TASK_ID = r"(?!service-info$)[^/]+(?<!:cancel)"
"""A task id in a path: `{prefix}/tasks/service-info` is TES 0.3 service-info (py-tes 0.4) and
`.../{id}:cancel` is CancelTask, neither is GetTask; both go on to the router."""


class TaskIdConvertor(Convertor[str]):
    """`{id:task_id}` in a route: the ids the fast lane takes, so the router agrees with it."""

    regex = TASK_ID

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("task_id", TaskIdConvertor())


def _view(query_string: bytes) -> View:
    view = _VIEW_OF_QUERY.get(query_string)
    if view is not None:
        return view
    values = [v for k, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if k == "view"]
    return parse_view(values[-1]) if values else View.MINIMAL


class TaskReadFastLane:
    def __init__(self, prefixes: tuple[str, ...], store: TaskStore, access: Access) -> None:
        alternatives = "|".join(re.escape(p) for p in prefixes)
        self.pattern = re.compile(rf"(?P<prefix>{alternatives})/tasks/(?P<id>{TASK_ID})")
        self.store, self.access = store, access

    def match(self, scope: Scope) -> re.Match[str] | None:
        """The path's match when this is a GetTask request, else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        return self.pattern.fullmatch(scope["path"])

    async def serve(self, app: FastAPI, match: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope["app"] = app
        route = match["prefix"] + "/tasks/{id}"
        try:
            body = await self._task_json(match["id"], scope, receive)
        except Exception as exc:  # the client must get an answer, as from the app's own handlers
            response: Response
            if isinstance(exc, ApiError):
                response = error_response(exc)
            else:
                log.exception("unhandled error on GET %s", scope["path"])
                response = internal_error_response()
            observe_api_request("GET", route, response.status_code, time.perf_counter() - started)
            await response(scope, receive, send)
            return
        observe_api_request("GET", route, 200, time.perf_counter() - started)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def endpoint(self, request: Request) -> Response:
        """GetTask through the router, which only HEAD reaches (GET takes the lane): the same answer."""
        body = await self._task_json(request.path_params["id"], request.scope, request.receive)
        return Response(body, media_type="application/json")

    async def _task_json(self, task_id: str, scope: Scope, receive: Receive) -> bytes:
        """GetTask's answer: the task shaped by the view; ApiError for 400/401/403/404/503."""
        view = _view(scope["query_string"])
        _, stored = await visible_task(self.store, self.access, Request(scope, receive), task_id)
        if view is View.MINIMAL:
            # Both values are safe to splice: the id is JSON-escaped, a state name is plain letters.
            return f'{{"id":{encode_basestring(stored.id)},"state":"{stored.state.value}"}}'.encode()
        return json_bytes(render_task(stored.task, view))


class TesApp(FastAPI):
    """FastAPI, except that GetTask skips the middleware stack (see the module docstring) and the
    OpenAPI document is `tesk.api.openapi`'s, built once, with the security schemes when given.

    `services` is what the handlers receive (`tesk.api.deps.services_of`); `ready` is true while the
    lifespan has everything started (`/readyz`)."""

    def __init__(
        self,
        *,
        services: Services,
        fast_lane: TaskReadFastLane,
        tes_prefixes: tuple[str, ...],
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.services = services
        self.fast_lane = fast_lane
        self.tes_prefixes = tes_prefixes
        self.ready = False

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = build_openapi(self, self.tes_prefixes, self.services.oauth)
        return self.openapi_schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.fast_lane.match(scope)
        if match is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast_lane.serve(self, match, scope, receive, send)
