"""API errors as the Kubernetes API server reports them: an HTTP status plus a `Status` object.

Clients branch on `reason` (AlreadyExists, NotFound, Conflict, Gone, ...) and on `details`, so the
stand-in returns the same fields the real server does.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API request, rendered as a `meta/v1 Status` body with the matching HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        """The `Status` object the API server sends as the response body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    """404 for a missing object, worded like the API server (`jobs.batch "x" not found`)."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(group, plural)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    """409 when a create uses a name that is taken."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(group, plural)} "{name}" already exists',
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    """409 for an optimistic-concurrency failure (stale resourceVersion or a failed precondition)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
        details={"name": name, "group": group, "kind": plural},
    )


def invalid(group: str, kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 for an object that fails validation; `causes` are (field, message) pairs."""
    text = "; ".join(f"{field}: {message}" for field, message in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind}{"." + group if group else ""} "{name}" is invalid: {text}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        },
    )


def bad_request(message: str) -> ApiError:
    """400 for a malformed request (bad selector, bad body, missing container name for logs...)."""
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    """410 when a resourceVersion or continue token refers to compacted history."""
    return ApiError(410, "Expired", message)


def forbidden(group: str, plural: str, name: str, why: str) -> ApiError:
    """403 as `apierrors.NewForbidden` words it (admission and authorisation refusals): `pods "x" is
    forbidden: ...`, `pods is forbidden: ...` without a name, `forbidden: ...` without a resource; the
    details name what is set (Go omits the empty fields)."""
    if not plural:
        text = f"forbidden: {why}"
    elif not name:
        text = f"{_qualified(group, plural)} is forbidden: {why}"
    else:
        text = f'{_qualified(group, plural)} "{name}" is forbidden: {why}'
    details = {k: v for k, v in (("name", name), ("group", group), ("kind", plural)) if v}
    return ApiError(403, "Forbidden", text, details=details)
