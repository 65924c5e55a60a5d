"""Benchmark: what measuring executors' resource use costs a trivial local task (issue 14, item 3).

Runs `true` tasks through a LocalBackend, alternating one measured and one not, so that machine noise
hits both alike, and prints the median submit -> COMPLETE of each and the difference (target: no more
than +20 ms). On podman "not measured" is the cgroup sampler's loop replaced by a no-op; with the
process engine (when bubblewrap is installed) it is the engine's run as it was before it measured:
asyncio's subprocess, reaped by asyncio's child watcher, in place of tesk's own pidfd and `wait4`.
Usage: .venv/bin/python bench/local_usage.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/

from tesk.backends.local import LocalBackend
from tesk.backends.local.engines.base import ContainerSpec
from tesk.backends.local.engines.cgroups import CgroupSampler
from tesk.backends.local.engines.process import ProcessEngine, _Ended
from tesk.config import TeskConfig
from tesk.filer import Mount
from tesk.models import State
from tesk.store.sql import SqlTaskStore
from tests.local.conftest import IMAGE, Harness

TASK = {"executors": [{"image": IMAGE, "command": ["true"]}]}


async def not_following(self: CgroupSampler) -> None:
    """The sampler's loop, off: the container's cgroup is never read."""


async def reaped_by_asyncio(self: ProcessEngine, spec: ContainerSpec, extra: list[Mount]) -> tuple[int, bool, _Ended]:
    """The process engine's run before it measured (no time limit needed for `true`): no figures."""
    spec.rewind()
    proc = await asyncio.create_subprocess_exec(*self.args(spec, extra), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=spec.stdout, stderr=spec.stderr, start_new_session=True)
    code = await proc.wait()
    return code, False, _Ended(code, None, 0.0)


async def timed(harness: Harness) -> float:
    started = time.perf_counter()
    stored = await harness.run(TASK)
    assert stored.state is State.COMPLETE, stored.task.logs
    return time.perf_counter() - started


async def compare(engine: str, rounds: int, measuring: Callable[[bool], None]) -> None:
    """`measuring(True)` / `measuring(False)` switch the engine's measuring on and off."""
    with tempfile.TemporaryDirectory() as folder:
        config = TeskConfig.read(server={"data_dir": Path(folder)},
                                 local={"network": "none", "pull": "never", "engine": engine})
        store = SqlTaskStore(config.database_url)
        await store.open()
        backend = LocalBackend.from_config(config, store)
        await backend.start()
        harness = Harness(backend, store, Path(folder))
        on: list[float] = []
        off: list[float] = []
        try:
            await timed(harness)  # warm-up
            for _ in range(rounds):
                measuring(True)
                on.append(await timed(harness))
                measuring(False)
                off.append(await timed(harness))
        finally:
            measuring(True)
            await backend.stop()
            await store.close()
    median_on, median_off = statistics.median(on), statistics.median(off)
    print(f"{engine}, {rounds} rounds: submit -> COMPLETE median {median_on * 1000:.0f} ms measuring, "
          f"{median_off * 1000:.0f} ms not measuring: {(median_on - median_off) * 1000:+.1f} ms (target <= +20 ms)")


async def main(rounds: int) -> None:
    follow, run_once = CgroupSampler.follow, ProcessEngine._run_once

    def sampler(on: bool) -> None:
        CgroupSampler.follow = follow if on else not_following  # type: ignore[method-assign]

    def reaping(on: bool) -> None:
        ProcessEngine._run_once = run_once if on else reaped_by_asyncio  # type: ignore[method-assign]

    await compare("podman", rounds, sampler)
    if shutil.which("bwrap"):
        await compare("process", rounds, reaping)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
