"""Bad input: each a 4xx with a message that says what to fix, and the store left untouched."""

from __future__ import annotations

import base64

import pytest

from tests.api.conftest import Api, create, task_body


def stored_count(api: Api) -> int:
    return len(api.tes.get("/tasks", params={"page_size": 2047}).json()["tasks"])


def executor(**extra: object) -> dict[str, object]:
    return {"image": "alpine", "command": ["true"], **extra}


BAD_TASKS: list[tuple[str, object, str]] = [
    ("wrong type of name", task_body(name=5), "name"),
    ("missing executors", {"name": "x"}, "executors"),
    ("empty executors", task_body(executors=[]), "executors"),
    ("empty image", task_body(executors=[executor(image="")]), "image"),
    ("blank image", task_body(executors=[executor(image="  ")]), "image"),
    ("empty command", task_body(executors=[executor(command=[])]), "command"),
    ("command not strings", task_body(executors=[executor(command=["echo", 1])]), "command"),
    ("cpu as string", task_body(resources={"cpu_cores": "2"}), "cpu_cores"),
    ("unknown input type", task_body(inputs=[{"path": "/a", "url": "http://x/a", "type": "PIPE"}]), "type"),
    ("relative input path", task_body(inputs=[{"path": "data/a", "url": "http://x/a"}]), "absolute"),
    ("dotdot input path", task_body(inputs=[{"path": "/data/../etc/passwd", "url": "http://x/a"}]), ".."),
    ("input path is /", task_body(inputs=[{"path": "/", "url": "http://x/a"}]),
     "inputs[].path must name a file or folder below '/'"),
    ("output path is /", task_body(outputs=[{"path": "/", "url": "s3://b/o", "type": "DIRECTORY"}]),
     "outputs[].path must name a file or folder below '/'"),
    ("input without url or content", task_body(inputs=[{"path": "/a"}]), "url"),
    ("relative output path", task_body(outputs=[{"path": "out", "url": "s3://b/o"}]), "absolute"),
    ("output without url", task_body(outputs=[{"path": "/out"}]), "url"),
    ("wildcard without prefix", task_body(outputs=[{"path": "/o/*.txt", "url": "s3://b/"}]), "path_prefix"),
    ("relative volume", task_body(volumes=["vol"]), "volumes"),
    ("dotdot volume", task_body(volumes=["/vol/../x"]), "volumes"),
    ("relative workdir", task_body(executors=[executor(workdir="work")]), "workdir"),
    ("dotdot stdin", task_body(executors=[executor(stdin="/in/../../x")]), "stdin"),
    ("relative stdout", task_body(executors=[executor(stdout="out.txt")]), "stdout"),
    ("dotdot stderr", task_body(executors=[executor(stderr="/a/./b")]), "stderr"),
    ("body is a list", [task_body()], "JSON object"),
]


@pytest.mark.parametrize(("case", "body", "hint"), BAD_TASKS, ids=[c[0] for c in BAD_TASKS])
def test_bad_task_is_400_naming_the_problem(api: Api, case: str, body: object, hint: str) -> None:
    r = api.tes.post("/tasks", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status_code"] == 400
    assert hint in r.json()["message"]
    assert stored_count(api) == 0
    assert api.backend.submitted == []


def test_malformed_json(api: Api) -> None:
    r = api.tes.post("/tasks", content=b'{"executors": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["message"]
    assert stored_count(api) == 0


def test_inline_content_limit(api: Api) -> None:
    ok = "x" * (128 * 1024)
    create(api.tes, inputs=[{"path": "/in.txt", "content": ok}])
    too_big = "y" * (1024 * 1024 + 1)
    r = api.tes.post("/tasks", json=task_body(inputs=[{"path": "/in.txt", "content": too_big}]))
    assert r.status_code == 400
    assert "inputs[0].content" in r.json()["message"] and "url" in r.json()["message"]
    assert stored_count(api) == 1


def test_huge_body_is_refused_before_reading(tmp_path) -> None:
    from tests.api.conftest import make_api

    for api in make_api(tmp_path, server={"max_body_bytes": 64 * 1024}):
        big = task_body(description="z" * (100 * 1024))
        r = api.tes.post("/tasks", json=big)
        assert r.status_code == 413
        assert "limit" in r.json()["message"]

        def chunks():  # no Content-Length: the limit must hold for streamed bodies too
            yield b'{"executors": [{"image": "a", "command": ["true"]}], "description": "'
            for _ in range(100):
                yield b"z" * 1024
            yield b'"}'

        r = api.tes.post("/tasks", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert stored_count(api) == 0


@pytest.mark.parametrize(
    ("params", "hint"),
    [
        ({"state": "DONE"}, "state must be one of"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"page_size": 2048}, "less than 2048"),
        ({"page_size": "ten"}, "integer"),
        ({"view": "EVERYTHING"}, "view must be"),
        ({"page_token": "forged"}, "page_token"),
        ({"page_token": base64.urlsafe_b64encode(b"task-zzz|0000|0000").decode()}, "page_token"),
        ({"tag_value": "v"}, "tag_value"),
    ],
)
def test_bad_list_parameters(api: Api, params: dict[str, str | int], hint: str) -> None:
    create(api.tes)
    r = api.tes.get("/tasks", params=params)
    assert r.status_code == 400, r.text
    assert hint in r.json()["message"]


def test_bad_view_on_get(api: Api) -> None:
    task_id = create(api.tes)
    r = api.tes.get(f"/tasks/{task_id}", params={"view": "HUGE"})
    assert r.status_code == 400 and "view" in r.json()["message"]


def test_unknown_route_is_a_json_404(api: Api) -> None:
    r = api.http.get("/ga4gh/tes/v2/tasks")
    assert r.status_code == 404
    assert "/ga4gh/tes/v1" in r.json()["message"]
