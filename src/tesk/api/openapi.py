"""The OpenAPI document, completed where FastAPI cannot know what the server answers.

FastAPI describes its routes from their signatures; here the document gains what they do not show:
the two operations served without a FastAPI route (CreateTask, GetTask), one schema per task view
(a MINIMAL or BASIC task is not a valid `tesTask`: `executors` is required there), and every status
code each operation really sends, with the error body. FastAPI's 422 is dropped: validation errors
are answered 400 (see `tesk.api.app`). With authentication, the security schemes of
`tesk.auth.fastapi.swagger_oauth` are declared and the protected operations gain 401, 403 and 503.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tesk.auth.fastapi import SwaggerOAuth
from tesk.models import CreateTaskResponse, Task

SCHEMAS = "#/components/schemas/"
TASK_VIEWS: dict[str, Any] = {
    "anyOf": [{"$ref": SCHEMAS + "TaskMinimal"}, {"$ref": SCHEMAS + "TaskBasic"}, {"$ref": SCHEMAS + "Task"}]
}
"""A task in the view the request asked for (`view`, default MINIMAL). FULL is the spec's `tesTask`;
a BASIC task is one too, less some fields, so this is anyOf, not oneOf."""

def _absent(*names: str) -> dict[str, Any]:
    """A schema that any object lacking all of `names` matches."""
    return {"allOf": [{"not": {"required": [name]}} for name in names]}


VIEW_SCHEMAS: dict[str, dict[str, Any]] = {
    "TaskMinimal": {
        "title": "TaskMinimal",
        "description": "A task in the MINIMAL view (the default of GetTask and ListTasks): only its id and state.",
        "type": "object",
        "required": ["id", "state"],
        "properties": {"id": {"type": "string"}, "state": {"$ref": SCHEMAS + "State"}},
        "additionalProperties": False,
    },
    "TaskBasic": {
        "title": "TaskBasic",
        "description": "A task in the BASIC view: the FULL task without `inputs[].content`, `logs[].system_logs` "
        "and the executors' `stdout` and `stderr` (see `tesk.models.render_task`).",
        "allOf": [
            {"$ref": SCHEMAS + "Task"},
            {
                "properties": {
                    "inputs": {"items": _absent("content")},
                    "logs": {
                        "items": {
                            **_absent("system_logs"),
                            "properties": {"logs": {"items": _absent("stdout", "stderr")}},
                        }
                    },
                }
            },
        ],
    },
}

ERROR_BODY: dict[str, Any] = {
    "title": "ErrorResponse",
    "description": "Every error answer: what happened and what to do, and the status again (TESK's shape).",
    "type": "object",
    "required": ["message", "status_code"],
    "properties": {"message": {"type": "string"}, "status_code": {"type": "integer"}},
}

_MEANING = {
    400: "The request is invalid; the message names the field or parameter and the rule it broke.",
    404: "No task with this id.",
    413: "The request body is over TESK_MAX_BODY_BYTES.",
    500: "The backend refused the task (the message says why); the task is recorded as SYSTEM_ERROR.",
    503: "The backend cannot take tasks now; retry later.",
}

OPERATION_ERRORS: dict[str, tuple[int, ...]] = {
    "GetServiceInfo": (),
    "ListTasks": (400,),
    "CreateTask": (400, 413, 500, 503),
    "GetTask": (400, 404),
    "CancelTask": (404, 413),
    "StreamTaskEvents": (404,),
    "StreamEvents": (),
}
"""Status codes besides 200 that each operation sends without authentication. Any known path answers
405 with `Allow` to a method it does not take."""


def error_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response object of an error answer."""
    return {
        "description": description or _MEANING[status],
        "content": {"application/json": {"schema": {"$ref": SCHEMAS + "ErrorResponse"}}},
    }


CREATE_TASK_OPENAPI: dict[str, Any] = {
    "summary": "CreateTask",
    "operationId": "CreateTask",
    "tags": ["TES"],
    "description": "Create a new task. The user provides a Task document, which the server uses as a basis "
    "and adds additional fields.",
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": SCHEMAS + "Task"}}}},
    "responses": {
        "200": {
            "description": "The new task's id",
            "content": {"application/json": {"schema": {"$ref": SCHEMAS + "CreateTaskResponse"}}},
        }
    },
}

GET_TASK_OPENAPI: dict[str, Any] = {
    "summary": "GetTask",
    "operationId": "GetTask",
    "tags": ["TES"],
    "description": "Get a single task, based on providing the exact task ID string.",
    "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "view",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["MINIMAL", "BASIC", "FULL"], "default": "MINIMAL"},
        },
    ],
    "responses": {
        "200": {"description": "The task, in the view asked for", "content": {"application/json": {"schema": TASK_VIEWS}}}
    },
}


AUTH_RESPONSES = {
    401: "No valid bearer token (the message says which check failed).",
    403: "The caller's groups or ownership do not allow this (the message names what is missing).",
    503: "The identity provider could not be reached to check the token, or too many checks are waiting "
    "for it; retry later.",
}


def add_security(schema: dict[str, Any], oauth: SwaggerOAuth, protected_prefixes: tuple[str, ...]) -> None:
    """Declare the security schemes, so Swagger UI offers its Authorize button.

    Operations under `protected_prefixes` (except service-info) are marked as needing a token, so
    Swagger UI sends the one the Authorize button obtained.
    """
    requirement: list[dict[str, list[str]]] = [{name: []} for name in oauth.security_schemes]
    schema.setdefault("components", {})["securitySchemes"] = oauth.security_schemes
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(protected_prefixes) and not path.endswith("/service-info"):
            for operation in operations.values():
                operation["security"] = requirement
                responses = operation.setdefault("responses", {})
                for status, description in AUTH_RESPONSES.items():
                    responses.setdefault(str(status), error_response(status, description))


def build_openapi(
    app: FastAPI, prefixes: tuple[str, ...], oauth: SwaggerOAuth | None = None
) -> dict[str, Any]:
    """The whole document of `app`, whose TES operations are published under `prefixes[0]` (the other
    prefixes serve the same operations and stay out of the document); with `oauth`, its security."""
    prefix = prefixes[0]
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    paths = schema["paths"]
    paths.setdefault(f"{prefix}/tasks/{{id}}", {})["get"] = deepcopy(GET_TASK_OPENAPI)
    paths.setdefault(f"{prefix}/tasks", {})["post"] = deepcopy(CREATE_TASK_OPENAPI)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for model in (Task, CreateTaskResponse):
        model_schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    components.update(VIEW_SCHEMAS)
    components["ErrorResponse"] = ERROR_BODY
    listed = components["ListTasksResponse"]["properties"]
    listed["tasks"]["items"] = TASK_VIEWS
    listed["next_page_token"] = {"type": "string", "description": "Present when more tasks follow."}
    for operations in paths.values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in OPERATION_ERRORS.get(operation.get("operationId", ""), ()):
                responses.setdefault(str(status), error_response(status))
    if oauth is not None:
        add_security(schema, oauth, prefixes)
    return schema
