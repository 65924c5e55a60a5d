"""The TES HTTP contract: endpoints x views, create/get/cancel semantics, aliases, service-info."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from tesk.models import State, TaskLog
from tests.api.conftest import Api, create, task_body

FULL_TASK = {
    "name": "full",
    "description": "every field",
    "inputs": [
        {"name": "in", "url": "https://example.org/a.txt", "path": "/data/a.txt", "type": "FILE"},
        {"path": "/data/inline.txt", "content": "hello inline"},
    ],
    "outputs": [
        {"url": "s3://bucket/out/", "path": "/data/out/*.txt", "path_prefix": "/data/out"},
        {"url": "s3://bucket/b.txt", "path": "/data/b.txt", "type": "FILE"},
    ],
    "resources": {"cpu_cores": 2, "ram_gb": 0.5, "disk_gb": 1.5, "preemptible": False, "zones": ["z1"]},
    "executors": [
        {
            "image": "alpine",
            "command": ["sh", "-c", "echo hi"],
            "workdir": "/data",
            "stdin": "/data/a.txt",
            "stdout": "/data/stdout",
            "stderr": "/data/stderr",
            "env": {"A": "1"},
            "ignore_error": True,
        }
    ],
    "volumes": ["/vol/A/"],
    "tags": {"project": "p1", "empty": ""},
}


def test_create_returns_only_id_and_task_is_queued(api: Api) -> None:
    r = api.tes.post("/tasks", json=task_body())
    assert r.status_code == 200
    assert list(r.json()) == ["id"]
    task_id = r.json()["id"]
    assert api.backend.submitted == [task_id]
    assert api.tes.get(f"/tasks/{task_id}").json() == {"id": task_id, "state": "QUEUED"}


def test_views_shape_a_task_as_the_spec_defines(api: Api) -> None:
    task_id = create(api.tes, **FULL_TASK)
    minimal = api.tes.get(f"/tasks/{task_id}").json()
    assert minimal == {"id": task_id, "state": "QUEUED"}
    assert api.tes.get(f"/tasks/{task_id}", params={"view": "MINIMAL"}).json() == minimal

    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    for key, value in FULL_TASK.items():
        if key != "resources":
            assert full[key] == value, key
    assert full["resources"] == {"cpu_cores": 2, "ram_gb": 0.5, "disk_gb": 1.5, "preemptible": False, "zones": ["z1"]}
    assert full["creation_time"].endswith("Z")
    assert full["inputs"][1]["content"] == "hello inline"

    basic = api.tes.get(f"/tasks/{task_id}", params={"view": "BASIC"}).json()
    assert "content" not in basic["inputs"][1]
    assert basic["executors"] == full["executors"]
    assert basic["tags"] == full["tags"]


def test_basic_view_drops_logs_that_full_keeps(api: Api) -> None:
    """BASIC omits executor stdout/stderr and system_logs; FULL has them; arrays are always present."""
    from tesk.models import ExecutorLog

    task_id = create(api.tes)
    logs = [TaskLog(logs=[ExecutorLog(exit_code=3, stdout="out", stderr="err")], system_logs=["why"])]
    asyncio.run(_update_in_new_loop(api, task_id, logs))
    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    basic = api.tes.get(f"/tasks/{task_id}", params={"view": "BASIC"}).json()
    assert full["logs"][0]["logs"][0] == {"exit_code": 3, "stdout": "out", "stderr": "err"}
    assert full["logs"][0]["system_logs"] == ["why"]
    assert full["logs"][0]["outputs"] == []
    assert basic["logs"][0]["logs"][0] == {"exit_code": 3}
    assert "system_logs" not in basic["logs"][0]
    assert basic["logs"][0]["outputs"] == []


async def _update_in_new_loop(api: Api, task_id: str, logs: list) -> None:
    from tesk.store.sql import SqlTaskStore

    store = SqlTaskStore(api.store.url)
    await store.open()
    try:
        await store.update(task_id, logs=logs)
    finally:
        await store.close()


def test_client_supplied_read_only_fields_are_ignored(api: Api) -> None:
    r = api.tes.post(
        "/tasks",
        json=task_body(id="mine", state="COMPLETE", creation_time="1999-01-01T00:00:00Z", logs=[{"logs": []}]),
    )
    task_id = r.json()["id"]
    assert task_id != "mine"
    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert full["state"] == "QUEUED"
    assert not full["creation_time"].startswith("1999")
    assert "logs" not in full


def test_logs_are_absent_until_a_run_attempt_starts(api: Api) -> None:
    """A client reading logs[0] straight after create must not meet `"logs": []` (an optional field)."""
    task_id = create(api.tes)
    for view in ("BASIC", "FULL"):
        assert "logs" not in api.tes.get(f"/tasks/{task_id}", params={"view": view}).json()
        listed = api.tes.get("/tasks", params={"view": view}).json()["tasks"]
        assert [t for t in listed if t["id"] == task_id and "logs" not in t], listed
    asyncio.run(_update_in_new_loop(api, task_id, [TaskLog(start_time=datetime.now(UTC))]))
    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert len(full["logs"]) == 1 and full["logs"][0]["logs"] == [] and full["logs"][0]["outputs"] == []


def test_unknown_fields_are_ignored_and_never_echoed(api: Api) -> None:
    body = task_body(surprise=1)
    body["executors"] = [{"image": "alpine", "command": ["true"], "extra": "x"}]
    task_id = create(api.tes, **{k: v for k, v in body.items() if k != "name"})
    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert "surprise" not in full
    assert "extra" not in full["executors"][0]


def test_null_tag_values_are_accepted_as_empty(api: Api) -> None:
    task_id = create(api.tes, tags={"parent_workflow_id": None})
    assert api.tes.get(f"/tasks/{task_id}", params={"view": "BASIC"}).json()["tags"] == {"parent_workflow_id": ""}


def test_fractional_cpu_is_rounded_up_and_returned_as_integer(api: Api) -> None:
    task_id = create(api.tes, resources={"cpu_cores": 1.2})
    assert api.tes.get(f"/tasks/{task_id}", params={"view": "BASIC"}).json()["resources"]["cpu_cores"] == 2


def test_unknown_task_is_404_on_get_and_cancel(api: Api) -> None:
    for r in (api.tes.get("/tasks/task-nope"), api.tes.post("/tasks/task-nope:cancel")):
        assert r.status_code == 404
        assert r.json()["status_code"] == 404
        assert "task-nope" in r.json()["message"]


def test_cancel_goes_through_the_backend_and_reaches_canceled(api: Api) -> None:
    task_id = create(api.tes)
    r = api.tes.post(f"/tasks/{task_id}:cancel")
    assert r.status_code == 200 and r.json() == {}
    assert api.backend.cancelled == [(task_id, "anonymousUser")]
    assert api.tes.get(f"/tasks/{task_id}").json()["state"] == "CANCELED"


def test_cancel_of_a_finished_task_changes_nothing(api: Api) -> None:
    task_id = create(api.tes)
    api.tes.post(f"/tasks/{task_id}:cancel")
    r = api.tes.post(f"/tasks/{task_id}:cancel")
    assert r.status_code == 200 and r.json() == {}
    assert len(api.backend.cancelled) == 1
    assert api.tes.get(f"/tasks/{task_id}").json()["state"] == "CANCELED"


def test_v1_alias_and_legacy_service_info(api: Api) -> None:
    task_id = create(api.tes)
    assert api.http.get(f"/v1/tasks/{task_id}").json()["id"] == task_id
    assert api.http.get("/v1/service-info").json()["type"]["artifact"] == "tes"



def test_tes_0_3_service_info_route_has_the_0_3_shape_only_there(api: Api) -> None:
    """py-tes 0.4 (Snakemake, Toil, cwl-tes) reads `{url}/v1/tasks/service-info` and accepts only
    TES 0.3's fields; every other service-info route keeps the 1.x body."""
    current = api.tes.get("/service-info").json()
    for prefix in ("/v1", "/ga4gh/tes/v1"):
        legacy = api.http.get(f"{prefix}/tasks/service-info")
        assert legacy.status_code == 200
        assert legacy.json() == {"name": "tesk", "doc": current["description"], "storage": current["storage"]}
    for route in ("/service-info", "/v1/service-info", "/ga4gh/tes/v1/service-info"):
        assert api.http.get(route).json() == current


