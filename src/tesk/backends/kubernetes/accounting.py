"""Count the API server requests the API process makes, by Kubernetes verb and resource, for /metrics.

Counting happens where the official client sends its HTTP requests, so every call is seen once,
list and watch included, whichever part of the backend made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

Observe = Callable[[str, str, int], None]
"""observe(verb, resource, HTTP status)"""

_COLLECTION_VERBS = {"GET": "list", "DELETE": "deletecollection", "POST": "create"}
_OBJECT_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def request_kind(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a request URL, e.g. GET .../namespaces/tes/jobs?watch=true -> (watch, jobs)."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if "namespaces" in segments and segments.index("namespaces") + 2 < len(segments):
        rest = segments[segments.index("namespaces") + 2 :]
    else:
        rest = segments[-2:] if len(segments) >= 2 else segments
    resource = rest[0] if rest else "unknown"
    if len(rest) >= 3:
        resource = f"{rest[0]}/{rest[2]}"  # subresources: pods/log, jobs/status
    if method == "GET" and parse_qs(parts.query).get("watch", [""])[0] in ("true", "1"):
        return "watch", resource
    verbs = _COLLECTION_VERBS if len(rest) == 1 else _OBJECT_VERBS
    return verbs.get(method, method.lower()), resource


def count_requests(api_client: client.ApiClient, observe: Observe) -> None:
    """Wrap the client's REST transport so each request is passed to `observe` with its answer."""
    rest = api_client.rest_client
    send = rest.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        verb, resource = request_kind(method, url)
        try:
            response = send(method, url, *args, **kwargs)
        except client.ApiException as exc:
            observe(verb, resource, int(exc.status or 0))
            raise
        observe(verb, resource, int(getattr(response, "status", 200)))
        return response

    rest.request = counted  # type: ignore[method-assign]  # wrapping this client's transport is the point
