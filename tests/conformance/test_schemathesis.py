"""schemathesis (property-based) against the live server, using the official TES 1.1 spec file.

Every operation gets generated requests, valid and invalid; the server must never answer 5xx, and
every documented (200) answer must match the spec's schema. Bounded to stay well under a minute.

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

import httpx
import pytest
import schemathesis
import yaml
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tesk.models import State
from tests.api.conftest import Api
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
            if is_minimal(params):
                assert_minimal(got.json())
            else:
                schema["/tasks/{id}"]["GET"].validate_response(got)
        listed = live.tes.get("/tasks", params={**params, "page_size": 1})
        assert listed.status_code == 200 and listed.json()["next_page_token"], listed.text
        if is_minimal(params):
            assert_minimal(listed.json()["tasks"][0])
        else:
            schema["/tasks"]["GET"].validate_response(listed)
    full = live.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert full["logs"][0]["outputs"][0]["size_bytes"] == "12"
    cancelled = live.tes.post(f"/tasks/{queued}:cancel")
    schema["/tasks/{id}:cancel"]["POST"].validate_response(cancelled)
    schema["/service-info"]["GET"].validate_response(live.tes.get("/service-info"))


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
