"""What a Slurm job's end means for its task, when the worker could not say it (or was stopped)."""

from __future__ import annotations

from tesk.models import State

ENDINGS: dict[str, tuple[State, str]] = {
    "TIMEOUT": (State.EXECUTOR_ERROR, "reached its time limit (TIMEOUT); ask for more with backend_parameters "
                                      "`time`"),
    "DEADLINE": (State.EXECUTOR_ERROR, "passed its deadline (DEADLINE)"),
    "OUT_OF_MEMORY": (State.EXECUTOR_ERROR, "ran out of memory (OUT_OF_MEMORY, OOMKilled); ask for more with "
                                            "resources.ram_gb"),
    "NODE_FAIL": (State.SYSTEM_ERROR, "ended because its node failed (NODE_FAIL); submit the task again"),
    "BOOT_FAIL": (State.SYSTEM_ERROR, "ended because its node failed to boot (BOOT_FAIL); submit the task again"),
    "PREEMPTED": (State.PREEMPTED, "was preempted by Slurm (PREEMPTED); submit the task again"),
    "CANCELLED": (State.SYSTEM_ERROR, "was cancelled outside tesk (CANCELLED: scancel by a user or an operator)"),
    "REVOKED": (State.SYSTEM_ERROR, "was revoked by Slurm (REVOKED, a federation's sibling ran it)"),
    "SPECIAL_EXIT": (State.SYSTEM_ERROR, "was held by Slurm (SPECIAL_EXIT)"),
}
"""Job states that decide the task's end whatever the worker reported (it was stopped from outside)."""


def ending(job_state: str | None) -> tuple[State, str] | None:
    """The task state and reason a job's final state imposes, or None when the worker's report decides
    (COMPLETED, FAILED: the worker ran to its end, or died, which the report's absence shows)."""
    return ENDINGS.get(job_state or "")
