"""GET /tasks/{id} served ahead of the router: the request clients repeat most.

Workflow engines poll every task every few seconds, so this one request decides how many tasks a
server can follow. Measured on this machine, FastAPI's route dispatch (the route table, the
exception middleware, the exit-stack middleware) cost more than the work of the request itself, so
this middleware, the outermost one we add, answers it directly with the same `get_task` endpoint,
before those layers, and records it in the API latency metric itself. Errors are answered as
everywhere else (`error_response`); anything unexpected still reaches the server's error handler,
which sits outside every user middleware.
"""

from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tesk.api.routes import error_response, get_task
from tesk.errors import ApiError
from tesk.metrics import observe_api_request, route_template


class TaskReadFastLane:
    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        alternatives = "|".join(re.escape(p) for p in prefixes)
        # `/v1/tasks/service-info` is py-tes 0.4's service-info, not a task: it goes on to the router.
        self.pattern = re.compile(rf"(?:{alternatives})/tasks/(?P<id>(?!service-info$)[^/]+)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = self.pattern.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope["endpoint"] = get_task
        scope["path_params"] = {"id": match["id"]}
        try:
            response = await get_task(Request(scope, receive))
        except ApiError as exc:
            response = error_response(exc)
        observe_api_request("GET", route_template(scope), response.status_code, time.perf_counter() - started)
        await response(scope, receive, send)
