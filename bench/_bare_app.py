"""The baseline for bench/api.py: a bare Starlette route returning constant JSON."""

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"id":"task-01m8fq1pje7qxecnqdn3dtstg5","state":"QUEUED"}'


async def constant(request):  # type: ignore[no-untyped-def]
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/tasks/{id}", constant)])
