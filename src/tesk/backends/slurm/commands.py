"""Slurm's commands (sbatch, squeue, scancel), run as subprocesses with their errors made readable."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

JOB_PREFIX = "tesk-"
"""Jobs of tasks are named `tesk-<task id>`: a restarted API finds its tasks' jobs by name."""

ACTIVE_JOB_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
     "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
)
"""Job states in which the job may still run (or is still ending: COMPLETING); see squeue(1)."""


class SlurmError(Exception):
    """A Slurm command failed; the message has the command and what it printed."""


@dataclass(frozen=True)
class Job:
    job_id: str
    name: str
    state: str
    reason: str
    restarts: int = 0
    """How often Slurm started the job again (requeue, a lost node); the run now due is number `restarts`."""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES

    @property
    def task_id(self) -> str:
        return self.name.removeprefix(JOB_PREFIX)


def job_name(task_id: str) -> str:
    return f"{JOB_PREFIX}{task_id}"


async def run(*argv: str, env: dict[str, str] | None = None) -> str:
    """Run a Slurm command; its stdout, or `SlurmError` with its stderr."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env or dict(os.environ)
        )
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed on the API host (install the Slurm client commands)") from None
    out, err = await process.communicate()
    if process.returncode != 0:
        text = (err or out).decode(errors="replace").strip()
        raise SlurmError(f"{argv[0]} failed (exit code {process.returncode}): {text}")
    return out.decode(errors="replace")


async def sbatch(options: list[str], script: str, env: dict[str, str]) -> str:
    """Submit a batch script; the new job's id."""
    out = await run("sbatch", "--parsable", *options, script, env=env)
    return out.strip().split(";")[0]


async def jobs() -> dict[str, Job]:
    """This user's tesk jobs that the controller still knows (finished ones for MinJobAge), by task id.
    A task with several jobs (a resubmission) maps to its newest."""
    out = await run("squeue", "--noheader", "--all", "--states=all", "--me",
                    "--Format=JobID:|,Name:|,State:|,Reason:|,RestartCnt:")
    found: dict[str, Job] = {}
    for line in out.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) != 5 or not parts[1].startswith(JOB_PREFIX):
            continue
        job = Job(*parts[:4], restarts=int(parts[4]) if parts[4].isdigit() else 0)
        known = found.get(job.task_id)
        if known is None or int(job.job_id.split("_")[0]) > int(known.job_id.split("_")[0]):
            found[job.task_id] = job
    return found


async def scancel(job_id: str) -> None:
    await run("scancel", job_id)
