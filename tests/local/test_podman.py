"""What only a container engine can do (images, limits) and the queue around it, on real podman."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from pathlib import Path

import pytest

from tesk.models import State
from tests.local.conftest import IMAGE, MakeHarness

pytestmark = pytest.mark.containers


async def test_missing_image_is_a_system_error_with_the_reason(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    stored = await harness.run({"executors": [{"image": "localhost/no-such-image:1", "command": ["true"]}]})
    assert stored.state is State.SYSTEM_ERROR
    [log] = stored.task.logs or []
    assert log.logs == [], "an executor that never ran has no executor log"
    reason = " ".join(log.system_logs or [])
    assert "localhost/no-such-image:1 is not on this host" in reason
    assert "executor 1 of 1" in reason


async def test_a_failed_pull_is_a_system_error_with_what_the_registry_said(make_harness: MakeHarness) -> None:
    harness = await make_harness(pull="missing")
    image = "127.0.0.1:9/nobody/nothing:1"  # nothing listens on port 9: the pull fails at once
    stored = await harness.run({"executors": [{"image": image, "command": ["true"]}]})
    assert stored.state is State.SYSTEM_ERROR
    [log] = stored.task.logs or []
    [reason] = log.system_logs or []
    assert f"image {image} is not on this host and pulling it failed" in reason
    assert "connection refused" in reason.lower()


async def test_cpu_and_memory_become_limits_and_the_memory_limit_kills(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    stored = await harness.run({
        "resources": {"cpu_cores": 1, "ram_gb": 0.0625},
        "executors": [
            {"image": IMAGE, "command": ["cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                                         "/sys/fs/cgroup/memory/memory.limit_in_bytes"]},
            # `tail` keeps a 200 MB line without newlines in memory: far above the 64 MiB limit.
            {"image": IMAGE, "command": ["sh", "-c", "head -c 200000000 /dev/zero | tail"]},
        ],
    })
    assert stored.state is State.EXECUTOR_ERROR
    [log] = stored.task.logs or []
    limits, killed = log.logs
    assert limits.stdout.split() == ["100000", str(64 * 2**20)]  # type: ignore[union-attr]
    assert killed.exit_code == 137


async def test_cancel_while_queued(make_harness: MakeHarness) -> None:
    harness = await make_harness(max_tasks=0)
    task_id = await harness.submit({"executors": [{"image": IMAGE, "command": ["true"]}]})
    await asyncio.sleep(0.2)
    assert (await harness.get(task_id)).state is State.QUEUED, "max_tasks=0 queues tasks and starts none"
    await harness.cancel(task_id, by="bob")
    stored = await harness.wait(task_id, timeout=2)
    assert stored.state is State.CANCELED
    [log] = stored.task.logs or []
    assert log.system_logs == ["canceled by bob while queued"]


async def test_cancel_while_staging(make_harness: MakeHarness) -> None:
    release = threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        """Answers nothing until the test is over: staging hangs like a very slow download."""

        def do_GET(self) -> None:
            release.wait(30)
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"x")

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        harness = await make_harness()
        task_id = await harness.submit({
            "inputs": [{"path": "/data/in", "url": f"http://127.0.0.1:{server.server_address[1]}/in", "type": "FILE"}],
            "executors": [{"image": IMAGE, "command": ["true"]}],
        })
        await harness.wait_for(task_id, {State.INITIALIZING})
        await asyncio.sleep(0.3)
        await harness.cancel(task_id, by="carol")
        stored = await harness.wait(task_id, timeout=2)
    finally:
        release.set()
        server.shutdown()
    assert stored.state is State.CANCELED
    [log] = stored.task.logs or []
    assert any("canceled by carol" in line and "staging inputs" in line for line in log.system_logs or [])
    assert log.logs == []


async def test_a_task_larger_than_the_host_fails_at_once(make_harness: MakeHarness) -> None:
    harness = await make_harness(cpu_cores=2, ram_gb=4)
    stored = await harness.run({"resources": {"cpu_cores": 64}, "executors": [{"image": IMAGE, "command": ["true"]}]},
                               timeout=1)
    assert stored.state is State.SYSTEM_ERROR
    [log] = stored.task.logs or []
    assert "asks for 64 cpu cores" in (log.system_logs or [""])[0]
    assert "TESK_LOCAL_CPU_CORES" in (log.system_logs or [""])[0]


async def test_twenty_concurrent_tasks_on_two_cores_all_complete(make_harness: MakeHarness) -> None:
    harness = await make_harness(cpu_cores=2, default_cpu_cores=0.1)
    ids = [await harness.submit({"executors": [{"image": IMAGE, "command": ["echo", str(n)]}]}) for n in range(20)]
    most = 0
    while not all(state.is_terminal for state in await harness.states(ids)):
        most = max(most, len(harness.backend.runners))
        await asyncio.sleep(0.05)
    results = [await harness.get(i) for i in ids]
    assert [r.state for r in results] == [State.COMPLETE] * 20
    assert [r.task.logs[0].logs[0].stdout for r in results] == [f"{n}\n" for n in range(20)]  # type: ignore[index]
    assert most > 2, "tasks ran side by side"


async def test_capacity_queues_tasks_beyond_it(make_harness: MakeHarness) -> None:
    harness = await make_harness(cpu_cores=2)
    ids = [await harness.submit({"executors": [{"image": IMAGE, "command": ["sleep", "0.3"]}]}) for _ in range(4)]
    most = 0
    while not all(state.is_terminal for state in await harness.states(ids)):
        most = max(most, len(harness.backend.runners))
        await asyncio.sleep(0.02)
    assert most == 2, "each task reserves one core by default, so two run at a time"
    assert {(await harness.get(i)).state for i in ids} == {State.COMPLETE}


async def test_an_input_that_cannot_be_downloaded_is_a_system_error(make_harness: MakeHarness, tmp_path: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/missing.txt"
    try:
        harness = await make_harness()
        stored = await harness.run({
            "inputs": [{"path": "/data/in.txt", "url": url}],
            "executors": [{"image": IMAGE, "command": ["cat", "/data/in.txt"]}],
        })
    finally:
        server.shutdown()
    assert stored.state is State.SYSTEM_ERROR
    [log] = stored.task.logs or []
    assert log.logs == [], "no executor ran"
    assert any(url in line and "404" in line for line in log.system_logs or []), log.system_logs


async def test_log_tails_are_bounded_and_failed_task_areas_can_be_kept(make_harness: MakeHarness) -> None:
    harness = await make_harness(log_tail_bytes=10, keep_task_areas="failed")
    stored = await harness.run({"executors": [
        {"image": IMAGE, "command": ["sh", "-c", "echo abcdefghijklmnopqrstuvwxyz; echo 0123456789ABCDEF >&2; exit 1"]},
    ]})
    assert stored.state is State.EXECUTOR_ERROR
    [log] = stored.task.logs or []
    assert (log.logs[0].stdout, log.logs[0].stderr) == ("rstuvwxyz\n", "789ABCDEF\n"), "the last 10 bytes of each"
    await harness.settled(stored.id)
    kept = harness.backend.task_dir / stored.id
    assert (kept / "logs" / "0.stdout").read_text() == "abcdefghijklmnopqrstuvwxyz\n", "the full stream stays on disk"
