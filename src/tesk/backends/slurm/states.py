"""What a Slurm job's end means for its task, when the worker could not say it (or was stopped)."""

from __future__ import annotations

from tesk.failures import FailureReason
from tesk.models import State

ENDINGS: dict[str, tuple[State, FailureReason, str]] = {
    "TIMEOUT": (State.EXECUTOR_ERROR, FailureReason.TIME_LIMIT_EXCEEDED,
                "reached its time limit (TIMEOUT); ask for more with backend_parameters `time`"),
    "DEADLINE": (State.EXECUTOR_ERROR, FailureReason.TIME_LIMIT_EXCEEDED, "passed its deadline (DEADLINE)"),
    "OUT_OF_MEMORY": (State.EXECUTOR_ERROR, FailureReason.OOM_KILLED,
                      "ran out of memory (OUT_OF_MEMORY, OOMKilled); ask for more with resources.ram_gb"),
    "NODE_FAIL": (State.SYSTEM_ERROR, FailureReason.EVICTED,
                  "ended because its node failed (NODE_FAIL); submit the task again"),
    "BOOT_FAIL": (State.SYSTEM_ERROR, FailureReason.EVICTED,
                  "ended because its node failed to boot (BOOT_FAIL); submit the task again"),
    "PREEMPTED": (State.PREEMPTED, FailureReason.PREEMPTED, "was preempted by Slurm (PREEMPTED); submit the task again"),
    "CANCELLED": (State.SYSTEM_ERROR, FailureReason.CANCELED,
                  "was cancelled outside tesk (CANCELLED: scancel by a user or an operator)"),
    "REVOKED": (State.SYSTEM_ERROR, FailureReason.INTERNAL_ERROR,
                "was revoked by Slurm (REVOKED, a federation's sibling ran it)"),
    "SPECIAL_EXIT": (State.SYSTEM_ERROR, FailureReason.INTERNAL_ERROR, "was held by Slurm (SPECIAL_EXIT)"),
}
"""Job states that decide the task's end whatever the worker reported (it was stopped from outside),
with the failure reason each implies: a node that failed under the job is `Evicted` (the work was
lost with its node, as Kubernetes evicts the pods of a lost node); a cancel outside tesk `Canceled`
even though the TES state is SYSTEM_ERROR (no TES user asked for it)."""


def ending(job_state: str | None) -> tuple[State, FailureReason, str] | None:
    """The task state, failure reason and sentence a job's final state imposes, or None when the
    worker's report decides (COMPLETED, FAILED: the worker ran to its end, or died, which the report's
    absence shows)."""
    return ENDINGS.get(job_state or "")
