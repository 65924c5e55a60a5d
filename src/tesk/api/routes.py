"""The TES 1.1 operations. Served under `/ga4gh/tes/v1` and, for Funnel-style clients, `/v1`.

Handlers read only the store (no backend call on GET or LIST) and answer with ready-made JSON
responses, so FastAPI's response validation does not sit on the hot path; the response models are
declared for the OpenAPI document only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from tesk.api.access import Caller
from tesk.api.callbacks import check_callback
from tesk.api.deps import ServicesDep, services_of, visible_task
from tesk.api.responses import json_response
from tesk.api.services import Services
from tesk.backends import BackendError
from tesk.errors import ApiError, BadRequest, ServiceUnavailable
from tesk.failures import Failure, refusal_reason
from tesk.limits import check_time_limits
from tesk.models import (
    ACTIVE_STATES,
    CLIENT_REQUEST,
    ListTasksResponse,
    ServiceInfo,
    State,
    Task,
    TaskLog,
    View,
    notes_entry,
    render_task,
)
from tesk.store import MAX_PAGE_SIZE, InvalidPageToken, StoredTask, TaskQuery, new_task_id

log = logging.getLogger("tesk.api")

router = APIRouter()


@router.get("/service-info", response_model=ServiceInfo, summary="GetServiceInfo", operation_id="GetServiceInfo")
async def get_service_info(services: ServicesDep) -> Response:
    """Information about this TES service: versions, storage it can stage, backend parameters."""
    return json_response(services.service_info)


@router.get(
    "/tasks",
    response_model=ListTasksResponse,
    summary="ListTasks",
    operation_id="ListTasks",
)
async def list_tasks(
    request: Request,
    services: ServicesDep,
    name_prefix: str | None = None,
    state: Annotated[str | None, Query()] = None,
    tag_key: Annotated[list[str] | None, Query()] = None,
    tag_value: Annotated[list[str] | None, Query()] = None,
    page_size: Annotated[str | None, Query(description="Less than 2048; default 256.")] = None,
    page_token: str | None = None,
    view: Annotated[str, Query(description="MINIMAL (default), BASIC or FULL")] = "MINIMAL",
) -> Response:
    """List the tasks the caller may see, newest first, filtered and paged as TES 1.1 defines."""
    caller = await services.access.caller(request)
    parsed_view = parse_view(view)
    keys, values = tag_key or [], tag_value or []
    if len(values) > len(keys):
        raise BadRequest("more tag_value than tag_key parameters; each tag_value pairs with the tag_key before it")
    tags = {k: (values[i] if i < len(values) else "") for i, k in enumerate(keys)}
    if any("\x00" in text for text in [name_prefix or "", *keys, *values]):
        raise BadRequest("name_prefix, tag_key and tag_value must not contain NUL characters")
    query = TaskQuery(
        name_prefix=name_prefix or None,
        state=parse_state(state),
        tags=tags,
        page_size=parse_page_size(page_size),
        page_token=page_token or None,
        visibility=services.access.visibility(caller),
        with_body=parsed_view is not View.MINIMAL,
    )
    try:
        page = await services.store.list(query)
    except InvalidPageToken as exc:
        raise BadRequest(str(exc)) from None
    if parsed_view is View.MINIMAL:
        tasks = [{"id": t.id, "state": t.state.value} for t in page.tasks]
    else:
        tasks = [render_task(t.task, parsed_view) for t in page.tasks]
    body: dict[str, Any] = {"tasks": tasks}
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return json_response(body)


IDEMPOTENCY_KEY = "idempotency-key"
MAX_IDEMPOTENCY_KEY_CHARS = 255


async def create_task(request: Request) -> Response:
    """CreateTask: the task starts QUEUED; only `id` is returned (py-tes rejects extra keys).

    A plain Starlette endpoint, described by `tesk.api.openapi.CREATE_TASK_OPENAPI`: the body is read as
    JSON whatever its Content-Type (`curl -d` sends a form type), and validated once, by the model.
    With an `Idempotency-Key` header (an extension), a retried request gets the task the first made.
    """
    services = services_of(request)
    task = parse_task(await request.body())
    caller = await services.access.caller(request)
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return await _create(services, task, caller, None)
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable characters (a UUID is a good key)"
        )
    async with services.idempotency_locks.hold(caller.user_id, key):
        made = await services.store.task_for_idempotency_key(caller.user_id, key)
        if made is not None:
            log.info("task %s: a retried request of %s (same Idempotency-Key) gets it again", made, caller.user_id)
            return json_response({"id": made})
        return await _create(services, task, caller, key)


async def _create(services: Services, task: Task, caller: Caller, key: str | None) -> Response:
    team = services.access.team_for_create(caller, task.tags or {})
    _check_content_sizes(task, services.config.server.max_content_bytes)
    backend = services.backend
    warnings = check_backend_parameters(task, backend.backend_parameters)
    check_parameter_values(task)
    check_callback(task.tags, services.config.callbacks)
    task.id = new_task_id()
    task.state = State.QUEUED
    task.creation_time = datetime.now(UTC)
    task.logs = [notes_entry(warnings)] if warnings else None
    store = services.store
    await store.create(task, caller.user_id, team, held_by=backend.replica_id, idempotency_key=key)
    stored = StoredTask(task.id, task.state, caller.user_id, team, None, task, held_by=backend.replica_id)
    try:
        await backend.submit(stored, warnings)
    except BackendError as exc:
        log.error("task %s: the %s backend refused it: %s", task.id, backend.name, exc)
        await store.update(
            task.id,
            state=State.SYSTEM_ERROR,
            logs=[TaskLog(system_logs=[*warnings, f"the {backend.name} backend refused the task: {exc}"],
                          metadata=Failure(refusal_reason(exc.status_code)).metadata())],
        )
        message = f"The task could not be started: {exc}"
        if exc.status_code == 503:
            raise ServiceUnavailable(message, retry_after=5) from None
        raise ApiError(exc.status_code, message) from None
    log.info("task %s created by %s", task.id, caller.user_id)
    return json_response({"id": task.id})


def parse_task(body: bytes) -> Task:
    """The request body as a Task, or a 400 that names each field and the rule it broke."""
    if not body.strip():
        raise BadRequest("The request body is empty; send a JSON task with at least 'executors'.")
    try:
        return Task.model_validate_json(body, context=CLIENT_REQUEST)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc.errors())) from None


def validation_message(errors: Sequence[Any]) -> str:
    """Name the field and the rule broken, in one line a person can act on."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "json_invalid":
            detail = error.get("ctx", {}).get("error", "parse error")
            where, msg = "body", f"the request body is not valid JSON ({detail})"
        elif where == "body" or error.get("type") == "model_type":
            msg = "the request body must be a JSON object describing a task"
        parts.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "Invalid request: " + "; ".join(parts) + more


