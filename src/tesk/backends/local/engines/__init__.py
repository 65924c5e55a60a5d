"""Container engines of the local backend: one plug-in per file, chosen by `TESK_LOCAL_ENGINE`.

An engine runs one executor as one container (or process) whose stdout and stderr are written by the
host to files, so no shell is needed in the image, and whose exit code is the executor's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tesk.backends.local.engines.base import (
    LABEL_EXECUTOR,
    LABEL_INSTANCE,
    LABEL_TASK,
    ContainerExit,
    ContainerSpec,
    Engine,
    run_quietly,
)
from tesk.config.local import EngineChoice, LocalSettings

if TYPE_CHECKING:
    from tesk.backends.local.engines.cli import CliEngine

__all__ = [
    "LABEL_EXECUTOR",
    "LABEL_INSTANCE",
    "LABEL_TASK",
    "ContainerExit",
    "ContainerSpec",
    "Engine",
    "run_quietly",
    "select_engine",
]

log = logging.getLogger(__name__)


async def select_engine(settings: LocalSettings) -> Engine:
    """The configured engine, or with `auto` the first that answers: docker, then podman."""
    from tesk.backends.local.engines.docker import DockerEngine
    from tesk.backends.local.engines.podman import PodmanEngine
    from tesk.backends.local.engines.process import ProcessEngine

    choice = settings.engine
    if choice is EngineChoice.PROCESS:
        return ProcessEngine.create(settings)
    candidates: list[type[CliEngine]] = [DockerEngine, PodmanEngine]
    if choice is not EngineChoice.AUTO:
        candidates = [cls for cls in candidates if cls.name == choice.value]
    problems: list[str] = []
    for cls in candidates:
        problem = await cls.check()
        if problem is None:
            log.info("local backend: running tasks with %s", cls.name)
            return cls(settings)
        problems.append(f"{cls.name}: {problem}")
    raise RuntimeError(
        "no container engine can run tasks on this host ("
        + "; ".join(problems)
        + "). Install podman or docker, or set TESK_LOCAL_ENGINE=process to run commands on the host "
        "without containers."
    )
