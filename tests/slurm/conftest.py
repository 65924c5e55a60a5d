"""Fixtures of the Slurm backend tests: a real SQLite store and a SlurmBackend on the real Slurm that
`.ci/setup.d/60-slurm.sh` starts (one node on loopback). The jobs run `tesk worker` of this checkout
with podman. Without a Slurm controller the tests skip locally but fail in CI (`CI` set)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tesk.backends.slurm import SlurmBackend
from tesk.backends.slurm.commands import job_name
from tesk.config import SlurmSettings, TeskConfig
from tesk.models import State
from tesk.store.sql import SqlTaskStore
from tests.local.conftest import Harness as LocalHarness

IMAGE = "localhost/busybox:latest"


def slurm_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "Slurm's commands are not installed"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if "UP" not in ping.stdout:
        return f"no Slurm controller answers: {ping.stdout.strip()} {ping.stderr.strip()}"
    return None


def job_states(task_id: str) -> list[str]:
    """Slurm's states of the task's jobs, as squeue reports them."""
    out = subprocess.run(["squeue", "-h", "--states=all", "--me", f"--name={job_name(task_id)}", "--format=%T"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def containers(task_id: str) -> list[str]:
    out = subprocess.run(["podman", "ps", "-a", "--filter", f"label=tesk.task-id={task_id}", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()


class Harness(LocalHarness):
    """The local tests' harness (submit as the API does, wait, cancel) around a Slurm backend."""

    def __init__(self, backend: SlurmBackend, store: SqlTaskStore) -> None:  # type: ignore[override]
        super().__init__(backend, store, backend.shared_dir)  # type: ignore[arg-type]


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
def slurm_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Slurm controller answers, and jobs get podman without network and a file:// root to write to."""
    problem = slurm_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must test the Slurm backend: run .ci/setup.d/60-slurm.sh", pytrace=False)
        pytest.skip(problem)
    monkeypatch.setenv("TESK_LOCAL_ENGINE", "podman")
    monkeypatch.setenv("TESK_LOCAL_NETWORK", "none")
    monkeypatch.setenv("TESK_LOCAL_PULL", "never")
    monkeypatch.setenv("TESK_FILE_ROOTS", str(tmp_path / "files"))
    (tmp_path / "files").mkdir()


@pytest.fixture
async def make_harness(tmp_path: Path, slurm_ready: None) -> AsyncIterator[MakeHarness]:
    """`await make_harness(default_time_limit, **TESK_SLURM_* settings)`: a backend on the store and
    shared folder of this test (a second call is the same API restarted); everything stops at teardown."""
    data_dir = tmp_path / "server"
    store = SqlTaskStore(TeskConfig.read(server={"data_dir": data_dir}).database_url)
    await store.open()
    started: list[SlurmBackend] = []

    async def make(default_time_limit: int | None = None, **slurm: Any) -> Harness:
        settings = SlurmSettings(**({"poll_seconds": 0.2} | slurm))
        backend = SlurmBackend(store, settings, data_dir, default_time_limit)
        await backend.start()
        started.append(backend)
        return Harness(backend, store)

    yield make
    for backend in started:
        await backend.stop()
    for task_id in await store.ids_in_states([State.QUEUED, State.INITIALIZING, State.RUNNING, State.CANCELING]):
        subprocess.run(["scancel", f"--name={job_name(task_id)}"], check=False)
    await store.close()