@router.post("/tasks/{id}:cancel", summary="CancelTask", operation_id="CancelTask")
async def cancel_task(request: Request, services: ServicesDep, id: str) -> Response:
    """Cancel a task: CANCELING, then CANCELED once the backend has stopped it.

    A task that already finished is left as it is and the answer is still `{}`.
    """
    caller, stored = await visible_task(services.store, services.access, request, id)
    if stored.state.is_terminal:
        return json_response({})
    changed = await services.store.update(id, state=State.CANCELING, only_from=ACTIVE_STATES)
    if changed is not None:
        log.info("task %s: cancel requested by %s", id, caller.user_id)
        await services.backend.cancel(changed, by=caller.user_id)
    return json_response({})


def parse_view(value: str) -> View:
    try:
        return View(value.upper())
    except ValueError:
        raise BadRequest(f"view must be MINIMAL, BASIC or FULL (got {value!r})") from None


def parse_state(value: str | None) -> State | None:
    if not value:
        return None
    try:
        return State(value)
    except ValueError:
        choices = ", ".join(s.value for s in State)
        raise BadRequest(f"state must be one of {choices} (got {value!r})") from None


def parse_page_size(value: str | None) -> int:
    if value is None or value == "":
        return 256
    try:
        size = int(value)
    except ValueError:
        raise BadRequest(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE} (got {value!r})") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest(f"page_size must be from 1 to {MAX_PAGE_SIZE}: the spec says less than 2048 (got {size})")
    return size


def _check_content_sizes(task: Task, limit: int) -> None:
    for i, item in enumerate(task.inputs or []):
        if item.content is not None and len(item.content.encode()) > limit:
            raise BadRequest(
                f"inputs[{i}].content is {len(item.content.encode())} bytes, over this server's limit of "
                f"{limit} bytes; put the file somewhere the server can fetch and give its 'url' instead"
            )


def check_backend_parameters(task: Task, supported: frozenset[str]) -> list[str]:
    """Apply the spec's backend_parameters rules; returns the warnings for the task's system_logs.

    Keys are case-insensitive. Strict + unsupported key -> 400 before anything is stored. Not strict:
    unsupported keys are dropped (the spec says they shall not be stored or returned) with a warning.
    """
    resources = task.resources
    if resources is None or not resources.backend_parameters:
        return []
    unsupported = sorted(k for k in resources.backend_parameters if k.lower() not in supported)
    if not unsupported:
        return []
    if resources.backend_parameters_strict:
        listed = ", ".join(sorted(supported)) or "none"
        raise BadRequest(
            f"resources.backend_parameters has keys this server does not support: {', '.join(unsupported)}; "
            f"supported keys: {listed}. Remove them or set backend_parameters_strict to false."
        )
    resources.backend_parameters = {
        k: v for k, v in resources.backend_parameters.items() if k.lower() in supported
    }
    return [f"ignored unsupported backend_parameters: {', '.join(unsupported)}"]


def check_parameter_values(task: Task) -> None:
    """400 for a supported key whose value cannot mean anything (a time limit that is no number)."""
    try:
        check_time_limits(task)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
