"""The Slurm backend behind the real API: service-info, strict backend_parameters, a task over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.backends.slurm import SlurmBackend
from tesk.config import TeskConfig
from tesk.store.sql import SqlTaskStore
from tests.conftest import client, serving
from tests.slurm.conftest import IMAGE, job_states, slurm_ready

pytestmark = pytest.mark.slurm


@pytest.fixture
def tes(tmp_path: Path, slurm_ready: None) -> Iterator[httpx.Client]:
    cfg = TeskConfig.read(server={"data_dir": tmp_path / "server", "backend": "slurm"}, slurm={"poll_seconds": 0.2})
    store = SqlTaskStore(cfg.database_url)
    backend = SlurmBackend.from_config(cfg, store)
    with serving(create_app(compose(cfg, store=store, backend=backend))) as server:
        http = client(server.url + "/ga4gh/tes/v1")
        yield http
        http.close()


def test_service_info_lists_the_slurm_backend_parameters(tes: httpx.Client) -> None:
    listed = tes.get("/service-info").json()["tesResources_backend_parameters"]
    assert listed == ["account", "constraint", "gres", "partition", "qos", "tesk.executor_time_limit",
                      "tesk.time_limit", "time"]


def test_strict_backend_parameters_refuse_an_unknown_key_and_submit_nothing(tes: httpx.Client) -> None:
    body = {"executors": [{"image": IMAGE, "command": ["true"]}],
            "resources": {"backend_parameters": {"partition": "debug", "nodes": "3"},
                          "backend_parameters_strict": True}}
    r = tes.post("/tasks", json=body)
    assert r.status_code == 400
    assert "nodes" in r.json()["message"]
    assert tes.get("/tasks").json()["tasks"] == []


def test_a_task_over_http_runs_as_a_slurm_job(tes: httpx.Client) -> None:
    body = {"executors": [{"image": IMAGE, "command": ["echo", "over http"]}],
            "resources": {"backend_parameters": {"partition": "debug", "time": "5"}}}
    task_id = tes.post("/tasks", json=body).json()["id"]
    deadline = time.monotonic() + 60
    while (task := tes.get(f"/tasks/{task_id}", params={"view": "FULL"}).json())["state"] not in (
            "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"):
        assert time.monotonic() < deadline, task
        time.sleep(0.2)
    assert task["state"] == "COMPLETE", task
    assert task["logs"][-1]["logs"][0]["stdout"] == "over http\n"
    assert job_states(task_id) == ["COMPLETED"]
