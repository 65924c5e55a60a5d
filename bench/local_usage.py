"""Benchmark: what measuring executors' resource use costs a trivial local task (issue 14, item 3).

Runs `true` tasks through a LocalBackend on podman, alternating one with the cgroup sampler and one
with the sampler's loop replaced by a no-op, so that machine noise hits both alike; prints the median
submit -> COMPLETE of each and the difference (target: no more than +20 ms).
Usage: .venv/bin/python bench/local_usage.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root in place of bench/

from tesk.backends.local import LocalBackend
from tesk.backends.local.engines.cgroups import CgroupSampler
from tesk.config import TeskConfig
from tesk.models import State
from tesk.store.sql import SqlTaskStore
from tests.local.conftest import IMAGE, Harness

TASK = {"executors": [{"image": IMAGE, "command": ["true"]}]}


async def not_following(self: CgroupSampler) -> None:
    """The sampler's loop, off: the container's cgroup is never read."""


async def timed(harness: Harness) -> float:
    started = time.perf_counter()
    stored = await harness.run(TASK)
    assert stored.state is State.COMPLETE, stored.task.logs
    return time.perf_counter() - started


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = TeskConfig.read(server={"data_dir": Path(folder)}, local={"network": "none", "pull": "never"})
        store = SqlTaskStore(config.database_url)
        await store.open()
        backend = LocalBackend.from_config(config, store)
        await backend.start()
        harness = Harness(backend, store, Path(folder))
        follow = CgroupSampler.follow
        on: list[float] = []
        off: list[float] = []
        try:
            await timed(harness)  # warm-up
            for _ in range(rounds):
                CgroupSampler.follow = follow  # type: ignore[method-assign]
                on.append(await timed(harness))
                CgroupSampler.follow = not_following  # type: ignore[method-assign]
                off.append(await timed(harness))
        finally:
            CgroupSampler.follow = follow  # type: ignore[method-assign]
            await backend.stop()
            await store.close()
    median_on, median_off = statistics.median(on), statistics.median(off)
    print(f"{rounds} rounds: submit -> COMPLETE median {median_on * 1000:.0f} ms measuring, "
          f"{median_off * 1000:.0f} ms not measuring: {(median_on - median_off) * 1000:+.1f} ms (target <= +20 ms)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
