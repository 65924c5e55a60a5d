"""What every container engine of the local backend shares: the spec of one run, its exit, the
`Engine` protocol, the labels that mark tesk's containers, and a helper-command runner.

The engine modules import this, not the package, so the package can choose among them without a
cycle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol

from tesk.filer import Mount
from tesk.runner import Note

LABEL_TASK = "tesk.task-id"
LABEL_EXECUTOR = "tesk.executor"
LABEL_INSTANCE = "tesk.instance"
"""Which server (data folder) owns a container, so reconciliation never touches another server's."""


@dataclass
class ContainerSpec:
    """One executor as the engine must run it. The streams are file descriptors the runtime opened
    beneath the task area (stdout and stderr readable too, for their tails), so an engine never
    opens a path inside the area itself; `scratch` is tesk's own folder of the task (not mounted)."""

    name: str
    image: str
    command: list[str]
    stdout: int
    stderr: int
    scratch: Path
    """A folder for the engine's own files (container id files) and its working directory."""
    stdin: int | None = None
    workdir: str | None = None
    workdir_folder: Callable[[], Path] | None = None
    """Creates the host folder to mount at `workdir` when the image lacks it (Docker creates it;
    podman refuses) and returns it; raises `TaskFailure` when the area refuses that path."""
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cpu_cores: float | None = None
    ram_bytes: int | None = None
    network: str | None = None
    time_limit: float | None = None
    """Seconds the command may run (from its start, image pulls included); then it is stopped."""

    def rewind(self) -> None:
        """Start an attempt afresh: empty stdout and stderr, stdin from its first byte."""
        for fd in {self.stdout, self.stderr}:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        if self.stdin is not None:
            os.lseek(self.stdin, 0, os.SEEK_SET)


@dataclass(frozen=True)
class ContainerExit:
    exit_code: int
    start_time: datetime
    end_time: datetime
    oom_killed: bool = False
    """The kernel killed the container for going past `ram_bytes` (as far as the engine can tell)."""
    timed_out: bool = False
    """The engine stopped the command at `time_limit`."""
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    """What the container used, where the engine could measure it (`cgroups.CgroupSampler`; the
    process engine: its bubblewrap's rusage)."""


class Engine(Protocol):
    name: ClassVar[str]

    async def run(self, spec: ContainerSpec, note: Note) -> ContainerExit:
        """Run to the end, or stop it at `spec.time_limit`. Raise `TaskFailure` when nothing could run
        (image missing, engine error). When cancelled, stop the container (within about a second)
        before re-raising."""

    async def remove_labelled(self, label: str, value: str) -> list[str]:
        """Stop and remove every container carrying `label=value`; return their names."""


async def run_quietly(*args: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run a helper command; return its exit code and its combined output (for messages)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        return 127, str(exc)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"{args[0]} {args[1] if len(args) > 1 else ''} did not answer within {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace").strip()
