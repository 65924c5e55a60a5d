"""Container runtimes for the stand-in kubelet: podman for images, bubblewrap for host-process pods.

Podman (with runc, see .ci/setup.d/10-podman.sh) runs a container per container spec, the way a
CRI runtime does: create (errors are `CreateContainerError`), start attached (stdout and stderr read
as separate streams), inspect (exit code, `OOMKilled`), remove. A working directory missing from
the image is created first, as CRI-O and containerd do (podman alone refuses to start).

Host-process pods run the configured "host images" (the tesk image: taskmaster and filer) as host
processes inside a bubblewrap sandbox: a fresh root with the host's /usr, /etc and the Python
environment read-only, a private /tmp, the host network (so it reaches the API at 127.0.0.1), and
the pod's volumes and service-account files bound at their pod paths, so the process sees exactly
the paths it would see in a real pod.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

OutputSink = Callable[[str, bytes], None]  # (stream "stdout"|"stderr", bytes of one chunk)


@dataclass
class Mount:
    """A host path bound into the container."""

    host: Path
    path: str
    read_only: bool = False


@dataclass
class ContainerRun:
    """Everything needed to start one container of a pod."""

    name: str  # unique engine-level name
    image: str
    command: list[str] | None  # Kubernetes `command` (replaces the image ENTRYPOINT); None keeps it
    args: list[str] | None  # Kubernetes `args` (replaces the image CMD); None keeps it
    env: dict[str, str]
    working_dir: str | None
    mounts: list[Mount]
    hostname: str
    memory_bytes: int | None = None
    cpus: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # "uid" or "uid:gid" (securityContext runAsUser/runAsGroup)
    groups: list[int] = field(default_factory=list)  # supplementalGroups and fsGroup
    read_only_root: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    no_new_privileges: bool = False


@dataclass
class ContainerResult:
    """How a container ended (or why it never started)."""

    exit_code: int
    reason: str  # Completed, Error, OOMKilled, StartError, CreateContainerError
    message: str = ""
    container_id: str = ""


class Handle(Protocol):
    """A started container that the kubelet can stop."""

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        ...


class Runtime(Protocol):
    """What the kubelet needs from a container runtime."""

    async def image_present(self, image: str) -> bool:
        """Whether the image can be run without a pull."""
        ...

    async def image_user(self, image: str) -> str:
        """The image's configured USER ("" for root by default)."""
        ...

    async def run(self, spec: ContainerRun, output: OutputSink,
                  started: Callable[[Handle, str], Awaitable[None]]) -> ContainerResult:
        """Run a container to its end, streaming output; `started` is called once it is running."""
        ...


