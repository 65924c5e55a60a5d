"""podman: daemonless; the default on this project's machines (with runc, see .ci/setup.d/10-podman.sh)."""

from __future__ import annotations

from tesk.backends.local.engines.base import ContainerSpec, run_quietly
from tesk.backends.local.engines.cli import CliEngine

_CANNOT_INVOKE = 126
_CONMON_OOM = "oom"
"""The file conmon creates in its working directory (the task's scratch folder, see `CliEngine`)
when the kernel's OOM killer struck in the container's cgroup."""


class PodmanEngine(CliEngine):
    name = "podman"
    binary = "podman"

    @classmethod
    async def check(cls) -> str | None:
        code, output = await run_quietly(cls.binary, "version", "--format", "{{.Client.Version}}", timeout=15)
        return None if code == 0 else (output or f"`{cls.binary} version` failed")

    def missing_workdir(self, exit_code: int, stderr: str) -> bool:
        # podman refuses a workdir the image lacks ('workdir "/x" does not exist on container'); Docker
        # creates it, and TES clients expect Docker's behaviour.
        return exit_code == _CANNOT_INVOKE and "workdir" in stderr and "does not exist" in stderr

    def force_remove_args(self, names: list[str]) -> list[str]:
        # `-t 0`: no grace period (images whose PID 1 ignores SIGTERM would otherwise take 10 s).
        return ["rm", "--force", "--time", "0", *names]

    def image_exists_args(self, image: str) -> list[str]:
        return ["image", "exists", image]

    async def unlisted_leftovers(self, value: str) -> list[str]:
        # A client killed between registering the name in container storage and recording the
        # container in podman's own database leaves a storage-only container: no labels, so no label
        # filter finds it, yet it holds the name. `--external` lists those too.
        code, output = await run_quietly(self.command, "ps", "--all", "--external", "--format", "{{.Names}}")
        if code != 0:
            raise RuntimeError(f"{self.name} could not list containers: {output}")
        return [name for name in output.split() if f"-{value}-" in name]

    def oom_killed(self, spec: ContainerSpec, exit_code: int) -> bool:
        """conmon's word rather than the exit code: a command that kills itself with SIGKILL is no
        OOM kill. The file is removed, so the task's next executor starts without it."""
        marker = spec.scratch / _CONMON_OOM
        if not marker.exists():
            return False
        marker.unlink(missing_ok=True)
        return True
