"""From Kubernetes objects to TES states: pure functions, shared by the controller and the taskmaster.

Every "which state is this task in" rule of the Kubernetes wing is here: how a task's Job, pods and
published result map to a state (`task_state`), which pods can never start (`pod_blocker`), that a
state never steps back (`settle`), which states are still to be reconciled (`UNFINISHED`), and how
the controller folds its reason into the stored log (`merge_logs`).

The taskmaster publishes what only it knows (executor results, log tails, the final state) in the
task's result ConfigMap; everything else is read from the objects Kubernetes keeps anyway. The API's
controller calls `task_state` with one task's taskmaster Job, its pods and that result, so a task
whose taskmaster never started or died still gets a truthful state (TESK showed SYSTEM_ERROR for a
Job the controller had not started yet, and QUEUED forever for a pod that could never start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.cancel import requested
from tesk.failures import Failure, FailureReason
from tesk.models import ACTIVE_STATES, State, TaskLog

Obj = dict[str, Any]

RESULT_STATE = "state"
RESULT_LOG = "log.json"
MAX_RESULT_BYTES = 900 * 1024

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
FATAL_WAITING_REASONS = frozenset({"InvalidImageName", "CreateContainerConfigError"})
TRANSIENT_WAITING_REASONS = frozenset({"CreateContainerError"})
"""Often transient ("failed to reserve container name", containerd#4604): retried within a grace."""
SCALE_UP_REASONS = frozenset({"TriggeredScaleUp", "NotTriggerScaleUp"})
"""The cluster autoscaler's Events on an unschedulable pod."""
PREEMPTION_REASON = "PreemptionByScheduler"
"""The DisruptionTarget reason of a pod the scheduler preempted (core/v1 PodReasonPreemptionByScheduler);
the others (EvictionByEvictionAPI, DeletionByTaintManager, TerminationByKubelet, DeletionByPodGC) are
evictions: a drain, a NoExecute taint, node pressure, a node that is gone."""
DEADLINE_EXCEEDED = "DeadlineExceeded"
"""The Job condition reason of a Job past its activeDeadlineSeconds (job controller)."""


class Blocker(str):
    """A sentence saying why a pod cannot run, with its failure reason (`tesk.failures`)."""

    reason: FailureReason

    def __new__(cls, text: str, reason: FailureReason) -> Self:
        blocker = super().__new__(cls, text)
        blocker.reason = reason
        return blocker


@dataclass(frozen=True)
class Graces:
    """How long each kind of "not started yet" may last before its task ends SYSTEM_ERROR; every one
    is a `TESK_K8S_*_GRACE_SECONDS` setting."""

    unschedulable: float
    image_pull: float
    create_container: float
    failed_create: float
    scale_up: float

    @classmethod
    def of(cls, settings: Any) -> Graces:
        """From a KubernetesSettings (its `*_grace_seconds` fields)."""
        return cls(settings.unschedulable_grace_seconds, settings.image_pull_grace_seconds,
                   settings.create_container_grace_seconds, settings.failed_create_grace_seconds,
                   settings.scale_up_grace_seconds)


UNFINISHED: frozenset[State] = ACTIVE_STATES | {State.CANCELING}
"""States the controller still reconciles with the cluster."""
_RANK = {State.UNKNOWN: 0, State.QUEUED: 1, State.INITIALIZING: 2, State.RUNNING: 3, State.CANCELING: 4}


@dataclass(frozen=True)
class Verdict:
    """A task's state as the cluster shows it; `reason` goes to system_logs when the task ends on it."""

    state: State
    reason: str | None = None
    log: TaskLog | None = None
    failure: FailureReason | None = None
    """The failure reason recorded with `reason` when the task ends on this verdict."""


# -- the result ConfigMap -----------------------------------------------------------------------

def encode_result(state: State, log: TaskLog) -> dict[str, str]:
    """ConfigMap data for a state and log, trimmed to fit: older executors' tails shrink first."""
    log = log.model_copy(deep=True)
    while True:
        body = log.model_dump_json(exclude_none=True)
        if len(body.encode()) <= MAX_RESULT_BYTES:
            return {RESULT_STATE: state.value, RESULT_LOG: body}
        streams = [(len(ex.stdout or ""), i, "stdout") for i, ex in enumerate(log.logs)]
        streams += [(len(ex.stderr or ""), i, "stderr") for i, ex in enumerate(log.logs)]
        size, index, name = max(streams)
        if size == 0:  # nothing left to trim: drop system log lines from the front
            if not log.system_logs:
                raise ValueError("the task's result does not fit in a ConfigMap")
            log.system_logs = log.system_logs[1:]
            continue
        text = getattr(log.logs[index], name)
        setattr(log.logs[index], name, text[len(text) // 2:])


def decode_result(data: dict[str, str] | None) -> tuple[State, TaskLog] | None:
    if not data or RESULT_STATE not in data:
        return None
    try:
        return State(data[RESULT_STATE]), TaskLog.model_validate_json(data.get(RESULT_LOG) or "{}")
    except ValueError:
        return None


# -- objects ------------------------------------------------------------------------------------

def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC)


def condition(obj: Obj, kind: str) -> Obj | None:
    """The condition of that type whose status is "True" (never `conditions[0]`: 1.31+ adds interim ones)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def job_finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job controller has decided (interim conditions count too)."""
    if condition(job, "Complete") or condition(job, "SuccessCriteriaMet"):
        return "Complete"
    if condition(job, "Failed") or condition(job, "FailureTarget"):
        return "Failed"
    return None


def container_status(pod: Obj, name: str) -> Obj | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            return status  # type: ignore[no-any-return]
    return None


def terminated(pod: Obj, container: str) -> Obj | None:
    status = container_status(pod, container)
    return ((status or {}).get("state") or {}).get("terminated")


def disrupted(pod: Obj) -> Blocker | None:
    """Why Kubernetes took the pod away (eviction, preemption, node drain), or None."""
    cond = condition(pod, "DisruptionTarget")
    if cond is None:
        return None
    reason = FailureReason.PREEMPTED if cond.get("reason") == PREEMPTION_REASON else FailureReason.EVICTED
    return Blocker(f"{cond.get('reason') or 'Disrupted'}: {cond.get('message') or 'the pod was evicted or preempted'}",
                   reason)


def _event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def latest_event(events: list[Obj], reasons: frozenset[str]) -> Obj | None:
    """The newest Event with one of these reasons (Events repeat: the count goes up, the time moves)."""
    found = [e for e in events if e.get("reason") in reasons]
    return max(found, key=_event_time) if found else None


def unschedulable(pod: Obj) -> bool:
    """Whether the scheduler has said the pod fits no node (its Events may then say more)."""
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_blocker(pod: Obj, now: datetime, graces: Graces, events: list[Obj] | None = None) -> Blocker | None:
    """Why a Pending pod will not start, once it has waited longer than its grace; None otherwise.

    Unschedulable counts from the condition's last transition: a cluster autoscaler's
    `NotTriggerScaleUp` Event (no node group would fit it) ends the wait at once, a `TriggeredScaleUp`
    one (a node is on its way) stretches it to the scale-up grace. Image pulls and CreateContainerError
    (often transient) count from the pod's creation; an invalid image name or a missing
    Secret/ConfigMap never heals, so it is reported at once. `events` are the pod's Events, when read.
    An image that cannot be had (pulls, an invalid name) is ImagePullFailed, an unschedulable pod
    Unschedulable, a container that cannot be created InternalError.
    """
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    name = (pod.get("metadata") or {}).get("name", "?")
    created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or now
    waited = (now - created).total_seconds()
    for cstatus in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cstatus.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        message = waiting.get("message") or ""
        image = cstatus.get("image") or ""
        if reason in FATAL_WAITING_REASONS or (reason in TRANSIENT_WAITING_REASONS
                                               and waited >= graces.create_container):
            failure = FailureReason.IMAGE_PULL_FAILED if reason == "InvalidImageName" else FailureReason.INTERNAL_ERROR
            return Blocker(f"pod {name} cannot start its container {cstatus.get('name')}: {reason}: "
                           f"{message}".rstrip(": "), failure)
        if reason in IMAGE_PULL_REASONS and waited >= graces.image_pull:
            return Blocker((f"pod {name} could not pull image {image!r} for {int(waited)}s "
                            f"({reason}: {message})").replace(": )", ")"), FailureReason.IMAGE_PULL_FAILED)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            since = parse_time(cond.get("lastTransitionTime")) or created
            pending = (now - since).total_seconds()
            why = cond.get("message") or "no node fits its requests"
            scale_up = latest_event(events or [], SCALE_UP_REASONS)
            if scale_up is not None and scale_up.get("reason") == "NotTriggerScaleUp":
                return Blocker(f"pod {name} cannot be scheduled: {why}; the cluster autoscaler will not add a "
                               f"node ({scale_up.get('message') or 'NotTriggerScaleUp'})", FailureReason.UNSCHEDULABLE)
            limit = graces.scale_up if scale_up is not None else graces.unschedulable
            if pending >= limit:
                waiting_for = " although the cluster autoscaler started a scale-up" if scale_up is not None else ""
                return Blocker(f"pod {name} could not be scheduled for {int(pending)}s{waiting_for}: {why}",
                               FailureReason.UNSCHEDULABLE)
    return None


def failed_create(name: str, since: float, events: list[Obj], graces: Graces,
                  after: datetime | None = None) -> Blocker | None:
    """Why Job `name` has no pod, when Kubernetes refused to create one (admission, quota, a webhook,
    an SCC) and it has gone on for `since` seconds: the Job controller records that only as a
    `FailedCreate` Event and retries; the Job gets no condition, so without this a task waits forever.
    With `after`, only refusals recorded since then count (an older one was followed by a pod)."""
    if after is not None:
        events = [e for e in events if (parse_time(_event_time(e)) or after) >= after]
    refused = latest_event(events, frozenset({"FailedCreate"}))
    if refused is None or since < graces.failed_create:
        return None
    return Blocker(f"Kubernetes refused to create the pod of Job {name}: {refused.get('message') or 'FailedCreate'}",
                   FailureReason.ADMISSION_REFUSED)


def _role(obj: Obj) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(lb.ROLE)


def task_state(job: Obj | None, pods: list[Obj], result: dict[str, str] | None, now: datetime,
               graces: Graces, events: dict[str, list[Obj]] | None = None) -> Verdict:
    """The first rule that applies wins (research notes §4.7, adapted to a published result).

    `pods` are every pod of the task (taskmaster, filers, executors); `result` the result ConfigMap's data;
    `events` the Events read for the taskmaster Job and its pods, by object name (read only when a
    taskmaster pod is unschedulable or the Job has none: `wants_events`).
    """
    events = events or {}
    published = decode_result(result)
    if published is not None and published[0].is_terminal:
        return Verdict(published[0], log=published[1])
    if job is None:
        return Verdict(State.SYSTEM_ERROR, "the task's taskmaster Job does not exist: it was deleted before the "
                                           "task finished, or never created", failure=FailureReason.INTERNAL_ERROR)
    if requested(job):
        return Verdict(State.CANCELING, log=published[1] if published else None)
    finished = job_finished(job)
    taskmasters = [p for p in pods if _role(p) == lb.Role.TASKMASTER.value]
    if finished == "Failed":
        cond = condition(job, "Failed") or condition(job, "FailureTarget") or {}
        if cond.get("reason") == DEADLINE_EXCEEDED:
            deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
            return Verdict(State.EXECUTOR_ERROR, f"the task ran past its time limit and was stopped (its taskmaster "
                                                 f"Job's activeDeadlineSeconds, {deadline} s, passed)",
                           published[1] if published else None, FailureReason.TIME_LIMIT_EXCEEDED)
        why = f"the taskmaster failed ({cond.get('reason') or 'Failed'}: {cond.get('message') or ''})"
        last = _last_message(taskmasters)
        if last:
            why += f"; its last words: {last}"
        return Verdict(State.SYSTEM_ERROR, why, published[1] if published else None, FailureReason.INTERNAL_ERROR)
    if finished == "Complete":
        return Verdict(State.SYSTEM_ERROR, "the taskmaster ended without reporting a result",
                       published[1] if published else None, FailureReason.INTERNAL_ERROR)
    for pod in taskmasters:
        blocker = pod_blocker(pod, now, graces, events.get(pod["metadata"].get("name", "")))
        if blocker:
            return Verdict(State.SYSTEM_ERROR, f"the taskmaster could not start: {blocker}", failure=blocker.reason)
    idle = idle_since(_created(job, now), taskmasters)
    if idle is not None:
        name = job["metadata"].get("name", "")
        refused = failed_create(name, (now - idle).total_seconds(), events.get(name, []), graces,
                                idle - timedelta(seconds=1))  # Event times have whole seconds
        if refused:
            return Verdict(State.SYSTEM_ERROR, f"the taskmaster could not start: {refused}", failure=refused.reason)
    running = [p for p in taskmasters if (p.get("status") or {}).get("phase") == "Running"]
    if not running and published is None:
        return Verdict(State.QUEUED)
    if published is not None and published[0] is State.RUNNING:
        return Verdict(State.RUNNING, log=published[1])
    executors_started = any(
        _role(p) == lb.Role.EXECUTOR.value and (p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")
        for p in pods
    )
    log = published[1] if published else None
    return Verdict(State.RUNNING if executors_started else State.INITIALIZING, log=log)


def wants_events(job: Obj | None, pods: list[Obj], now: datetime, graces: Graces) -> list[str]:
    """The objects of a not yet running task whose Events could end it: its unschedulable taskmaster
    pods, and its taskmaster Job when that has had no live pod for the FailedCreate grace."""
    if job is None or job_finished(job):
        return []
    taskmasters = [p for p in pods if _role(p) == lb.Role.TASKMASTER.value]
    wanted = [p["metadata"]["name"] for p in taskmasters
              if (p.get("status") or {}).get("phase") in (None, "Pending") and unschedulable(p)]
    idle = idle_since(_created(job, now), taskmasters)
    if idle is not None and (now - idle).total_seconds() >= graces.failed_create:
        wanted.append(job["metadata"]["name"])
    return wanted


def idle_since(created: datetime, pods: list[Obj]) -> datetime | None:
    """Since when a Job created at `created` has had no live pod (None while one lives): `created` when it
    never had one, else the end of its last pod. A refused create of the first pod, or of a replacement
    for one that ended, leaves only a FailedCreate Event: this is how long such a refusal may have gone on."""
    ends = [created]
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
            return None
        finished = [parse_time(t.get("finishedAt")) for c in (pod.get("status") or {}).get("containerStatuses") or []
                    if (t := (c.get("state") or {}).get("terminated"))]
        ended = max((f for f in finished if f), default=None)
        ends.append(ended or parse_time(meta.get("deletionTimestamp")) or parse_time(meta.get("creationTimestamp"))
                    or created)
    return max(ends)


def _created(obj: Obj, now: datetime) -> datetime:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or now


def _last_message(pods: list[Obj]) -> str | None:
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True):
        term = terminated(pod, "taskmaster")
        if term and term.get("message"):
            return str(term["message"]).strip().splitlines()[-1][:500]
    return None


def settle(current: State, new: State) -> State:
    """The state to store: `new`, unless it would step back (RUNNING -> INITIALIZING on a late or
    replayed event). A terminal state always wins over a non-terminal one."""
    if not new.is_terminal and _RANK.get(new, 0) <= _RANK.get(current, 0):
        return current
    return new


def merge_logs(old: list[TaskLog] | None, verdict: Verdict) -> list[TaskLog] | None:
    """The store's task log with the taskmaster's published log and the controller's reason folded in.

    System log lines already stored (for example ignored backend_parameters) stay first.
    """
    if verdict.log is None and verdict.reason is None:
        return None
    base = old[0] if old else TaskLog()
    merged = (verdict.log or TaskLog(start_time=base.start_time, end_time=base.end_time,
                                     logs=base.logs, outputs=base.outputs)).model_copy(deep=True)
    lines = list(base.system_logs or [])
    for line in merged.system_logs or []:
        if line not in lines:
            lines.append(line)
    if verdict.reason and verdict.reason not in lines:
        lines.append(verdict.reason)
    merged.system_logs = lines or None
    merged.metadata = merged.metadata or base.metadata
    if verdict.failure is not None and verdict.state.is_terminal:
        Failure(verdict.failure).record(merged)
    if verdict.state.is_terminal and merged.end_time is None:
        merged.end_time = datetime.now(UTC)
    return [merged]
