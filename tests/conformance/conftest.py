"""Conformance fixtures: one live server for the module, and the official TES specs, offline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tesk.models import ExecutorLog, OutputFileLog, State, TaskLog
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import Api, make_api

SPEC_DIR = Path(__file__).parent / "spec"
SERVICE_INFO_URL = (
    "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml"
)


def offline_spec(into: Path, name: str = "tes-1.1.openapi.yaml") -> Path:
    """A TES spec with its external service-info $ref pointed at the local copy (no network)."""
    text = (SPEC_DIR / name).read_text()
    assert SERVICE_INFO_URL in text, (
        "the spec no longer refers to service-info by this URL; update SERVICE_INFO_URL"
    )
    spec = into / name
    spec.write_text(text.replace(SERVICE_INFO_URL, str(SPEC_DIR / "ga4gh-service-info-1.0.0.yaml")))
    return spec


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A real server (uvicorn on 127.0.0.1, SQLite store, recording backend) shared by a module."""
    yield from make_api(tmp_path_factory.mktemp("live"))


FULL_TASK: dict[str, object] = {
    "name": "conformance",
    "description": "every field of tesTask",
    "inputs": [
        {
            "name": "in",
            "description": "d",
            "url": "s3://bucket/in.txt",
            "path": "/data/in.txt",
            "type": "FILE",
        },
        {"path": "/data/inline.txt", "content": "hello", "streamable": False},
    ],
    "outputs": [
        {"name": "out", "url": "s3://bucket/out/", "path": "/data/out", "type": "DIRECTORY"},
        {"url": "s3://bucket/logs/", "path": "/data/*.log", "path_prefix": "/data/"},
    ],
    "resources": {
        "cpu_cores": 2,
        "ram_gb": 1.5,
        "disk_gb": 10,
        "preemptible": True,
        "zones": ["z1"],
        "backend_parameters": {"vmsize": "small"},
        "backend_parameters_strict": False,
    },
    "executors": [
        {
            "image": "alpine",
            "command": ["sh", "-c", "echo hi"],
            "workdir": "/data",
            "stdin": "/data/in.txt",
            "stdout": "/data/out/stdout",
            "stderr": "/data/err",
            "env": {"A": "1"},
            "ignore_error": True,
        }
    ],
    "volumes": ["/scratch"],
    "tags": {"suite": "conformance", "empty": ""},
}


def finished_logs() -> list[TaskLog]:
    started = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    return [
        TaskLog(
            logs=[ExecutorLog(start_time=started, end_time=started, stdout="hi\n", stderr="", exit_code=0)],
            metadata={"node": "n1"},
            start_time=started,
            end_time=started,
            outputs=[OutputFileLog(url="s3://bucket/out/a", path="/data/out/a", size_bytes=12)],
            system_logs=["pulled alpine"],
        )
    ]


def finish(live: Api, task_id: str) -> None:
    """Complete a task with `finished_logs()`, written through a second store on the server's
    database, as a backend in another process would."""

    async def write() -> None:
        store = SqlTaskStore(live.store.url)
        await store.open()
        try:
            assert await store.update(task_id, state=State.COMPLETE, logs=finished_logs()) is not None
        finally:
            await store.close()

    asyncio.run(write())
