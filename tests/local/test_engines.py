"""Engine selection and the errors an operator sees when an engine cannot be used."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
from pydantic import ValidationError

from tesk.backends.local.engines import select_engine
from tesk.backends.local.engines.docker import DockerEngine
from tesk.backends.local.engines.podman import PodmanEngine
from tesk.backends.local.engines.process import ProcessEngine
from tesk.config.local import LocalSettings


async def test_auto_picks_docker_only_when_its_daemon_answers() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed on this machine")
    docker_problem = await DockerEngine.check()
    engine = await select_engine(LocalSettings(engine="auto"))
    assert engine.name == ("docker" if docker_problem is None else "podman")


async def test_an_unusable_engine_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError) as info:
        await select_engine(LocalSettings(engine="docker"))
    message = str(info.value)
    assert "docker:" in message and "TESK_LOCAL_ENGINE=process" in message


def test_process_engine_needs_bubblewrap_and_a_possible_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs bubblewrap"):
        ProcessEngine.create(LocalSettings(engine="process"))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/bwrap")
    with pytest.raises(RuntimeError, match="use host or none"):
        ProcessEngine.create(LocalSettings(engine="process", network="bridge"))


def test_a_misspelt_setting_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESK_LOCAL_ENGINE", "dockr")
    with pytest.raises(ValidationError, match="'auto', 'docker', 'podman' or 'process'"):
        LocalSettings()
    monkeypatch.setenv("TESK_LOCAL_ENGINE", "podman")
    monkeypatch.setenv("TESK_LOCAL_MAX_TASKS", "-1")
    with pytest.raises(ValidationError, match="max_tasks"):
        LocalSettings()


def _fake_client(label: str) -> subprocess.Popen[bytes]:
    """A process whose command line is that of a `podman run` client labelled `label` (argv[0] podman)."""
    return subprocess.Popen(
        ["bash", "-c", f'exec -a podman {sys.executable} -c "import time; time.sleep(60)" run --label {label}']
    )


async def test_removing_a_previous_runs_containers_first_stops_its_clients_still_creating_them() -> None:
    # After kill -9 of the server its `podman run` clients live on and can create a container after the
    # start-up sweep has listed them; the sweep kills them first (and only those of its own label).
    leftover, other = _fake_client("tesk.instance=gone-run"), _fake_client("tesk.instance=someone-else")
    try:
        time.sleep(0.3)
        await PodmanEngine(LocalSettings()).remove_labelled("tesk.instance", "gone-run")
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert other.poll() is None, "a client of another label must be left alone"
    finally:
        for proc in (leftover, other):
            proc.kill()
            proc.wait()
