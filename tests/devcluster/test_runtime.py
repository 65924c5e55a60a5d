"""The stand-in's podman runtime, where a race would make it unlike a kubelet."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from devcluster.runtime import _exec, _PodmanHandle


async def test_a_container_stopped_while_podman_starts_it_does_not_run_on() -> None:
    """A pod deleted while its container is being started must not leave the container running:
    `podman stop` before the start has taken effect is a no-op, so the handle stops it again."""
    name = f"tesk-test-stop-{secrets.token_hex(4)}"
    code, _, err = await _exec("podman", "create", "--name", name, "alpine", "sleep", "60")
    assert code == 0, err
    try:
        process = await asyncio.create_subprocess_exec(
            "podman", "start", "--attach", name, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await _PodmanHandle(name, process).stop(0)  # at once, before `podman start` has started it
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            pytest.fail("the container ran on after it was stopped")
    finally:
        await _exec("podman", "rm", "--force", "--time", "0", name)
