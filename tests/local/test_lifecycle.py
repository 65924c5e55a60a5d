"""The task lifecycle on real engines: podman containers, and the `process` engine on the host."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tesk.models import State
from tests.local.conftest import ENGINES, IMAGE, MakeHarness

pytestmark = pytest.mark.containers


async def podman_names(task_id: str) -> list[str]:
    """Containers (running or not) that carry this task's id label."""
    proc = await asyncio.create_subprocess_exec(
        "podman", "ps", "-a", "--filter", f"label=tesk.task-id={task_id}", "--format", "{{.Names}}",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return out.decode().split()


@pytest.mark.parametrize("engine", ENGINES)
async def test_executors_share_files_streams_env_and_workdir(
    engine: str, make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_root = tmp_path / "results"
    out_root.mkdir()
    monkeypatch.setenv("TESK_FILE_ROOTS", str(out_root))
    harness = await make_harness(engine)
    stored = await harness.run({
        "inputs": [{"path": "/data/in/words.txt", "content": "b\na\nc\n"}],
        "outputs": [{"path": "/data/out/sorted.txt", "url": (out_root / "sorted.txt").as_uri()}],
        "volumes": ["/vol"],
        "executors": [
            {"image": IMAGE, "command": ["sort"], "stdin": "/data/in/words.txt",
             "stdout": "/vol/sorted.txt", "stderr": "/vol/sort.err"},
            {"image": IMAGE, "command": ["sh", "-c", 'cp /vol/sorted.txt /data/out/; echo "$GREETING in $(pwd)"; echo warn >&2'],
             "env": {"GREETING": "hi there"}, "workdir": "/wd/here", "stdout": "/logs/second.out"},
            {"image": IMAGE, "command": ["cat", "/logs/second.out"]},
        ],
    })
    task = stored.task
    assert stored.state is State.COMPLETE, task.logs
    [attempt] = task.logs or []
    first, second, third = attempt.logs
    assert (first.exit_code, first.stdout, first.stderr) == (0, "a\nb\nc\n", "")
    assert (second.exit_code, second.stdout, second.stderr) == (0, "hi there in /wd/here\n", "warn\n")
    assert third.stdout == second.stdout, "a stdout file outside the shared folders is still shared"
    assert (out_root / "sorted.txt").read_text() == "a\nb\nc\n"
    assert [(o.path, o.size_bytes) for o in attempt.outputs] == [("/data/out/sorted.txt", "6")]
    assert attempt.start_time and attempt.end_time and first.start_time and first.end_time
    assert second.start_time and second.end_time
    assert attempt.start_time <= first.start_time <= first.end_time <= second.start_time
    assert second.start_time <= second.end_time <= attempt.end_time
    assert task.id is not None
    await harness.settled(task.id)
    assert not (harness.backend.task_dir / task.id).exists(), "the task area must be removed at the end"


@pytest.mark.parametrize("engine", ENGINES)
async def test_exit_codes_ignore_error_and_missing_binary(engine: str, make_harness: MakeHarness) -> None:
    harness = await make_harness(engine)
    failing = {"image": IMAGE, "command": ["sh", "-c", "echo oops >&2; exit 3"]}
    ok = {"image": IMAGE, "command": ["echo", "after"]}
    stopped, ignored, missing = await asyncio.gather(
        harness.run({"executors": [failing, ok]}),
        harness.run({"executors": [failing | {"ignore_error": True}, ok]}),
        harness.run({"executors": [{"image": IMAGE, "command": ["no-such-program-here"]}]}),
    )
    assert stopped.state is State.EXECUTOR_ERROR
    [log] = stopped.task.logs or []
    assert [(e.exit_code, e.stderr) for e in log.logs] == [(3, "oops\n")], "no log for an executor that never ran"
    assert any("exited with code 3" in line for line in log.system_logs or [])

    assert ignored.state is State.COMPLETE
    [log] = ignored.task.logs or []
    assert [e.exit_code for e in log.logs] == [3, 0]
    assert log.logs[1].stdout == "after\n"

    assert missing.state is State.EXECUTOR_ERROR
    [log] = missing.task.logs or []
    [only] = log.logs
    assert only.exit_code == 127
    assert "no-such-program-here" in (only.stderr or "")


@pytest.mark.parametrize("engine", ENGINES)
async def test_cancel_running_task_stops_it_within_two_seconds(engine: str, make_harness: MakeHarness) -> None:
    harness = await make_harness(engine)
    # A duration no other test uses, so `pgrep` below finds this task's process and nothing else.
    duration = f"60.{os.getpid()}"
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", duration]}]})
    await harness.wait_for(task_id, {State.RUNNING})
    stored = await harness.get(task_id)
    while not (stored.task.logs and harness.backend.runners.get(task_id)):
        await asyncio.sleep(0.02)
        stored = await harness.get(task_id)
    await asyncio.sleep(0.5)  # let the container really start
    if engine == "podman":
        assert await podman_names(task_id), "a running executor's container carries the task id label"
    started = asyncio.get_running_loop().time()
    await harness.cancel(task_id, by="alice")
    assert (await harness.get(task_id)).state is State.CANCELING
    stored = await harness.wait(task_id, timeout=5)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert stored.state is State.CANCELED
    [log] = stored.task.logs or []
    assert any("canceled by alice" in line for line in log.system_logs or [])
    assert log.logs == []
    await harness.settled(task_id)
    assert not (harness.backend.task_dir / task_id).exists()
    if engine == "podman":
        assert await podman_names(task_id) == [], "the cancelled task's container must be gone"
    else:
        proc = await asyncio.create_subprocess_exec("pgrep", "-f", f"sleep {duration}", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert out.decode().strip() == "", "the cancelled task's process must be gone"
