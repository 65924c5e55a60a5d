"""process: run executors' commands on the host itself, without containers (opt-in, for HPC nodes and
development where no container engine exists).

The image is ignored. The command sees the host's whole filesystem, network and user; the only thing
done for it is a private mount namespace (bubblewrap) so that the task area appears at the container
paths the task names, as it would in a container, plus a private /tmp. No cpu or memory limits are
enforced. Processes die with the server (`--die-with-parent`), so nothing outlives a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
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
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
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
        code, timed_out = await self._run_once(spec, extra)
        ended = datetime.now(UTC)
        if code == 1:
            last = (tail_text(spec.stderr, 1000).strip().splitlines() or [""])[-1]
            if last.startswith("bwrap: execvp "):
                code = _CANNOT_EXECUTE if "ermission denied" in last else _NOT_FOUND
            elif last.startswith("bwrap: "):
                os.ftruncate(spec.stderr, 0)
                raise TaskFailure(f"the process engine could not start the command: {last}")
        return ContainerExit(code, started, ended, timed_out=timed_out)

    @staticmethod
    def _exists_inside(spec: ContainerSpec, path: str) -> bool:
        """Whether `path` will exist in the executor's view: under a mount, or on the host."""
        for mount in spec.mounts:
            if path == mount.container_path or path.startswith(mount.container_path.rstrip("/") + "/"):
                return (mount.host_path / os.path.relpath(path, mount.container_path)).exists()
        top = path.strip("/").split("/")[0]
        return top not in _PRIVATE and Path(path).is_dir()

    async def _run_once(self, spec: ContainerSpec, extra: list[Mount]) -> tuple[int, bool]:
        """The command's exit code, and whether it was stopped at `spec.time_limit`."""
        args = self.args(spec, extra)
        spec.rewind()
        stdin = asyncio.subprocess.DEVNULL if spec.stdin is None else spec.stdin
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=stdin, stdout=spec.stdout, stderr=spec.stderr, start_new_session=True
        )
        timed_out = False
        try:
            async with asyncio.timeout(spec.time_limit):
                code = await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            code, timed_out = await proc.wait(), True
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            raise
        return (128 - code if code < 0 else code), timed_out

    async def remove_labelled(self, label: str, value: str) -> list[str]:
        """Nothing to do: executors die with the server process that started them."""
        return []
