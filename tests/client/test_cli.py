"""The `tesk task ...` and `tesk run` commands against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tesk.cli import _register, app
from tests.api.conftest import Api, create, make_api
from tests.events.conftest import IMAGE, local_server

_register()


def tesk(url: str, *args: str, stdin: str | None = None, token: str | None = None) -> Result:
    env = {"TESK_URL": url, "TESK_TOKEN": token or ""}
    return CliRunner(env=env).invoke(app, list(args), input=stdin)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


def test_submit_json_and_yaml_from_file_and_stdin_then_get(api: Api, tmp_path: Path) -> None:
    spec = tmp_path / "task.yaml"
    spec.write_text("name: from-yaml\nexecutors:\n  - image: alpine\n    command: [echo, hi]\ntags: {project: x}\n")
    r = tesk(api.url, "task", "submit", str(spec))
    assert r.exit_code == 0, r.output
    task_id = r.stdout.strip()
    assert task_id in api.backend.submitted
    piped = json.dumps({"name": "from-json", "executors": [{"image": "alpine", "command": ["true"]}]})
    r = tesk(api.url, "task", "submit", "-", stdin=piped)
    assert r.exit_code == 0, r.output
    r = tesk(api.url, "task", "get", task_id)
    assert r.exit_code == 0
    body = json.loads(r.stdout)
    assert (body["name"], body["state"], body["tags"]) == ("from-yaml", "QUEUED", {"project": "x"})
    assert json.loads(tesk(api.url, "task", "get", task_id, "--view", "minimal").stdout) == {"id": task_id, "state": "QUEUED"}


def test_server_errors_are_the_servers_message_with_exit_code_2(api: Api, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"executors": []}))
    r = tesk(api.url, "task", "submit", str(bad))
    assert r.exit_code == 2
    assert "error: Invalid request: executors" in r.stderr
    r = tesk(api.url, "task", "get", "task-missing")
    assert (r.exit_code, r.stderr.strip()) == (2, "error: Task 'task-missing' not found. Check the id (GET /tasks lists the tasks you can see).")
    r = tesk(api.url, "task", "list", "--state", "DONE")
    assert r.exit_code == 2 and "state must be one of" in r.stderr
    r = tesk("http://127.0.0.1:9", "task", "list")
    assert r.exit_code == 2 and "cannot reach the TES server at http://127.0.0.1:9/ga4gh/tes/v1" in r.stderr
    r = tesk(api.url, "task", "submit", str(tmp_path / "absent.json"))
    assert r.exit_code == 2 and "cannot read" in r.stderr
    bad.write_text("[1, 2]")
    r = tesk(api.url, "task", "submit", str(bad))
    assert r.exit_code == 2 and "must hold one task" in r.stderr


def test_list_filters_and_pages(api: Api) -> None:
    a = create(api.tes, name="alpha-1", tags={"project": "a"})
    b = create(api.tes, name="alpha-2", tags={"project": "b"})
    c = create(api.tes, name="beta", tags={"project": "a"})
    tesk(api.url, "task", "cancel", b)

    def ids(*args: str) -> list[str]:
        r = tesk(api.url, "task", "list", *args)
        assert r.exit_code == 0, r.output
        return [line.split()[0] for line in r.stdout.splitlines()[1:]]

    assert ids() == [c, b, a]
    assert ids("--state", "canceled") == [b]
    assert ids("--name-prefix", "alpha") == [b, a]
    assert ids("--tag", "project=a") == [c, a]
    assert ids("--tag", "project") == [c, b, a]
    first = tesk(api.url, "task", "list", "--page-size", "2")
    assert "more tasks: add --page-token" in first.stderr
    assert ids("--page-size", "2", "--all") == [c, b, a]
    page = json.loads(tesk(api.url, "task", "list", "--page-size", "1", "--json").stdout)
    assert [t["id"] for t in page["tasks"]] == [c] and page["next_page_token"]
    everything = json.loads(tesk(api.url, "task", "list", "--page-size", "1", "--all", "--json").stdout)
    assert [t["id"] for t in everything["tasks"]] == [c, b, a] and "next_page_token" not in everything


def test_cancel_then_wait_exits_with_the_outcome(api: Api) -> None:
    task_id = create(api.tes)
    r = tesk(api.url, "task", "cancel", task_id)
    assert (r.exit_code, r.stdout.strip()) == (0, f"{task_id} CANCELED")
    r = tesk(api.url, "task", "wait", task_id)
    assert r.exit_code == 4, r.output
    assert f"{task_id} CANCELED" in r.stderr


def test_run_builds_the_task_it_sends(api: Api) -> None:
    r = tesk(
        api.url, "run", "--cpu", "2", "--ram", "1.5", "--input", "/data/in.txt=http://example.org/in.txt",
        "--output", "/data/out/=file:///tmp/out", "--env", "A=1", "--tag", "k=v", "--name", "n",
        "busybox", "--", "sh", "-c", "echo $A",
    )
    assert r.exit_code == 0, r.output
    task = api.tes.get(f"/tasks/{r.stdout.strip()}", params={"view": "FULL"}).json()
    assert task["executors"] == [{"image": "busybox", "command": ["sh", "-c", "echo $A"], "env": {"A": "1"}}]
    assert task["inputs"] == [{"path": "/data/in.txt", "url": "http://example.org/in.txt"}]
    assert task["outputs"] == [{"path": "/data/out", "url": "file:///tmp/out", "type": "DIRECTORY"}]
    assert task["resources"] == {"cpu_cores": 2, "ram_gb": 1.5}
    assert (task["name"], task["tags"]) == ("n", {"k": "v"})
    r = tesk(api.url, "run", "--input", "relative=http://x", "alpine", "--", "true")
    assert r.exit_code == 2 and "must be PATH=URL" in r.stderr
    r = tesk(api.url, "run", "alpine")
    assert r.exit_code == 2


@pytest.mark.containers
def test_run_wait_prints_output_and_mirrors_the_exit_code(tmp_path: Path) -> None:
    with local_server(tmp_path) as server:
        env = {**os.environ, "TESK_URL": server.url}
        done = subprocess.run(
            [str(Path(sys.executable).parent / "tesk"), "run", "--wait", IMAGE, "--", "echo", "hello"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr
        assert "COMPLETE" in done.stderr
        failed = tesk(server.url, "run", "--wait", IMAGE, "--", "sh", "-c", "echo oops >&2; exit 7")
        assert failed.exit_code == 7, failed.output
        assert "oops" in failed.stderr
        assert "EXECUTOR_ERROR: ExecutorFailed (executor 0)" in failed.stderr
        task_id = tesk(server.url, "task", "list").stdout.splitlines()[1].split()[0]
        shown = tesk(server.url, "task", "get", task_id)
        assert json.loads(shown.stdout)["state"] == "EXECUTOR_ERROR", "stdout stays JSON"
        assert f"{task_id} EXECUTOR_ERROR: ExecutorFailed (executor 0)" in shown.stderr
        logs = tesk(server.url, "task", "logs", task_id, "--executor", "0", "--stderr")
        assert (logs.exit_code, logs.stdout) == (0, "oops\n")
        r = tesk(server.url, "task", "logs", task_id, "--executor", "3")
        assert r.exit_code == 2 and "has 1 executor(s)" in r.stderr
        [first, second] = [tesk(server.url, "run", IMAGE, "--", "sh", "-c", code).stdout.strip() for code in ("true", "exit 3")]
        both = tesk(server.url, "task", "wait", first, second)
        assert both.exit_code == 1, both.output


def test_wait_polls_a_tes_server_without_event_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Against another TES server (no /events extension) `wait` falls back to polling GetTask."""
    monkeypatch.setattr("tesk.client.http.POLL_START", 0.05)
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.conftest import serving

    states = iter(["QUEUED", "RUNNING", "RUNNING", "SYSTEM_ERROR"])
    last = {"state": "QUEUED"}

    async def get_task(request: Request) -> JSONResponse:
        if request.path_params["id"] != "t1":
            return JSONResponse({"message": "no such task", "status_code": 404}, 404)
        last["state"] = next(states, last["state"])
        return JSONResponse({"id": "t1", "state": last["state"]})

    other = Starlette(routes=[Route("/ga4gh/tes/v1/tasks/{id}", get_task)])
    with serving(other) as server:  # type: ignore[arg-type]
        r = tesk(server.url, "task", "wait", "t1")
        assert r.exit_code == 3, r.output
        assert r.stderr.splitlines() == ["t1 RUNNING", "t1 SYSTEM_ERROR"]  # QUEUED went to the existence check
        r = tesk(server.url, "task", "wait", "t2")
        assert r.exit_code == 2 and "no such task" in r.stderr
