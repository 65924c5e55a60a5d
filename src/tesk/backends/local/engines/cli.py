"""What docker and podman share: both are driven through their command-line clients.

The client runs in the foreground with its stdout and stderr redirected by us to files of the task
area, so capture needs nothing in the image. Images are never pulled implicitly (`--pull=never`):
a missing image is pulled in a separate, logged step when the pull policy allows it, so pull progress
never ends up in an executor's stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from tesk.backends.local.engines.base import ContainerExit, ContainerSpec, run_quietly
from tesk.backends.local.engines.cgroups import CgroupSampler
from tesk.config.local import LocalSettings, PullPolicy
from tesk.failures import FailureReason
from tesk.filer import Mount
from tesk.runner import Note, TaskFailure

ENGINE_ERROR = 125
"""Exit code docker and podman use when they themselves failed (the container never ran)."""
KILLED = 128 + 9
"""The exit code of a container whose main process was killed with SIGKILL (the OOM killer's signal)."""

_NAME_IN_USE = "is already in use"
"""What docker and podman both say when `--name` is taken."""
_MESSAGE_BYTES = 2000
_PULL_TIMEOUT = 1800.0
_STOP_ROUNDS = 20


def tail_text(fd: int, limit: int) -> str:
    """The last `limit` bytes of an open file as text (undecodable bytes replaced)."""
    if limit <= 0:
        return ""
    size = os.fstat(fd).st_size
    start = max(0, size - limit)
    return os.pread(fd, size - start, start).decode("utf-8", errors="replace")


class CliEngine:
    """A container engine driven through a docker-compatible CLI."""

    name: ClassVar[str]
    binary: ClassVar[str]

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.command = shutil.which(self.binary) or self.binary

    @classmethod
    async def check(cls) -> str | None:
        """None when the engine can run containers here, else why not."""
        raise NotImplementedError

    # -- engine differences ---------------------------------------------------------------------

    def missing_workdir(self, exit_code: int, stderr: str) -> bool:
        """True when the engine refused to start because the image lacks the workdir."""
        return False

    def force_remove_args(self, names: list[str]) -> list[str]:
        return ["rm", "-f", *names]

    def image_exists_args(self, image: str) -> list[str]:
        return ["image", "inspect", image]

    async def unlisted_leftovers(self, value: str) -> list[str]:
        """Containers a killed client left half-made, which the label filter cannot see, whose names
        carry `value` (an instance or task id; see `runtime.container_name`). None by default."""
        return []

    def oom_killed(self, spec: ContainerSpec, exit_code: int) -> bool:
        """Whether the container that just ended was killed for its memory. `--rm` leaves no
        `State.OOMKilled` to inspect, so by default: killed (137) while it had a memory limit."""
        return exit_code == KILLED and spec.ram_bytes is not None

    # -- running ----------------------------------------------------------------------------------

    def run_args(self, spec: ContainerSpec, cidfile: Path, extra_mounts: list[Mount]) -> list[str]:
        args = [self.command, "run", "--rm", "--pull=never", "--cidfile", str(cidfile), "--name", spec.name]
        if spec.stdin is not None:
            args.append("--interactive")
        for key, value in spec.labels.items():
            args += ["--label", f"{key}={value}"]
        for mount in [*spec.mounts, *extra_mounts]:
            args += ["--volume", f"{mount.host_path}:{mount.container_path}"]
        if spec.workdir:
            args += ["--workdir", spec.workdir]
        for key, value in spec.env.items():
            args += ["--env", f"{key}={value}"]
        if spec.network:
            args += ["--network", spec.network]
        if spec.cpu_cores:
            args += ["--cpus", f"{spec.cpu_cores:g}"]
        if spec.ram_bytes:
            args += ["--memory", str(spec.ram_bytes), "--memory-swap", str(spec.ram_bytes)]
        return [*args, "--", spec.image, *spec.command]

    async def run(self, spec: ContainerSpec, note: Note) -> ContainerExit:
        extra: list[Mount] = []
        pulled = False
        deadline = None if spec.time_limit is None else asyncio.get_running_loop().time() + spec.time_limit
        freed = False
        for attempt in range(3):
            cidfile = spec.scratch / f"{spec.name}.{attempt}.cid"
            started = datetime.now(UTC)
            usage = CgroupSampler(cidfile)
            code, timed_out = await self._run_once(spec, cidfile, extra, deadline, usage)
            ended = datetime.now(UTC)
            created = cidfile.exists()
            marked = self.oom_killed(spec, code)  # asked after every run: podman's marker must go
            oom_killed = code != 0 and marked
            if timed_out:
                return ContainerExit(code, started, ended, timed_out=True,
                                     peak_memory_bytes=usage.peak_memory_bytes, cpu_seconds=usage.cpu_seconds)
            if code == ENGINE_ERROR and not created:
                message = self._engine_message(spec.stderr)
                if _NAME_IN_USE in message and not freed:
                    # The name is this task's executor's own; this server holds the task and runs the
                    # executor once at a time, so what holds the name is a leftover of an earlier run
                    # (a client killed while it was creating the container leaves one no listing shows).
                    await run_quietly(self.command, *self.force_remove_args([spec.name]), timeout=30)
                    note(f"removed container {spec.name}, which an earlier run of the server left half-made")
                    freed = True
                    continue
                if await self.image_present(spec.image):
                    raise TaskFailure(f"{self.name} could not create the container: {message}")
                if self.settings.pull is PullPolicy.NEVER or pulled:
                    raise TaskFailure(
                        f"image {spec.image} is not on this host"
                        + (" and pulling it did not make it available" if pulled else " (TESK_LOCAL_PULL=never)")
                        + f"; {self.name} said: {message}",
                        FailureReason.IMAGE_PULL_FAILED,
                    )
                await self.pull(spec.image, note)
                pulled = True
                continue
            if spec.workdir and spec.workdir_folder and not extra and self.missing_workdir(code, tail_text(spec.stderr, _MESSAGE_BYTES)):
                extra = [Mount(spec.workdir, spec.workdir_folder())]
                note(f"workdir {spec.workdir} is not in image {spec.image}; it was created as an empty folder")
                continue
            return ContainerExit(code, started, ended, oom_killed=oom_killed,
                                 peak_memory_bytes=usage.peak_memory_bytes, cpu_seconds=usage.cpu_seconds)
        raise TaskFailure(f"{self.name} could not start the container after several attempts")

    def _engine_message(self, stderr: int) -> str:
        """The engine's own error text (it went to the stderr file), cleared so it is not the executor's."""
        message = tail_text(stderr, _MESSAGE_BYTES).strip() or "(no message)"
        os.ftruncate(stderr, 0)
        return message.replace("\n", " | ")

    async def _run_once(self, spec: ContainerSpec, cidfile: Path, extra: list[Mount],
                        deadline: float | None, usage: CgroupSampler) -> tuple[int, bool]:
        """One `run` of the client: its exit code, and whether it was stopped at `deadline` (loop time);
        `usage` follows the container's cgroup meanwhile."""
        cidfile.unlink(missing_ok=True)
        args = self.run_args(spec, cidfile, extra)
        spec.rewind()
        stdin = asyncio.subprocess.DEVNULL if spec.stdin is None else spec.stdin
        try:
            # cwd: podman's conmon leaves an `oom` file in its working directory when the
            # container is OOM-killed; keep it in the task's folder, not wherever tesk runs.
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=stdin, stdout=spec.stdout, stderr=spec.stderr, cwd=spec.scratch
            )
        except OSError as exc:
            raise TaskFailure(f"could not start {self.command}: {exc}") from exc
        following = asyncio.create_task(usage.follow())
        try:
            async with asyncio.timeout_at(deadline):
                return await proc.wait(), False
        except TimeoutError:
            usage.read()
            await asyncio.shield(self._stop(spec.name, proc))
            return proc.returncode if proc.returncode is not None else KILLED, True
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(spec.name, proc))
            raise
        finally:
            following.cancel()

    async def _stop(self, name: str, proc: asyncio.subprocess.Process) -> None:
        """Kill the container (the client's exit alone would leave it running), then wait for the client.

        The kill is repeated because a cancel can arrive while the container is still being created."""
        for _ in range(_STOP_ROUNDS):
            await run_quietly(self.command, "kill", name, timeout=10)
            try:
                await asyncio.wait_for(proc.wait(), 0.5)
                return
            except TimeoutError:
                continue
        await run_quietly(self.command, *self.force_remove_args([name]), timeout=30)

    async def image_present(self, image: str) -> bool:
        code, _ = await run_quietly(self.command, *self.image_exists_args(image))
        return code == 0

    async def pull(self, image: str, note: Note) -> None:
        started = datetime.now(UTC)
        code, output = await run_quietly(self.command, "pull", image, timeout=_PULL_TIMEOUT)
        seconds = (datetime.now(UTC) - started).total_seconds()
        if code != 0:
            last = output.splitlines()[-1] if output else "(no message)"
            raise TaskFailure(f"image {image} is not on this host and pulling it failed: {last}",
                              FailureReason.IMAGE_PULL_FAILED)
        note(f"pulled image {image} in {seconds:.1f} s")

    async def remove_labelled(self, label: str, value: str) -> list[str]:
        # A killed server's `podman run` clients outlive it and may still be creating their containers:
        # stop them first, or a container made after the listing below would keep the name a re-run needs.
        await asyncio.to_thread(_kill_clients, self.command, f"{label}={value}")
        code, output = await run_quietly(
            self.command, "ps", "--all", "--filter", f"label={label}={value}", "--format", "{{.Names}}"
        )
        if code != 0:
            raise RuntimeError(f"{self.name} could not list containers: {output}")
        names = [line.strip() for line in output.splitlines() if line.strip()]
        names += [name for name in await self.unlisted_leftovers(value) if name not in names]
        if names:
            await run_quietly(self.command, *self.force_remove_args(names), timeout=60)
        return names


def _kill_clients(command: str, label: str) -> None:
    """SIGKILL every `<engine> run` client on this host whose arguments carry `label`, and wait (up to
    10 s) until they are gone; only clients a previous run left match, since a live server never
    removes the containers it is still starting."""
    engine = os.path.basename(command).encode()
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == engine and b"run" in argv and label.encode() in argv:
            pids.append(int(entry.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (killed, not yet reaped by whoever adopted it) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
