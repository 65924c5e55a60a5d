"""A container's memory peak and CPU time, read from its cgroup while it runs.

Containers run with `--rm`, so their cgroup is gone the moment they end and the engine keeps no
figures: `CgroupSampler` reads the cgroup's own cumulative counters every `interval` while the
container runs. The memory peak is the kernel's high-water mark (v1 `memory.max_usage_in_bytes`,
v2 `memory.peak`), so a short spike still counts if any read follows it; the CPU time (v1
`cpuacct.usage`, v2 `cpu.stat` `usage_usec`) is the last read's, short of the true total by at most
one interval's worth. The cgroup is found by the container id (the `--cidfile`) under the folders
podman and docker use with either cgroup manager; elsewhere (rootless podman's user slices, say)
nothing is read and the figures stay None.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PLACES = ("libpod_parent/libpod-{id}", "machine.slice/libpod-{id}.scope", "docker/{id}",
          "system.slice/docker-{id}.scope")
"""Where podman (cgroupfs, systemd) and docker (cgroupfs, systemd) put a container's cgroup."""


def _read_int(path: Path, key: str | None = None) -> int | None:
    """A counter file's number, or the value of `key` in a flat-keyed file; None when unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return None
    if key is None:
        return int(text.strip()) if text.strip().isdigit() else None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


class CgroupSampler:
    """Follows one container's cgroup; `peak_memory_bytes` and `cpu_seconds` hold the latest reads."""

    def __init__(self, cidfile: Path, root: Path = ROOT, interval: float = 0.2) -> None:
        self.cidfile = cidfile
        self.root = root
        self.interval = interval
        self.peak_memory_bytes: int | None = None
        self.cpu_seconds: float | None = None
        self._memory: Path | None = None
        self._cpu: Path | None = None
        self._v2 = (root / "cgroup.controllers").exists()

    def locate(self, container_id: str) -> bool:
        """Point at the container's counter files; False while its cgroup does not exist (yet)."""
        for place in PLACES:
            relative = place.format(id=container_id)
            if self._v2:
                folder = self.root / relative
                if folder.is_dir():
                    self._memory, self._cpu = folder / "memory.peak", folder / "cpu.stat"
                    return True
            elif (self.root / "memory" / relative).is_dir():
                self._memory = self.root / "memory" / relative / "memory.max_usage_in_bytes"
                self._cpu = self.root / "cpuacct" / relative / "cpuacct.usage"
                return True
        return False

    def read(self) -> None:
        """Take the counters now (a cgroup already gone leaves the previous reads)."""
        if self._memory is None or self._cpu is None:
            return
        peak = _read_int(self._memory)
        if peak is not None:
            self.peak_memory_bytes = max(peak, self.peak_memory_bytes or 0)
        cpu = _read_int(self._cpu, "usage_usec") if self._v2 else _read_int(self._cpu)
        if cpu is not None:
            self.cpu_seconds = cpu / (1e6 if self._v2 else 1e9)

    async def follow(self) -> None:
        """Read every `interval` until cancelled (the engine cancels it when the container ends)."""
        container_id = ""
        while True:
            if self._memory is None:
                if not container_id:
                    try:
                        container_id = self.cidfile.read_text().strip()
                    except OSError:
                        container_id = ""
                if container_id:
                    self.locate(container_id)
            self.read()
            await asyncio.sleep(self.interval)
