"""The API's answers: compact JSON bodies and the error responses every pathway shares."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from tesk.errors import ApiError


def json_bytes(body: Any) -> bytes:
    """Compact UTF-8 JSON, the encoding of every answer of this API."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(json_bytes(body), status_code=status_code, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    """The JSON error body of an ApiError, with the headers it carries (WWW-Authenticate, Retry-After)."""
    response = json_response(exc.body(), exc.status_code)
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


def internal_error_response() -> Response:
    """The 500 answer; the details go to the server log only."""
    body = {"message": "Internal server error; the server log has the details.", "status_code": 500}
    response = json_response(body, 500)
    # After a 500, Starlette re-raises and uvicorn drops the connection: say so, or a client reusing
    # it gets "connection reset" on its next request.
    response.headers["connection"] = "close"
    return response
