"""process: run executors' commands on the host itself, without containers (opt-in, for HPC nodes and
development where no container engine exists).

The image is ignored. The command sees the host's whole filesystem, network and user; the only thing
done for it is a private mount namespace (bubblewrap) so that the task area appears at the container
paths the task names, as it would in a container, plus a private /tmp. No cpu or memory limits are
enforced. Processes die with the server (`--die-with-parent`), so nothing outlives a crash. The
command is PID 1 of its own PID namespace, as in a container started without `--init`: when it ends,
whatever it left running is killed.

What an executor used comes from the kernel's accounting of bubblewrap's process when it is reaped
(`wait4`, see `_Child`): the CPU time of the command and of every process of it that was waited for
(one still running when the command ends is killed with its namespace, and its time is lost), and
the largest peak RSS of any one of them (`ru_maxrss`), not their sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from tesk.backends.local.engines.base import LABEL_EXECUTOR, ContainerExit, ContainerSpec
from tesk.backends.local.engines.cli import tail_text
from tesk.config.local import LocalSettings
from tesk.filer import Mount
from tesk.runner import Note, TaskFailure

_KEPT_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TZ")
_PRIVATE = {"proc", "dev", "tmp"}
_NOT_FOUND, _CANNOT_EXECUTE = 127, 126


@dataclass(frozen=True)
class _Ended:
    exit_code: int
    """Negative: the signal that killed bubblewrap."""
    peak_memory_bytes: int | None
    cpu_seconds: float


def _memory_high_water_kib() -> int:
    """This process's address space's peak resident size, KiB (`VmHWM` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


class _Child:
    """A started bubblewrap, reaped here with `wait4` so its resource use comes with its exit status.

    asyncio's subprocesses are reaped by its child watcher with `waitpid`, which drops the rusage; this
    child is started with `subprocess.Popen` instead, which no watcher knows, and its exit is noticed
    through a pidfd on the event loop. The Popen is told the exit code, so that it never waits for the
    pid itself (the pid may be another child's by then).

    Linux keeps the forking process's memory high-water mark in its child's `ru_maxrss` (exec saves
    the old address space's peak, and Popen's child starts with the server's), so the figure is the
    executor's only when it is above the server's own peak read after the start; below it, the
    executor's peak is unknown and reported as None. That peak is the server's address space's
    (`VmHWM`), not its own `ru_maxrss`, which also holds what the server inherited when it was started
    (from a large parent, it would hide every executor's figure)."""

    def __init__(self, args: list[str], stdin: int | None, stdout: int, stderr: int) -> None:
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                         stdout=stdout, stderr=stderr, start_new_session=True)
        self.pid = self._process.pid
        self._inherited_kib = _memory_high_water_kib()
        self._ended: asyncio.Future[_Ended] = asyncio.get_running_loop().create_future()
        self._pidfd = os.pidfd_open(self.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self._stop_watching()
            self._ended.set_exception(TaskFailure(
                f"the process engine lost its command (bubblewrap, pid {self.pid}): something else in this "
                "server reaped it, such as an asyncio child watcher that waits for any child; its exit code "
                "is unknown"))
            return
        if pid == 0:
            return
        self._stop_watching()
        self._process.returncode = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss * 1024 if usage.ru_maxrss > self._inherited_kib else None  # Linux: KiB
        self._ended.set_result(_Ended(self._process.returncode, peak, usage.ru_utime + usage.ru_stime))

    def _stop_watching(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)

    async def wait(self) -> _Ended:
        """How it ended; a cancelled wait leaves the reaping in place."""
        return await asyncio.shield(self._ended)

    def kill(self) -> None:
        """SIGKILL the whole session (bubblewrap and what it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


class ProcessEngine:
    name: ClassVar[str] = "process"

    def __init__(self, settings: LocalSettings, bwrap: str) -> None:
        self.settings = settings
        self.bwrap = bwrap

    @classmethod
    def create(cls, settings: LocalSettings) -> ProcessEngine:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError(
                "TESK_LOCAL_ENGINE=process needs bubblewrap (`bwrap`) to place the task's files at their "
                "container paths; install it (Debian/Ubuntu: apt-get install bubblewrap)"
            )
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError as exc:
            raise RuntimeError(f"TESK_LOCAL_ENGINE=process needs Linux 5.3 or later to follow its commands (pidfd_open: {exc})") from exc
        if settings.network not in (None, "host", "none"):
            raise RuntimeError(f"TESK_LOCAL_NETWORK={settings.network} is not possible with the process engine; use host or none")
        return cls(settings, bwrap)

    def _check_mount_point(self, container: str) -> None:
        """A mount point inside a host folder shown as-is would have to be created on the real host."""
        top = container.strip("/").split("/")[0]
        if top not in _PRIVATE and Path("/", top).exists() and not Path(container).exists():
            raise TaskFailure(
                f"the process engine cannot place {container}: /{top} is this host's own folder and "
                f"{container} does not exist in it; use a path in a folder the host does not have (e.g. /data)"
            )

    def args(self, spec: ContainerSpec, extra: list[Mount]) -> list[str]:
        # --as-pid-1: bubblewrap's own init would be reaped after bubblewrap exits, taking the command's
        # rusage with it; the command is PID 1 instead, as in a container started without --init.
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts"]
        if self.settings.network == "none":
            args.append("--unshare-net")
        for entry in sorted(os.scandir("/"), key=lambda e: e.name):
            if entry.name in _PRIVATE:
                continue
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry.path), entry.path]
            else:
                args += ["--bind", entry.path, entry.path]
        args += ["--proc", "/proc", "--dev-bind", "/dev", "/dev", "--tmpfs", "/tmp"]
        for mount in [*spec.mounts, *extra]:
            self._check_mount_point(mount.container_path)
            args += ["--bind", str(mount.host_path), mount.container_path]
        args.append("--clearenv")
        for key in _KEPT_ENVIRONMENT:
            if key in os.environ:
                args += ["--setenv", key, os.environ[key]]
        for key, value in spec.env.items():
            args += ["--setenv", key, value]
        if spec.workdir:
            args += ["--chdir", spec.workdir]
        return [*args, "--", *spec.command]

    async def run(self, spec: ContainerSpec, note: Note) -> ContainerExit:
        if spec.labels.get(LABEL_EXECUTOR) == "0":  # once per task, not once per executor
            note("the process engine runs the commands on this host: executor images are not used"
                 + ("; cpu_cores and ram_gb are not enforced" if spec.cpu_cores or spec.ram_bytes else ""))
        extra: list[Mount] = []
        if spec.workdir and spec.workdir_folder and not self._exists_inside(spec, spec.workdir):
            extra.append(Mount(spec.workdir, spec.workdir_folder()))
        started = datetime.now(UTC)
        code, timed_out, used = await self._run_once(spec, extra)
        ended = datetime.now(UTC)
        if code == 1:
            last = (tail_text(spec.stderr, 1000).strip().splitlines() or [""])[-1]
            if last.startswith("bwrap: execvp "):
                code = _CANNOT_EXECUTE if "ermission denied" in last else _NOT_FOUND
            elif last.startswith("bwrap: "):
                os.ftruncate(spec.stderr, 0)
                raise TaskFailure(f"the process engine could not start the command: {last}")
        return ContainerExit(code, started, ended, timed_out=timed_out,
                             peak_memory_bytes=used.peak_memory_bytes, cpu_seconds=used.cpu_seconds)

    @staticmethod
    def _exists_inside(spec: ContainerSpec, path: str) -> bool:
        """Whether `path` will exist in the executor's view: under a mount, or on the host."""
        for mount in spec.mounts:
            if path == mount.container_path or path.startswith(mount.container_path.rstrip("/") + "/"):
                return (mount.host_path / os.path.relpath(path, mount.container_path)).exists()
        top = path.strip("/").split("/")[0]
        return top not in _PRIVATE and Path(path).is_dir()

    async def _run_once(self, spec: ContainerSpec, extra: list[Mount]) -> tuple[int, bool, _Ended]:
        """The command's exit code, whether it was stopped at `spec.time_limit`, and how it ended."""
        args = self.args(spec, extra)
        spec.rewind()
        child = _Child(args, spec.stdin, spec.stdout, spec.stderr)
        timed_out = False
        try:
            async with asyncio.timeout(spec.time_limit):
                ended = await child.wait()
        except TimeoutError:
            child.kill()
            ended, timed_out = await child.wait(), True
        except asyncio.CancelledError:
            child.kill()
            await child.wait()
            raise
        code = ended.exit_code
        return (128 - code if code < 0 else code), timed_out, ended

    async def remove_labelled(self, label: str, value: str) -> list[str]:
        """Nothing to do: executors die with the server process that started them."""
        return []
