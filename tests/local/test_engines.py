"""Engine selection and the errors an operator sees when an engine cannot be used."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tesk.backends.local.engines import ContainerSpec, select_engine
from tesk.backends.local.engines.docker import DockerEngine
from tesk.backends.local.engines.podman import PodmanEngine
from tesk.backends.local.engines.process import ProcessEngine, _Child
from tesk.config.local import LocalSettings
from tesk.runner import TaskFailure
from tests.local.conftest import IMAGE


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


def test_process_engine_needs_pidfds_to_follow_its_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfds(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/bwrap")
    monkeypatch.setattr(os, "pidfd_open", no_pidfds)
    with pytest.raises(RuntimeError, match="needs Linux 5.3 or later"):
        ProcessEngine.create(LocalSettings(engine="process"))


async def test_a_command_reaped_by_someone_else_fails_the_executor_instead_of_hanging() -> None:
    child = _Child(["true"], None, 1, 2)
    os.waitpid(child.pid, 0)  # as a watcher that waits for any child would, before the loop looks
    with pytest.raises(TaskFailure, match=f"pid {child.pid}\\): something else in this server reaped it"):
        await asyncio.wait_for(child.wait(), 5)


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


def _podman_names(*args: str) -> set[str]:
    out = subprocess.run(["podman", "ps", "--all", *args, "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


async def test_a_leftover_holding_the_executors_name_is_removed_and_the_run_goes_on(tmp_path: Path) -> None:
    # Issue 17 item 2: a re-run failed "could not create the container: ... is already in use". Here an
    # unlabelled container (no label filter finds it, as with a half-made one) holds the executor's name.
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed on this machine")
    name = f"tesk-{secrets.token_hex(5)}-task-held-0"
    held = subprocess.run(["podman", "create", "--name", name, IMAGE, "true"],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        out, err = (os.open(tmp_path / n, os.O_RDWR | os.O_CREAT) for n in ("stdout", "stderr"))
        spec = ContainerSpec(name, IMAGE, ["echo", "ran"], out, err, tmp_path, network="none")
        notes: list[str] = []
        done = await PodmanEngine(LocalSettings(pull="never")).run(spec, notes.append)
        assert done.exit_code == 0 and os.pread(out, 100, 0) == b"ran\n", os.pread(err, 2000, 0)
        assert notes == [f"removed container {name}, which an earlier run of the server left half-made"]
        exists = subprocess.run(["podman", "container", "exists", held])
        assert exists.returncode == 1, "the container that held the name is gone"
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True)


async def test_the_sweep_removes_containers_a_killed_client_left_half_made() -> None:
    # A `podman run` client killed between taking the name in container storage and recording the
    # container in podman's database leaves a container with no labels: `ps --filter label` misses it.
    # Kill clients at ever later moments until one such container exists, then sweep.
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed on this machine")
    instance = secrets.token_hex(5)
    label = f"tesk.instance={instance}"
    half_made: set[str] = set()
    try:
        for attempt in range(120):
            name = f"tesk-{instance}-task-{attempt}-0"
            client = subprocess.Popen(["podman", "run", "--rm", "--name", name, "--label", label, "--network", "none",
                                       IMAGE, "sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.005 + 0.003 * (attempt % 40))
            client.kill()
            client.wait()
            half_made = {n for n in _podman_names("--external") if instance in n} - _podman_names(
                "--filter", f"label={label}")
            if half_made:
                break
        if not half_made:
            pytest.skip("no kill landed inside podman's container creation on this machine")
        removed = await PodmanEngine(LocalSettings()).remove_labelled("tesk.instance", instance)
        assert half_made <= set(removed)
        assert not {n for n in _podman_names("--external") if instance in n}, "nothing of the instance is left"
    finally:
        leftovers = [n for n in _podman_names("--external") if instance in n]
        if leftovers:
            subprocess.run(["podman", "rm", "--force", *leftovers], capture_output=True)
