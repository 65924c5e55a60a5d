"""schemathesis (property-based) against the live server, using the official TES 1.1 spec file and
the server's own OpenAPI document.

Every operation gets generated requests, valid and invalid; the server must never answer 5xx, and
every documented (200) answer must match the spec's schema. Against its own document the server must
also send only the status codes it documents, each with the documented body, and every view of a
task must match the schema it publishes for that view. Bounded to stay well under a minute.

The schema is loaded at import (not with `schemathesis.pytest.from_fixture`, which breaks on
pytest 9: it sets `Function._nodeid`), so the live server's URL is passed per call.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
import yaml
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.config import TeskConfig
from tesk.models import State
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import Api, RecordingBackend
from tests.conformance.conftest import FULL_TASK, finish, offline_spec

MAX_EXAMPLES = int(os.environ.get("TESK_SCHEMATHESIS_EXAMPLES", "30"))
"""30 keeps the suite fast; set TESK_SCHEMATHESIS_EXAMPLES higher for a deeper hunt."""
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

_spec_dir = Path(tempfile.mkdtemp(prefix="tesk-spec-"))
atexit.register(shutil.rmtree, _spec_dir, True)
schema = schemathesis.openapi.from_path(offline_spec(_spec_dir))
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)


def tes_1_0_spec(into: Path) -> Path:
    """The TES 1.0 spec, less one rule 1.1 dropped: `type` is required in 1.0 inputs and outputs, but
    optional in 1.1, and a task created without it is answered without it (the filer detects it)."""
    path = offline_spec(into, "tes-1.0.openapi.yaml")
    spec = yaml.safe_load(path.read_text())
    for name in ("tesInput", "tesOutput"):
        spec["components"]["schemas"][name]["required"].remove("type")
    path.write_text(yaml.safe_dump(spec))
    return path


schema_1_0 = schemathesis.openapi.from_path(tes_1_0_spec(_spec_dir))
"""TES 1.0 clients are served too: their spec's schemas must hold for our answers as well."""
schema_1_0.config.generation.update(max_examples=max(MAX_EXAMPLES // 3, 5), deterministic=True)


def own_document(into: Path) -> dict[str, Any]:
    """The OpenAPI document a server publishes at /openapi.json (built without serving)."""
    config = TeskConfig.read(server={"data_dir": into})
    store = SqlTaskStore(config.database_url)
    document: dict[str, Any] = create_app(compose(config, store=store, backend=RecordingBackend(store))).openapi()
    return document


OWN_DOCUMENT = own_document(_spec_dir)
own = schemathesis.openapi.from_dict(OWN_DOCUMENT).exclude(operation_id=["StreamEvents", "StreamTaskEvents"])
"""What the server says of itself; the event streams are left out (they stay open by design)."""
own.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
OWN_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


MINIMAL_VIEW_OPERATIONS = {"ListTasks", "GetTask"}
"""Their MINIMAL answers are `{id, state}` as the spec's view text says, which its own tesTask schema
(executors required) contradicts; those answers are checked by `assert_minimal` instead."""


@schema.parametrize()
def test_generated_requests_get_no_server_error_and_spec_shaped_answers(
    case: schemathesis.Case, live: Api
) -> None:
    call_and_check(case, live)


@schema_1_0.parametrize()
def test_generated_tes_1_0_requests_get_spec_shaped_answers(case: schemathesis.Case, live: Api) -> None:
    call_and_check(case, live)


@own.parametrize()
def test_generated_requests_get_only_the_documented_answers(case: schemathesis.Case, live: Api) -> None:
    """Every status code and body the server sends is in its own document (views included)."""
    case.call_and_validate(base_url=live.url, checks=OWN_CHECKS)


def call_and_check(case: schemathesis.Case, live: Api) -> None:
    """No 5xx; a documented answer matches its schema, or, for MINIMAL views, is exactly {id, state}."""
    operation_id = case.operation.definition.raw.get("operationId")
    minimal = operation_id in MINIMAL_VIEW_OPERATIONS and is_minimal(case.query)
    checks = [not_a_server_error, content_type_conformance] if minimal else CHECKS
    response = case.call_and_validate(base_url=live.url + "/ga4gh/tes/v1", checks=checks)
    if minimal and response.status_code == 200:
        body = response.json()
        for task in body.get("tasks", [body]):
            assert_minimal(task)


def is_minimal(query: Mapping[str, object] | None) -> bool:
    return str((query or {}).get("view") or "MINIMAL").upper() == "MINIMAL"


def assert_minimal(task: dict[str, object]) -> None:
    assert set(task) == {"id", "state"}, task
    assert isinstance(task["id"], str) and task["state"] in {s.value for s in State}, task


def test_every_view_of_a_finished_task_matches_the_spec(live: Api) -> None:
    """Generated requests almost never hit an existing id; this checks the 200 answers that matter."""
    created = live.tes.post("/tasks", json=FULL_TASK)
    schema["/tasks"]["POST"].validate_response(created)
    task_id = created.json()["id"]
    finish(live, task_id)
    queued = live.tes.post("/tasks", json={"executors": [{"image": "alpine", "command": ["true"]}]}).json()[
        "id"
    ]
    for params in ({}, {"view": "MINIMAL"}, {"view": "BASIC"}, {"view": "FULL"}):
        for some_id in (task_id, queued):
            got = live.tes.get(f"/tasks/{some_id}", params=params)
            assert got.status_code == 200, got.text
            own["/ga4gh/tes/v1/tasks/{id}"]["GET"].validate_response(got)
            assert_view(got.json(), str(params.get("view", "MINIMAL")))
            if is_minimal(params):
                assert_minimal(got.json())
            else:
                schema["/tasks/{id}"]["GET"].validate_response(got)
        listed = live.tes.get("/tasks", params={**params, "page_size": 1})
        assert listed.status_code == 200 and listed.json()["next_page_token"], listed.text
        own["/ga4gh/tes/v1/tasks"]["GET"].validate_response(listed)
        assert_view(listed.json()["tasks"][0], str(params.get("view", "MINIMAL")))
        if is_minimal(params):
            assert_minimal(listed.json()["tasks"][0])
        else:
            schema["/tasks"]["GET"].validate_response(listed)
    full = live.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert full["logs"][0]["outputs"][0]["size_bytes"] == "12"
    cancelled = live.tes.post(f"/tasks/{queued}:cancel")
    schema["/tasks/{id}:cancel"]["POST"].validate_response(cancelled)
    schema["/service-info"]["GET"].validate_response(live.tes.get("/service-info"))


VIEW_COMPONENTS = {"MINIMAL": "TaskMinimal", "BASIC": "TaskBasic", "FULL": "Task"}


def view_schema(view: str) -> dict[str, Any]:
    """The published component of a view, resolvable on its own (with the document's components)."""
    return {"$ref": f"#/components/schemas/{VIEW_COMPONENTS[view]}", "components": OWN_DOCUMENT["components"]}


def assert_view(task: dict[str, Any], view: str) -> None:
    jsonschema.validate(task, view_schema(view))


def test_each_published_view_schema_tells_the_views_apart(live: Api) -> None:
    """A FULL task with inline content and logs is no BASIC task, a MINIMAL one is no FULL task, and a
    MINIMAL task has nothing but id and state."""
    task_id = live.tes.post("/tasks", json=FULL_TASK).json()["id"]
    finish(live, task_id)
    full = live.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    minimal = live.tes.get(f"/tasks/{task_id}").json()
    assert_view(full, "FULL")
    with pytest.raises(jsonschema.ValidationError):
        assert_view(full, "BASIC")
    for field in ("stdout", "stderr"):
        basic = live.tes.get(f"/tasks/{task_id}", params={"view": "BASIC"}).json()
        basic["logs"][0]["logs"][0][field] = "leaked"
        with pytest.raises(jsonschema.ValidationError):
            assert_view(basic, "BASIC")
    with pytest.raises(jsonschema.ValidationError):
        assert_view(minimal, "FULL")
    with pytest.raises(jsonschema.ValidationError):
        assert_view(minimal | {"name": "conformance"}, "MINIMAL")


def test_documented_paths_answer_405_with_allow_to_other_methods(live: Api) -> None:
    """Every path of the document, asked with a method it does not take: 405, `Allow` names the methods
    the document gives it (and HEAD where HEAD is answered), and the error body says so."""
    samples = {"{id}": "01abc"}
    tried = 0
    for template, operations in OWN_DOCUMENT["paths"].items():
        path = template.replace("{id}", samples["{id}"])
        documented = {method.upper() for method in operations}
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - documented:
            answer = live.http.request(method, path)
            assert answer.status_code == 405, (method, path, answer.status_code, answer.text)
            allow = set(answer.headers["Allow"].split(", "))
            assert documented <= allow <= documented | {"HEAD"}, (method, path, allow)
            if "HEAD" in allow:
                assert live.http.head(path).status_code != 405, path
            assert answer.json() == {
                "message": f"Method {method} is not allowed on {path}; it takes {answer.headers['Allow']}.",
                "status_code": 405,
            }
            tried += 1
    assert tried >= 20
    assert live.http.request("PUT", "/v1/tasks").headers["Allow"] == "GET, POST"
    assert live.http.request("GET", "/ga4gh/tes/v1/tasks/01abc:cancel").headers["Allow"] == "POST"


def test_head_of_a_task_answers_like_get(live: Api) -> None:
    task_id = live.tes.post("/tasks", json=FULL_TASK).json()["id"]
    head = live.tes.head(f"/tasks/{task_id}")
    got = live.tes.get(f"/tasks/{task_id}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert live.tes.head("/tasks/no-such-task").status_code == 404


def test_the_schema_checks_can_fail(live: Api) -> None:
    """Guard against a check that passes vacuously (e.g. an unresolved service-info $ref)."""
    info = live.tes.get("/service-info").json()
    del info["organization"]
    with pytest.raises(JsonSchemaError, match='"organization" is a required property'):
        schema["/service-info"]["GET"].validate_response(_fake(live, "/service-info", info))
    task_id = live.tes.post("/tasks", json=FULL_TASK).json()["id"]
    body = live.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    body["executors"][0]["command"] = "echo hi"
    with pytest.raises(JsonSchemaError, match='"echo hi" is not of type "array"'):
        schema["/tasks/{id}"]["GET"].validate_response(_fake(live, f"/tasks/{task_id}", body))


def _fake(live: Api, path: str, body: object) -> httpx.Response:
    """A response carrying `body`, as if the server had sent it."""
    response = httpx.Response(200, json=body, request=httpx.Request("GET", live.url + "/ga4gh/tes/v1" + path))
    response.elapsed = timedelta(0)
    return response