def test_service_info_has_every_required_field(api: Api) -> None:
    info = api.tes.get("/service-info").json()
    for key in ("id", "name", "type", "organization", "version", "createdAt", "updatedAt", "storage"):
        assert key in info
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert info["organization"]["url"].startswith(("http://", "https://"))
    assert info["tesResources_backend_parameters"] == ["queue", "tesk.executor_time_limit", "tesk.time_limit", "vmsize"]
    allowed = {
        "id", "name", "type", "description", "organization", "contactUrl", "documentationUrl",
        "createdAt", "updatedAt", "environment", "version", "storage", "tesResources_backend_parameters",
    }
    assert set(info) <= allowed


def test_service_info_from_yaml_and_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.api.conftest import make_api

    yaml_file = tmp_path / "info.yaml"
    yaml_file.write_text("id: org.example.tes\nname: Example TES\norganization: {name: Example, url: https://example.org}\n")
    monkeypatch.setenv("TESK_SERVICE_INFO_NAME", "From env")
    for api in make_api(tmp_path, service_info={"file": yaml_file}):
        info = api.tes.get("/service-info").json()
        assert info["id"] == "org.example.tes"
        assert info["name"] == "From env"
        assert info["organization"] == {"name": "Example", "url": "https://example.org"}


def test_authorization_header_is_ignored_without_auth(api: Api) -> None:
    r = api.tes.post("/tasks", json=task_body(), headers={"Authorization": "Basic Tm9uZTpOb25l"})
    assert r.status_code == 200
    r = api.tes.get("/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 200 and len(r.json()["tasks"]) == 1


def test_backend_parameters_strict_and_lenient(api: Api) -> None:
    r = api.tes.post(
        "/tasks",
        json=task_body(resources={"backend_parameters": {"VmSize": "x", "gpu": "1"}, "backend_parameters_strict": True}),
    )
    assert r.status_code == 400
    assert "gpu" in r.json()["message"] and "vmsize" in r.json()["message"]
    assert api.backend.submitted == []

    task_id = create(api.tes, resources={"backend_parameters": {"VmSize": "x", "gpu": "1"}})
    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert full["resources"]["backend_parameters"] == {"VmSize": "x"}
    assert "gpu" in full["logs"][0]["system_logs"][0]

    task_id = create(api.tes, resources={"backend_parameters": {"QUEUE": "q"}, "backend_parameters_strict": True})
    assert api.tes.get(f"/tasks/{task_id}").json()["state"] == "QUEUED"


def test_the_backend_gets_the_apis_notes_with_the_task(api: Api) -> None:
    """The notes go to `submit` as an argument, and the stored task shows them until it runs."""
    noted = create(api.tes, resources={"backend_parameters": {"gpu": "1"}})
    plain = create(api.tes)
    assert api.backend.notes == {noted: ["ignored unsupported backend_parameters: gpu"], plain: []}
    full = api.tes.get(f"/tasks/{noted}", params={"view": "FULL"}).json()
    assert full["logs"] == [{"logs": [], "outputs": [], "system_logs": ["ignored unsupported backend_parameters: gpu"]}]


def test_backend_refusal_is_an_error_and_the_task_is_not_left_queued(api: Api) -> None:
    api.backend.refuse = "the cluster said no"
    r = api.tes.post("/tasks", json=task_body())
    assert r.status_code == 503
    assert "the cluster said no" in r.json()["message"]
    tasks = api.tes.get("/tasks", params={"view": "FULL"}).json()["tasks"]
    assert [t["state"] for t in tasks] == [State.SYSTEM_ERROR.value]
    assert "the cluster said no" in tasks[0]["logs"][0]["system_logs"][-1]
    assert tasks[0]["logs"][0]["metadata"] == {"tesk.failure_reason": "InternalError"}, "a 503 is no refusal of the task"


def test_a_time_limit_that_is_no_number_of_seconds_is_refused(api: Api) -> None:
    for value in ("soon", "0", "-5", "1.5"):
        r = api.tes.post("/tasks", json=task_body(resources={"backend_parameters": {"TESK.time_limit": value}}))
        assert r.status_code == 400, value
        assert "tesk.time_limit must be a whole number of seconds above 0" in r.json()["message"]
    assert api.backend.submitted == []
    task_id = create(api.tes, resources={"backend_parameters": {"tesk.executor_time_limit": "60"},
                                         "backend_parameters_strict": True})
    full = api.tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json()
    assert full["resources"]["backend_parameters"] == {"tesk.executor_time_limit": "60"}


def test_health_and_docs(api: Api) -> None:
    assert api.http.get("/healthz").json() == {"status": "ok"}
    assert api.http.get("/readyz").json() == {"status": "ready"}
    spec = api.http.get("/openapi.json").json()
    paths = spec["paths"]
    assert "/ga4gh/tes/v1/tasks/{id}:cancel" in paths
    assert not any(p.startswith("/v1/") for p in paths)
    page = api.http.get("/").text
    assert "/swagger-ui/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert api.http.get("/swagger-ui/swagger-ui-bundle.js").status_code == 200
