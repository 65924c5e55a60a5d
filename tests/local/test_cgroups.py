"""Finding and reading a container's cgroup counters, on v1 and v2 layouts laid out in a folder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tesk.backends.local.engines.cgroups import CgroupSampler

ID = "0123abcd" * 8
PLACES = ["libpod_parent/libpod-{id}", "machine.slice/libpod-{id}.scope", "docker/{id}", "system.slice/docker-{id}.scope"]
"""podman's (cgroupfs, systemd manager) and docker's (cgroupfs, systemd driver; docs.docker.com,
"Runtime metrics"), the same below each v1 controller and in the v2 tree."""


def v1(root: Path, place: str) -> tuple[Path, Path]:
    memory, cpu = root / "memory" / place, root / "cpuacct" / place
    memory.mkdir(parents=True)
    cpu.mkdir(parents=True)
    return memory / "memory.max_usage_in_bytes", cpu / "cpuacct.usage"


def v2(root: Path, place: str) -> tuple[Path, Path]:
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    folder = root / place
    folder.mkdir(parents=True)
    return folder / "memory.peak", folder / "cpu.stat"


@pytest.mark.parametrize("place", PLACES)
async def test_v1_counters_are_followed_until_the_cgroup_goes(tmp_path: Path, place: str) -> None:
    memory, cpu = v1(tmp_path / "cg", place.format(id=ID))
    memory.write_text("209715200\n")
    cpu.write_text("1500000000\n")
    cidfile = tmp_path / "c.cid"
    sampler = CgroupSampler(cidfile, tmp_path / "cg", interval=0.01)
    following = asyncio.create_task(sampler.follow())
    await asyncio.sleep(0.05)
    assert sampler.peak_memory_bytes is None, "no container id yet"
    cidfile.write_text(ID)
    await asyncio.sleep(0.05)
    memory.unlink()  # the container ended: its cgroup is gone, the last reads stay
    cpu.unlink()
    await asyncio.sleep(0.05)
    following.cancel()
    assert (sampler.peak_memory_bytes, sampler.cpu_seconds) == (209715200, 1.5)


@pytest.mark.parametrize("place", PLACES)
def test_v2_counters_and_a_missing_memory_peak(tmp_path: Path, place: str) -> None:
    memory, cpu = v2(tmp_path, place.format(id=ID))
    cpu.write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (tmp_path / "c.cid").write_text(ID)
    sampler = CgroupSampler(tmp_path / "c.cid", tmp_path)
    assert sampler.locate(ID)
    sampler.read()
    assert (sampler.peak_memory_bytes, sampler.cpu_seconds) == (None, 2.5), "no memory.peak before Linux 5.19"
    memory.write_text("4096\n")
    sampler.read()
    assert sampler.peak_memory_bytes == 4096


def test_a_hybrid_host_is_read_as_v1(tmp_path: Path) -> None:
    """systemd's hybrid layout mounts a v2 tree at `unified/` beside the v1 controllers, which hold
    the counters; only a v2 root has `cgroup.controllers` at the top."""
    memory, cpu = v1(tmp_path, f"system.slice/docker-{ID}.scope")
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    memory.write_text("8192\n")
    cpu.write_text("250000000\n")
    sampler = CgroupSampler(tmp_path / "c.cid", tmp_path)
    assert sampler.locate(ID)
    sampler.read()
    assert (sampler.peak_memory_bytes, sampler.cpu_seconds) == (8192, 0.25)


def test_a_cgroup_in_no_known_place_is_not_measured(tmp_path: Path) -> None:
    v1(tmp_path, f"user.slice/user-1000.slice/libpod-{ID}.scope")
    sampler = CgroupSampler(tmp_path / "c.cid", tmp_path)
    assert not sampler.locate(ID)
    sampler.read()
    assert (sampler.peak_memory_bytes, sampler.cpu_seconds) == (None, None)
