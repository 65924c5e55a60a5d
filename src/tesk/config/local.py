"""Settings of the local backend (`TESK_LOCAL_*`): which engine, how much of this host, what to keep."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tesk.models import State


class EngineChoice(StrEnum):
    AUTO = "auto"
    DOCKER = "docker"
    PODMAN = "podman"
    PROCESS = "process"


class KeepAreas(StrEnum):
    NEVER = "never"
    FAILED = "failed"
    ALWAYS = "always"


class PullPolicy(StrEnum):
    MISSING = "missing"
    NEVER = "never"


def host_cpu_cores() -> float:
    """Cores this process may use (its affinity mask), which is what a container can really get."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return float(os.cpu_count() or 1)


def host_ram_gb() -> float:
    """Physical memory of this host in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


class LocalSettings(BaseSettings):
    """How the local backend runs tasks on this host."""

    model_config = SettingsConfigDict(env_prefix="TESK_LOCAL_", extra="ignore")

    engine: EngineChoice = Field(
        EngineChoice.AUTO,
        description="Container engine: `auto` (docker if its daemon answers, else podman), `docker`, "
        "`podman`, or `process` (runs commands on the host without containers; opt-in only).",
    )
    network: str | None = Field(
        None, description="Network of the task containers: unset = the engine's default, `host`, `none`."
    )
    max_tasks: int | None = Field(
        None,
        ge=0,
        description="Most tasks run at once (unset = as many as the capacity allows). 0 = drain: tasks are "
        "accepted and queued but none starts.",
    )
    cpu_cores: float = Field(default_factory=host_cpu_cores, gt=0, description="Cores tasks may reserve (default: this host's).")
    ram_gb: float = Field(default_factory=host_ram_gb, gt=0, description="GiB of memory tasks may reserve (default: this host's).")
    default_cpu_cores: float = Field(
        1.0, ge=0, description="Cores reserved for a task that does not ask for `cpu_cores`."
    )
    log_tail_bytes: int = Field(
        64 * 1024, ge=0, description="Bytes of each executor's stdout and of its stderr kept in the task log."
    )
    keep_task_areas: KeepAreas = Field(
        KeepAreas.NEVER,
        description="Keep a finished task's files for debugging: `never`, `failed` (not COMPLETE), `always`.",
    )
    task_dir: Path | None = Field(None, description="Folder of the per-task areas (default: DATA_DIR/tasks).")
    pull: PullPolicy = Field(
        PullPolicy.MISSING, description="Image pulls: `missing` (pull images not on this host) or `never`."
    )
    backfill_seconds: float = Field(
        600.0,
        ge=0,
        description="How long smaller tasks may pass a queued task that does not fit yet, before the queue "
        "waits for it (prevents starving large tasks).",
    )
    max_attempts: int = Field(
        3, ge=1, description="Runs of a task interrupted by a server restart before it is given up as SYSTEM_ERROR."
    )
    lease_seconds: float = Field(
        30.0,
        gt=0,
        description="How long this server's hold on its tasks lasts without renewal (renewed every third of "
        "it); once it has expired, another replica on the same store takes its unfinished tasks over.",
    )
    cancel_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often this server looks in the store for cancels of its tasks that came through "
        "another replica.",
    )

    def keeps_area(self, final_state: State) -> bool:
        """Whether a task's files stay on disk after it ended in `final_state` (`keep_task_areas`)."""
        keep = self.keep_task_areas
        return keep is KeepAreas.ALWAYS or (keep is KeepAreas.FAILED and final_state is not State.COMPLETE)

    @field_validator("network")
    @classmethod
    def _network(cls, v: str | None) -> str | None:
        v = (v or "").strip()
        return v or None
