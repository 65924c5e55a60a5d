"""docker: the Docker engine through its CLI (also any daemon speaking its API, via DOCKER_HOST)."""

from __future__ import annotations

from tesk.backends.local.engines.base import run_quietly
from tesk.backends.local.engines.cli import CliEngine


class DockerEngine(CliEngine):
    name = "docker"
    binary = "docker"

    @classmethod
    async def check(cls) -> str | None:
        # The client alone is not enough: the daemon must answer (a client without a daemon is common).
        code, output = await run_quietly(cls.binary, "version", "--format", "{{.Server.Version}}", timeout=10)
        if code == 0:
            return None
        return output.splitlines()[-1] if output else f"`{cls.binary} version` failed"
