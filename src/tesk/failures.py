"""Why a task ended other than COMPLETE, in words a program can act on (issue 14, item 1).

The sentence in `system_logs` is for people; this is for clients such as Galaxy's job runner, which
resubmits with more memory after `OOMKilled` and more time after `TimeLimitExceeded`. The reason
goes into the `metadata` of the task's last TaskLog (a TES field, a map of strings) under
`REASON_KEY`, and the executor it concerns, when there is one, under `EXECUTOR_KEY` (its 0-based
index in `executors`, as in `logs[].logs`). Every backend takes its values from here, so a client
sees the same words whichever backend ran the task; docs/extensions.md lists them.

The TES state is not derived from the reason: it stays what TES says (an OOM kill is
EXECUTOR_ERROR, a preemption PREEMPTED, a cancel CANCELED); the reason refines it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tesk.models import State, TaskLog

REASON_KEY = "tesk.failure_reason"
EXECUTOR_KEY = "tesk.failure_executor"


class FailureReason(StrEnum):
    """The fixed list of reasons; a new value is a change of the documented interface."""

    OOM_KILLED = "OOMKilled"
    """An executor went past its memory limit (`resources.ram_gb`) and was killed."""
    TIME_LIMIT_EXCEEDED = "TimeLimitExceeded"
    """The task or an executor ran past its time limit."""
    IMAGE_PULL_FAILED = "ImagePullFailed"
    """An executor's image could not be had (missing, unknown registry, no access)."""
    UNSCHEDULABLE = "Unschedulable"
    """No node (or host) can ever give the task what it asks for, or none did in time."""
    ADMISSION_REFUSED = "AdmissionRefused"
    """The cluster refused to create what the task needs (quota, Pod Security, a webhook)."""
    EVICTED = "Evicted"
    """The node took the task's pod away (node pressure, a node that failed)."""
    PREEMPTED = "Preempted"
    """The scheduler stopped the task for other work (priority preemption, a spot node reclaimed)."""
    INPUT_STAGING_FAILED = "InputStagingFailed"
    OUTPUT_STAGING_FAILED = "OutputStagingFailed"
    EXECUTOR_FAILED = "ExecutorFailed"
    """An executor exited with a non-zero code (and `ignore_error` was not set)."""
    CANCELED = "Canceled"
    """A user (or an operator, outside tesk) cancelled the task."""
    INTERNAL_ERROR = "InternalError"
    """tesk or its infrastructure failed; the system log says how."""


@dataclass(frozen=True)
class Failure:
    """One task's reason, and the executor it concerns (None: the task as a whole)."""

    reason: FailureReason
    executor: int | None = None

    @classmethod
    def of_exit(cls, executor: int, oom_killed: bool = False, timed_out: bool = False) -> Failure:
        """The reason of an executor that ended with a non-zero exit code or was stopped at its limit."""
        if timed_out:
            return cls(FailureReason.TIME_LIMIT_EXCEEDED, executor)
        if oom_killed:
            return cls(FailureReason.OOM_KILLED, executor)
        return cls(FailureReason.EXECUTOR_FAILED, executor)

    def metadata(self) -> dict[str, str]:
        """The TaskLog metadata keys that say this failure."""
        keys = {REASON_KEY: self.reason.value}
        if self.executor is not None:
            keys[EXECUTOR_KEY] = str(self.executor)
        return keys

    def record(self, log: TaskLog) -> None:
        """Put the reason into `log.metadata`, keeping its other keys (an earlier failure's go)."""
        kept = {k: v for k, v in (log.metadata or {}).items() if k not in (REASON_KEY, EXECUTOR_KEY)}
        log.metadata = kept | self.metadata()


def stop_reason(state: State) -> FailureReason:
    """The reason of a task stopped from outside into `state` when the stopper said none."""
    if state is State.CANCELED:
        return FailureReason.CANCELED
    if state is State.PREEMPTED:
        return FailureReason.PREEMPTED
    return FailureReason.INTERNAL_ERROR


def refusal_reason(status_code: int) -> FailureReason:
    """The reason of a task its backend refused at submission with this HTTP status: a 4xx is the
    backend or the cluster saying no to this task (a quota, a policy, a spec it cannot run), anything
    else a failure on the way."""
    return FailureReason.ADMISSION_REFUSED if 400 <= status_code < 500 else FailureReason.INTERNAL_ERROR


def failure_of(log: TaskLog | None) -> Failure | None:
    """The reason recorded in a TaskLog, or None (none recorded, or a value not in the list)."""
    metadata = (log.metadata if log else None) or {}
    try:
        reason = FailureReason(metadata[REASON_KEY])
    except (KeyError, ValueError):
        return None
    executor = metadata.get(EXECUTOR_KEY)
    return Failure(reason, int(executor) if executor and executor.isdigit() else None)
