"""py-tes (PyPI `py-tes`, the GA4GH Python client) against the live server.

py-tes is strict: it rejects unknown keys and nulls when it parses answers, so every call here
also checks that our JSON is what a real client accepts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import tes

from tests.api.conftest import Api, make_api
from tests.conformance.conftest import finish


def full_task() -> tes.Task:
    return tes.Task(
        name="pytes",
        description="made by py-tes",
        inputs=[
            tes.Input(url="s3://bucket/in.txt", path="/data/in.txt", type="FILE", name="in"),
            tes.Input(path="/data/inline.txt", content="hello"),
        ],
        outputs=[tes.Output(url="s3://bucket/out/", path="/data/out", type="DIRECTORY")],
        resources=tes.Resources(cpu_cores=1, ram_gb=0.5, disk_gb=2, preemptible=False, zones=["z"]),
        executors=[
            tes.Executor(
                image="alpine",
                command=["sh", "-c", "echo hi"],
                workdir="/data",
                stdout="/data/out/stdout",
                env={"GREETING": "hi"},
            )
        ],
        volumes=["/scratch"],
        tags={"client": "py-tes"},
    )


@pytest.fixture(params=["", "/ga4gh/tes/v1"], ids=["base-url", "full-url"])
def client(request: pytest.FixtureRequest, live: Api) -> tes.HTTPClient:
    """py-tes given the server's base URL (it tries /ga4gh/tes/v1 first) or the full API URL."""
    return tes.HTTPClient(live.url + request.param, timeout=10)


def test_create_get_list_cancel(client: tes.HTTPClient, live: Api) -> None:
    task_id = client.create_task(full_task())
    assert isinstance(task_id, str) and task_id.startswith("task-")
    assert task_id in live.backend.submitted

    minimal = client.get_task(task_id, view="MINIMAL")
    assert (minimal.id, minimal.state, minimal.name, minimal.executors) == (task_id, "QUEUED", None, None)

    basic = client.get_task(task_id, view="BASIC")
    assert basic.name == "pytes" and basic.description == "made by py-tes"
    assert basic.executors[0].command == ["sh", "-c", "echo hi"]
    assert basic.executors[0].env == {"GREETING": "hi"}
    assert basic.inputs[0].url == "s3://bucket/in.txt"
    assert basic.inputs[1].content is None, "BASIC must not carry inputs[].content"
    assert basic.outputs[0].type == "DIRECTORY"
    assert basic.resources.cpu_cores == 1 and basic.resources.ram_gb == 0.5
    assert basic.volumes == ["/scratch"] and basic.tags == {"client": "py-tes"}
    assert basic.creation_time is not None and basic.creation_time.tzinfo is not None

    full = client.get_task(task_id, view="FULL")
    assert full.inputs[1].content == "hello"

    listed = client.list_tasks(view="BASIC", page_size=50)
    mine = [t for t in listed.tasks if t.id == task_id]
    assert len(mine) == 1 and mine[0].name == "pytes"
    assert all(t.executors for t in listed.tasks)
    minimal_list = client.list_tasks()
    assert all(t.state and t.id and t.name is None for t in minimal_list.tasks)

    assert client.cancel_task(task_id) is None
    assert client.get_task(task_id, view="MINIMAL").state == "CANCELED"
    assert [c[0] for c in live.backend.cancelled].count(task_id) == 1
    assert client.cancel_task(task_id) is None, "cancelling a finished task answers 200 {}"
    assert client.wait(task_id, timeout=5).state == "CANCELED"


def test_full_view_of_a_finished_task_parses_with_logs(client: tes.HTTPClient, live: Api) -> None:
    task_id = client.create_task(full_task())
    finish(live, task_id)
    full = client.get_task(task_id, view="FULL")
    assert full.state == "COMPLETE"
    log = full.logs[0]
    assert log.system_logs == ["pulled alpine"] and log.metadata == {"node": "n1"}
    assert log.start_time.tzinfo is not None
    assert log.logs[0].exit_code == 0 and log.logs[0].stdout == "hi\n"
    assert log.outputs[0].size_bytes == 12 and log.outputs[0].path == "/data/out/a"
    basic = client.get_task(task_id, view="BASIC")
    assert basic.logs[0].system_logs is None and basic.logs[0].logs[0].stdout is None
    assert basic.logs[0].logs[0].exit_code == 0


def test_list_pages_with_page_token(client: tes.HTTPClient) -> None:
    made = {client.create_task(full_task()) for _ in range(3)}
    seen: list[str] = []
    token = None
    while True:
        page = client.list_tasks(page_size=2, page_token=token)
        seen += [t.id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert made <= set(seen) and len(seen) == len(set(seen))


def test_service_info_parses(client: tes.HTTPClient) -> None:
    info = client.get_service_info()
    assert info.type == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert info.organization["url"].startswith(("http://", "https://"))
    assert info.id and info.name and info.version
    assert info.tes_resources_backend_parameters == ["queue", "tesk.executor_time_limit", "tesk.time_limit", "vmsize"]
    assert isinstance(info.storage, list)


def test_credentials_a_client_always_sends_are_ignored_without_auth(live: Api) -> None:
    """With authentication off, py-tes's Basic or Bearer header must not get in the way."""
    for client in (
        tes.HTTPClient(live.url, user="None", password="None"),
        tes.HTTPClient(live.url, token="not-a-real-token"),
    ):
        task_id = client.create_task(full_task())
        assert client.get_task(task_id, view="MINIMAL").state == "QUEUED"


def test_errors_reach_py_tes_as_http_errors(client: tes.HTTPClient) -> None:
    with pytest.raises(requests.HTTPError) as unknown:
        client.get_task("task-does-not-exist")
    answer = unknown.value.response
    assert answer is not None and answer.status_code == 404
    assert "task-does-not-exist" in answer.json()["message"]
    with pytest.raises(requests.HTTPError) as bad:
        client.create_task(tes.Task(executors=[tes.Executor(image="alpine", command=[])]))
    answer = bad.value.response
    assert answer is not None and answer.status_code == 400
    assert "command" in answer.json()["message"]


@pytest.mark.postgres
def test_round_trip_on_a_postgresql_store(tmp_path: Path, fresh_postgres_url: str) -> None:
    """The same client calls against a server whose store is PostgreSQL."""
    for api in make_api(tmp_path, database_url=fresh_postgres_url):
        pg_client = tes.HTTPClient(api.url)
        task_id = pg_client.create_task(full_task())
        assert pg_client.get_task(task_id, view="FULL").inputs[1].content == "hello"
        assert [t.id for t in pg_client.list_tasks(view="BASIC").tasks] == [task_id]
        pg_client.cancel_task(task_id)
        assert pg_client.get_task(task_id, view="MINIMAL").state == "CANCELED"
