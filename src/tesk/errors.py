"""Errors that reach clients, as the seed's JSON body `{"message": ..., "status_code": N}`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with an HTTP status and a message that tells the client what to fix."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "status_code": self.status_code}


class BadRequest(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def task_not_found(task_id: str) -> NotFound:
    return NotFound(f"Task {task_id!r} not found. Check the id (GET /tasks lists the tasks you can see).")


class ServiceUnavailable(ApiError):
    """503 with Retry-After: the server cannot take the request now, and a retry in a moment may work.

    Clients (and the `tesk` client) retry these; a 500 would tell them the request itself is wrong.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(503, message)
        self.headers = {"Retry-After": str(retry_after)}
