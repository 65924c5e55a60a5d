"""The FastAPI application: TES routes, Swagger UI with local assets, health, and error bodies."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tesk
from tesk.api.events import EVENT_PREFIX
from tesk.api.events import router as events_router
from tesk.api.fastlane import TaskReadFastLane, TesApp
from tesk.api.metrics import MetricsMiddleware, metrics_router
from tesk.api.responses import error_response, internal_error_response, json_response
from tesk.api.routes import create_task, router, validation_message
from tesk.api.services import Services
from tesk.dashboard import install_dashboard
from tesk.errors import ApiError

log = logging.getLogger("tesk.api")

TES_PREFIXES = ("/ga4gh/tes/v1", "/v1")
def legacy_service_info(info: dict[str, Any]) -> dict[str, Any]:
    """service-info in TES 0.3's shape: py-tes 0.4 reads it and raises on any other key."""
    return {"name": info["name"], "doc": info.get("description", ""), "storage": info["storage"]}


class BodyLimit:
    """Refuse request bodies over the configured size before they are read into memory."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # Read the whole body here (bounded by the limit) and replay it, so an over-long streamed
        # body is refused with our message instead of surfacing as a parse error deep in the app.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        error = ApiError(413, f"Request body over this server's limit of {self.limit} bytes; send a smaller task.")
        response = json_response(error.body(), error.status_code)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(services: Services) -> TesApp:
    """The application serving `services` (built by `tesk.api.compose.compose`).

    One lifespan starts them in order: the hub subscribes to the store first (so it sees the changes the
    backend makes while it reconciles at start-up), then the store opens and the backend starts; they stop
    in the reverse order."""
    store, backend, access = services.store, services.backend, services.access

    @asynccontextmanager
    async def lifespan(app: TesApp) -> AsyncIterator[None]:
        async with services.hub.running():
            await store.open()
            await backend.start()
            # Everything loaded so far lives as long as the server: move it out of the collector's
            # reach, so the garbage collection that requests trigger does not rescan it every time.
            gc.collect()
            gc.freeze()
            app.ready = True
            try:
                yield
            finally:
                app.ready = False
                await backend.stop()
                await store.close()
                await access.aclose()

    fast_lane = TaskReadFastLane(TES_PREFIXES, store, access)
    app = TesApp(
        services=services,
        fast_lane=fast_lane,
        tes_prefixes=TES_PREFIXES,
        title="tesk: GA4GH Task Execution Service",
        version=tesk.__version__,
        description="TES 1.1 API (also under `/v1` for Funnel-style clients). Errors: "
        '`{"message": "...", "status_code": N}`.',
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    legacy = legacy_service_info(services.service_info)

    async def service_info_alias(request: Request) -> Response:
        return json_response(services.service_info)

    async def service_info_0_3(request: Request) -> Response:
        return json_response(legacy)

    for prefix in TES_PREFIXES:
        # TES 0.3's route, which py-tes 0.4 (Snakemake, Toil, cwl-tes) reads; the fast lane leaves it
        # to the router, since `service-info` is no task id.
        app.add_api_route(f"{prefix}/tasks/service-info", service_info_0_3, methods=["GET"], include_in_schema=False)
        app.router.add_route(f"{prefix}/tasks", create_task, methods=["POST"], include_in_schema=False)
        # GET takes the fast lane; this route answers HEAD and tells the router the path exists (405).
        app.router.add_route(
            f"{prefix}/tasks/{{id:task_id}}", fast_lane.endpoint, methods=["GET"], include_in_schema=False
        )
        app.include_router(router, prefix=prefix, include_in_schema=prefix == TES_PREFIXES[0], tags=["TES"])
    # Nextflow asks for {endpoint}/service-info at the root.
    app.add_api_route("/service-info", service_info_alias, methods=["GET"], include_in_schema=False)
    # Extensions (issue 8): event streams, /metrics, /dashboard.
    app.include_router(events_router, prefix=EVENT_PREFIX, tags=["Extensions"])
    app.include_router(metrics_router())
    install_dashboard(app)

    _add_health(app, services)
    _add_swagger(app, services.oauth.init_oauth if services.oauth is not None and services.oauth.init_oauth else None)
    _add_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(BodyLimit, limit=services.config.server.max_body_bytes)
    return app


def _add_health(app: FastAPI, services: Services) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        if not request.app.ready:
            return json_response({"status": "starting"}, 503)
        try:
            await services.store.get("readyz-probe")
        except Exception as exc:  # noqa: BLE001 - the probe must answer 503, whatever the store raised
            log.warning("readiness probe: the task store does not answer: %s", exc)
            return json_response({"status": "store unavailable"}, 503)
        return json_response({"status": "ready"})


SWAGGER_UI_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI 5 as shipped in the fastapi-offline wheel (no CDN). Version 5 is needed to render the
OpenAPI 3.1 document FastAPI emits; swagger-ui-bundle's 4.x showed only "Unable to render this
definition"."""


def _add_swagger(app: FastAPI, init_oauth: dict[str, Any] | None) -> None:
    @app.get("/swagger-ui/oauth2-redirect.html", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.mount("/swagger-ui", StaticFiles(directory=str(SWAGGER_UI_ASSETS)), name="swagger-ui")

    @app.get("/", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="tesk — TES API",
            swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/swagger-ui/favicon.png",
            oauth2_redirect_url="/swagger-ui/oauth2-redirect.html",
            init_oauth=init_oauth,
            # Kept in localStorage so the dashboard (same origin) can use the token too.
            swagger_ui_parameters={"persistAuthorization": True},
        )


_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of this path takes (Starlette's 405 names only the first route's).

    Asked of the router itself, one method at a time, so included routers count as their routes do.
    """
    routes = [route for route in app.router.routes if not isinstance(route, Mount)]
    return [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"message": validation_message(exc.errors()), "status_code": 400}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        headers: dict[str, str] = {}
        if exc.status_code == 404:
            message = f"No such route: {request.method} {request.url.path}. The TES API is under /ga4gh/tes/v1."
        elif exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
            message = f"Method {request.method} is not allowed on {request.url.path}; it takes {headers['Allow']}."
        response = json_response({"message": message, "status_code": exc.status_code}, exc.status_code)
        response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return internal_error_response()

