"""`null` in every optional field a client may send, and fields only the server sets.

pydantic-tes (Galaxy, Pulsar) posts `task.model_dump_json()`, which writes every unset optional
field as `null`, server-set ones included. The objects and their optional fields are read from the
TES 1.1 spec itself, so a field the spec adds is covered without editing this test.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.api.conftest import Api
from tests.conformance.conftest import SPEC_DIR

SCHEMAS: dict[str, Any] = yaml.safe_load((SPEC_DIR / "tes-1.1.openapi.yaml").read_text())["components"]["schemas"]

REQUIRED_VALUES: dict[str, dict[str, Any]] = {
    "tesExecutor": {"image": "alpine", "command": ["echo", "hi"]},
    "tesInput": {"path": "/data/in"},
    "tesOutput": {"path": "/data/out", "url": "s3://bucket/out"},
    "tesResources": {},
}
"""The least a client must send in each object the client writes (the task's `logs` are the server's)."""

SERVER_SET = ("id", "state", "logs", "creation_time")


def all_null(schema: str, **keep: Any) -> dict[str, Any]:
    """One object of `schema`: its required fields set, every other field `null` unless in `keep`."""
    spec = SCHEMAS[schema]
    required = set(spec.get("required", []))
    body: dict[str, Any] = {name: None for name in spec["properties"] if name not in required}
    body.update(REQUIRED_VALUES[schema])
    body.update(keep)
    assert required <= body.keys(), f"REQUIRED_VALUES misses a required field of {schema}"
    return body


def null_task() -> dict[str, Any]:
    task = {name: None for name in SCHEMAS["tesTask"]["properties"]}
    task["executors"] = [all_null("tesExecutor")]
    return task


def test_a_task_with_every_optional_field_null_is_accepted(api: Api) -> None:
    task = null_task()
    assert set(SERVER_SET) <= task.keys() and all(task[name] is None for name in SERVER_SET)
    response = api.tes.post("/tasks", json=task)
    assert response.status_code == 200, response.text
    full = api.tes.get(f"/tasks/{response.json()['id']}", params={"view": "FULL"}).json()
    assert full["state"] == "QUEUED" and full["id"] == response.json()["id"]
    assert full["executors"] == [{"image": "alpine", "command": ["echo", "hi"]}], "nulls are not echoed"
    assert None not in full.values() and "logs" not in full


def test_every_nested_object_with_its_optional_fields_null_is_accepted(api: Api) -> None:
    task = null_task()
    # The spec requires a url unless content is set, so one input keeps each.
    task["inputs"] = [
        all_null("tesInput", url="s3://bucket/in"),
        all_null("tesInput", path="/data/inline", content="hello"),
    ]
    task["outputs"] = [all_null("tesOutput")]
    task["resources"] = all_null("tesResources")
    task["volumes"] = None
    task["tags"] = {"parent_workflow_id": None}
    response = api.tes.post("/tasks", json=task)
    assert response.status_code == 200, response.text
    full = api.tes.get(f"/tasks/{response.json()['id']}", params={"view": "FULL"}).json()
    assert full["inputs"] == [
        {"path": "/data/in", "url": "s3://bucket/in"},
        {"path": "/data/inline", "content": "hello"},
    ]
    assert full["outputs"] == [{"path": "/data/out", "url": "s3://bucket/out"}]
    assert full["tags"] == {"parent_workflow_id": ""}
    assert "resources" not in full or full["resources"] == {}


def test_server_set_fields_are_ignored_whatever_they_hold(api: Api) -> None:
    """Not only null: a wrong type, an unknown state or a malformed log would not be stored either."""
    for junk in (
        {"id": 42, "state": "NOT_A_STATE", "logs": "none", "creation_time": "yesterday"},
        {"id": "mine", "state": "COMPLETE", "logs": [{"logs": [{"exit_code": "zero"}]}],
         "creation_time": "1999-01-01T00:00:00Z"},
    ):
        response = api.tes.post("/tasks", json=null_task() | junk)
        assert response.status_code == 200, response.text
        task_id = response.json()["id"]
        assert task_id.startswith("task-")
        full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
        assert full["state"] == "QUEUED" and not full["creation_time"].startswith("1999")
        assert "logs" not in full


def test_null_in_a_required_field_is_still_a_clear_400(api: Api) -> None:
    for task, field in (
        (null_task() | {"executors": None}, "executors"),
        ({"executors": [all_null("tesExecutor", image=None)]}, "executors.0.image"),
        ({"executors": [all_null("tesExecutor")], "inputs": [all_null("tesInput")]}, "inputs.0"),
        ({"executors": [all_null("tesExecutor")], "outputs": [all_null("tesOutput", url=None)]}, "outputs.0.url"),
    ):
        before = api.tes.get("/tasks").json()["tasks"]
        response = api.tes.post("/tasks", json=task)
        assert response.status_code == 400, response.text
        assert field in response.json()["message"]
        assert api.tes.get("/tasks").json()["tasks"] == before, "nothing was stored"