async def _exec(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _oom_kills() -> int:
    """The kernel's count of OOM kills so far (/proc/vmstat `oom_kill`), or -1 if unavailable.

    podman with runc on cgroup v1 does not report `OOMKilled` here (the container's cgroup is gone
    when conmon looks), so a limited container that dies by SIGKILL while this count rises is
    reported as OOMKilled, as the kubelet would from the cgroup's own counter.
    """
    try:
        with open("/proc/vmstat") as vmstat:
            return next((int(line.split()[1]) for line in vmstat if line.startswith("oom_kill ")), -1)
    except OSError:
        return -1


async def _pump(stream: asyncio.StreamReader, name: str, output: OutputSink) -> None:
    while chunk := await stream.read(65536):
        output(name, chunk)


class PodmanRuntime:
    """Runs containers with podman; `network` is `none` (default) or `host`."""

    def __init__(self, network: str = "none", cluster_label: str = "tesk-devcluster") -> None:
        self.network = network
        self.cluster_label = cluster_label
        self._known_images: set[str] = set()
        self.used = False  # whether any container was created (shutdown skips the clean-up otherwise)

    async def image_present(self, image: str) -> bool:
        """`podman image exists`: no pull is attempted (these machines cannot reach a registry)."""
        if image in self._known_images:
            return True
        code, _, _ = await _exec("podman", "image", "exists", image)
        if code == 0:
            self._known_images.add(image)
        return code == 0

    async def image_user(self, image: str) -> str:
        """`Config.User` of a local image."""
        code, out, _ = await _exec("podman", "image", "inspect", "--format", "{{.Config.User}}", image)
        return out.strip() if code == 0 else ""

    def _create_argv(self, spec: ContainerRun) -> list[str]:
        argv = ["podman", "create", "--name", spec.name, "--pull=never", "--network", self.network,
                "--hostname", spec.hostname, "--label", f"{self.cluster_label}=1"]
        for key, value in spec.labels.items():
            argv += ["--label", f"{key}={value}"]
        for key, value in spec.env.items():
            argv += ["--env", f"{key}={value}"]
        for mount in spec.mounts:
            argv += ["--volume", f"{mount.host}:{mount.path}:{'ro' if mount.read_only else 'rw'}"]
        if spec.working_dir:
            argv += ["--workdir", spec.working_dir]
        if spec.memory_bytes:
            argv += ["--memory", str(spec.memory_bytes), "--memory-swap", str(spec.memory_bytes)]
        if spec.cpus:
            argv += ["--cpus", f"{spec.cpus:g}"]
        if spec.user is not None:
            argv += ["--user", spec.user]
        for group in spec.groups:
            argv += ["--group-add", str(group)]
        if spec.read_only_root:
            # Kubernetes mounts no tmpfs for a read-only root: /tmp is read-only too unless a volume covers it.
            argv += ["--read-only", "--read-only-tmpfs=false"]
        for capability in spec.cap_drop:
            argv += ["--cap-drop", capability]
        for capability in spec.cap_add:
            argv += ["--cap-add", capability]
        if spec.no_new_privileges:
            argv += ["--security-opt", "no-new-privileges"]
        if spec.command is not None:
            argv += ["--entrypoint", json.dumps(spec.command)]
        argv.append(spec.image)
        if spec.args is not None:
            argv += spec.args
        return argv

    async def run(self, spec: ContainerRun, output: OutputSink,
                  started: Callable[[Handle, str], Awaitable[None]]) -> ContainerResult:
        """create -> (make a missing working directory) -> start --attach -> inspect -> rm."""
        self.used = True
        code, out, err = await _exec(*self._create_argv(spec))
        if code != 0:
            return ContainerResult(128, "CreateContainerError", err.strip().removeprefix("Error: "))
        container_id = f"podman://{out.strip()}"
        kills_before = _oom_kills()
        try:
            workdir = spec.working_dir
            if workdir and not any(workdir == m.path or workdir.startswith(m.path.rstrip("/") + "/")
                                   for m in spec.mounts):
                await self._make_workdir(spec.name, workdir)
            # cwd: conmon leaves an `oom` file in its working directory when the container is
            # OOM-killed; the temp folder keeps it out of wherever the cluster was started.
            process = await asyncio.create_subprocess_exec(
                "podman", "start", "--attach", spec.name, cwd=tempfile.gettempdir(),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            await started(_PodmanHandle(spec.name, process), container_id)
            assert process.stdout is not None and process.stderr is not None
            errors: list[bytes] = []

            def sink(stream: str, chunk: bytes) -> None:
                if stream == "stderr":
                    errors.append(chunk)
                output(stream, chunk)

            await asyncio.gather(_pump(process.stdout, "stdout", sink), _pump(process.stderr, "stderr", sink))
            await process.wait()
            state = await self._inspect(spec.name)
            if state.get("Status") == "created":  # the runtime could not start the process
                message = b"".join(errors).decode(errors="replace").strip().removeprefix("Error: ")
                return ContainerResult(128, "StartError", message, container_id=container_id)
            exit_code = int(state.get("ExitCode", process.returncode or 0))
            oom = bool(state.get("OOMKilled")) or (
                exit_code == 137 and spec.memory_bytes is not None and _oom_kills() > kills_before >= 0)
            reason = "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error")
            return ContainerResult(exit_code, reason, container_id=container_id)
        finally:
            await _exec("podman", "rm", "--force", "--time", "0", spec.name)

    @staticmethod
    async def _inspect(name: str) -> dict[str, Any]:
        code, out, _ = await _exec("podman", "inspect", "--type", "container", name)
        if code != 0:
            return {}
        data = json.loads(out)
        return data[0].get("State", {}) if data else {}

    @staticmethod
    async def _make_workdir(name: str, working_dir: str) -> None:
        """Create the working directory in the container's root file system (CRI runtimes do this)."""
        code, out, err = await _exec("podman", "mount", name)
        if code != 0:
            log.warning("could not mount container %s to create its working directory: %s", name, err.strip())
            return
        try:
            folder = Path(out.strip())
            for part in Path(working_dir).parts[1:]:
                folder = folder / part
                if folder.is_symlink() or folder.is_file():
                    break  # never follow an image's symlink out of its root: podman will judge the path
                folder.mkdir(exist_ok=True)
        finally:
            await _exec("podman", "unmount", name)

    async def remove_all(self) -> None:
        """Remove every container this cluster started (shutdown clean-up)."""
        if not self.used:
            return
        code, out, _ = await _exec("podman", "ps", "--all", "--quiet", "--filter", f"label={self.cluster_label}=1")
        ids = out.split()
        if code == 0 and ids:
            await _exec("podman", "rm", "--force", "--time", "0", *ids)


class _PodmanHandle:
    """Stops a container whose `podman start --attach` is `process`.

    `podman stop` on a container that `podman start` has not started yet does nothing, and the start
    then goes ahead: a pod deleted at that moment would run on. So stop again until `podman start`
    has ended (it ends with the container); the grace runs from the first stop.
    """

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name, self.process = name, process

    async def stop(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.process.returncode is None:
            left = max(0, math.ceil(deadline - loop.time()))
            await _exec("podman", "stop", "--time", str(left), self.name)
            try:
                async with asyncio.timeout(0.5):
                    await asyncio.shield(self.process.wait())
            except TimeoutError:
                log.debug("container %s was not running yet when stopped: stopping it again", self.name)


def host_binds() -> list[str]:
    """Read-only host folders a host-process pod needs: the OS and this Python environment."""
    folders = {"/usr", "/etc", "/opt"}
    for candidate in [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
                      str(Path(__file__).resolve().parents[2]), *sys.path]:
        if candidate and os.path.isdir(candidate):
            folders.add(os.path.realpath(candidate))
            folders.add(os.path.abspath(candidate))
    # Keep only the top-most folders: binding /a and /a/b separately is redundant.
    ordered = sorted(folders)
    kept: list[str] = []
    for folder in ordered:
        if not any(folder == k or folder.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(folder)
    return kept


class HostRuntime:
    """Runs host-process pods in a bubblewrap sandbox (see the module docstring)."""

    def __init__(self, entrypoint: list[str]) -> None:
        self.entrypoint = entrypoint

    async def image_present(self, image: str) -> bool:
        """Host images are always "present": the host is the image."""
        return True

    async def image_user(self, image: str) -> str:
        """Host-process pods run as this process's user; securityContext is not applied to them."""
        return str(os.getuid())

    def argv(self, spec: ContainerRun) -> list[str]:
        """The bwrap command line for a container spec."""
        argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--hostname", spec.hostname, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--tmpfs", "/run", "--dir", "/var/tmp"]
        for entry in sorted(os.listdir("/")):
            target = os.path.join("/", entry)
            if os.path.islink(target):
                argv += ["--symlink", os.readlink(target), target]
        for folder in host_binds():
            argv += ["--ro-bind", folder, folder]
        for mount in sorted(spec.mounts, key=lambda m: m.path.count("/")):
            argv += ["--ro-bind" if mount.read_only else "--bind", str(mount.host), mount.path]
        workdir = spec.working_dir or "/"
        covered = [m.path for m in spec.mounts] + host_binds() + ["/tmp", "/run", "/proc", "/dev"]
        if not any(workdir == c or workdir.startswith(c.rstrip("/") + "/") for c in covered):
            argv += ["--dir", workdir]  # like a CRI runtime, create a working directory the "image" lacks
        argv += ["--chdir", workdir, "--clearenv"]
        defaults = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/root", "HOSTNAME": spec.hostname}
        for key, value in {**defaults, **spec.env}.items():
            argv += ["--setenv", key, value]
        command = spec.command if spec.command is not None else self.entrypoint
        argv += ["--", *command, *(spec.args or [])]
        return argv

    async def run(self, spec: ContainerRun, output: OutputSink,
                  started: Callable[[Handle, str], Awaitable[None]]) -> ContainerResult:
        """Start bwrap, stream its output, wait for it."""
        try:
            process = await asyncio.create_subprocess_exec(*self.argv(spec), stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return ContainerResult(128, "StartError", f"cannot start bwrap: {exc}")
        await started(_ProcessHandle(process), f"host://{process.pid}")
        assert process.stdout is not None and process.stderr is not None
        await asyncio.gather(_pump(process.stdout, "stdout", output), _pump(process.stderr, "stderr", output))
        code = await process.wait()
        if code < 0:
            code = 128 - code
        return ContainerResult(code, "Completed" if code == 0 else "Error", container_id=f"host://{process.pid}")


class _ProcessHandle:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def stop(self, grace: float) -> None:
        if self.process.returncode is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(self.process.wait(), timeout=max(grace, 0.1))
        except TimeoutError:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
