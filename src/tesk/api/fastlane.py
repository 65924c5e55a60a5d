"""GET /tasks/{id} answered before the application's middleware stack: the request clients repeat most.

Workflow engines poll every task every few seconds, so this one request decides how many tasks a
server can follow. Measured on this machine, FastAPI's layers around a route (error, telemetry and
body-limit middleware, the exit stack, the route table) cost more than the work of the request
itself. `TesApp` therefore hands this request straight to the same `get_task` endpoint, records it in
the API latency metric, and answers errors exactly as the application's handlers do.
"""

from __future__ import annotations

import logging
import re
import time

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tesk.api.routes import error_response, get_task, internal_error_response
from tesk.errors import ApiError
from tesk.metrics import observe_api_request

log = logging.getLogger("tesk.api")


class TaskReadFastLane:
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        alternatives = "|".join(re.escape(p) for p in prefixes)
        # `/v1/tasks/service-info` is py-tes 0.4's service-info, not a task: it goes on to the router.
        self.pattern = re.compile(rf"(?P<prefix>{alternatives})/tasks/(?P<id>(?!service-info$)[^/]+)")

    def match(self, scope: Scope) -> re.Match[str] | None:
        """The path's match when this is a GetTask request, else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        return self.pattern.fullmatch(scope["path"])

    async def serve(self, app: FastAPI, match: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope["app"] = app
        scope["endpoint"] = get_task
        scope["path_params"] = {"id": match["id"]}
        response: Response
        try:
            response = await get_task(Request(scope, receive))
        except ApiError as exc:
            response = error_response(exc)
        except Exception:  # the client must get an answer, as from the app's own handler
            log.exception("unhandled error on GET %s", scope["path"])
            response = internal_error_response()
        route = match["prefix"] + "/tasks/{id}"
        observe_api_request("GET", route, response.status_code, time.perf_counter() - started)
        await response(scope, receive, send)


class TesApp(FastAPI):
    """FastAPI, except that GetTask skips the middleware stack (see the module docstring)."""

    def __init__(self, *, fast_lane: TaskReadFastLane, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fast_lane = fast_lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.fast_lane.match(scope)
        if match is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast_lane.serve(self, match, scope, receive, send)
