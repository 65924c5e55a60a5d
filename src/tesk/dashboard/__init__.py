"""The task dashboard at `/dashboard`: our own HTML, JavaScript and CSS (no CDN, no build step).

The page talks to the TES API with the caller's token (pasted, or the one Swagger UI's Authorize
button stored), so it shows exactly the tasks ListTasks would, and follows changes through the event
stream. The one route added here, `/dashboard/api/counts`, gives the counts by state for the header.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from tesk.api.deps import ServicesDep
from tesk.api.responses import json_response
from tesk.store import MAX_PAGE_SIZE, TaskQuery

STATIC = Path(__file__).parent / "static"
COUNT_LIMIT = 20000
"""Most tasks counted one page at a time for a caller who sees only some tasks (then shown as N+)."""
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

router = APIRouter()


@router.get("/dashboard/api/counts", include_in_schema=False)
async def counts(request: Request, services: ServicesDep) -> Response:
    """Tasks by state among those the caller may see; `complete` is false when counting stopped early."""
    caller = await services.access.caller(request)
    visibility = services.access.visibility(caller)
    store = services.store
    if visibility.all:
        by_state = await store.count_by_state()
        return json_response({"counts": {s.value: n for s, n in by_state.items()}, "complete": True})
    tallies: dict[str, int] = {}
    seen = 0
    token: str | None = None
    while seen < COUNT_LIMIT:
        page = await store.list(
            TaskQuery(page_size=MAX_PAGE_SIZE, page_token=token, visibility=visibility, with_body=False)
        )
        for task in page.tasks:
            tallies[task.state.value] = tallies.get(task.state.value, 0) + 1
        seen += len(page.tasks)
        token = page.next_page_token
        if token is None:
            break
    return json_response({"counts": tallies, "complete": token is None})


class DashboardFiles(StaticFiles):
    """The dashboard's files, with a Content-Security-Policy that allows only our own origin."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, with_policy)


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/dashboard", DashboardFiles(directory=str(STATIC), html=True), name="dashboard")

