"""State mapping from recorded Job/Pod/result objects, one row per rule, and the result encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.state import (
    Graces,
    Verdict,
    decode_result,
    disrupted,
    encode_result,
    failed_create,
    merge_logs,
    pod_blocker,
    task_state,
    wants_events,
)
from tesk.failures import Failure, FailureReason, failure_of
from tesk.models import ExecutorLog, State, TaskLog

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
GRACES = Graces(unschedulable=300, image_pull=60, create_container=60, failed_create=60, scale_up=1800)
TASK = "task-01jz0000000000000000000000"


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def job(conditions: list[dict[str, str]] | None = None, labels: dict[str, str] | None = None,
        **status: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": TASK, "labels": {lb.TASK_ID: TASK, lb.ROLE: "taskmaster",
                                                                 **(labels or {})},
                                        "annotations": {}, "creationTimestamp": ts(600)},
            "status": {"conditions": conditions or [], **status}}


def pod(role: str = "taskmaster", phase: str = "Pending", created: float = 10, **status: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": f"{TASK}-{role}-x", "labels": {lb.TASK_ID: TASK, lb.ROLE: role},
                                        "creationTimestamp": ts(created)},
            "status": {"phase": phase, **status}}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"containerStatuses": [{"name": "taskmaster", "image": "reg/tesk:1",
                                   "state": {"waiting": {"reason": reason, "message": message}}}]}


UNSCHEDULABLE: dict[str, Any] = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/3 nodes are available: 3 Insufficient memory.",
                                 "lastTransitionTime": ts(400)}]}
RESULT_DONE = encode_result(State.COMPLETE, TaskLog(logs=[ExecutorLog(exit_code=0, stdout="hi\n")]))
RESULT_RUNNING = encode_result(State.RUNNING, TaskLog(logs=[ExecutorLog(exit_code=0)]))

ROWS: list[tuple[str, Any, list[Any], Any, State, str | None]] = [
    ("published terminal result wins", job(), [pod(phase="Succeeded")], RESULT_DONE, State.COMPLETE, None),
    ("job deleted before a result", None, [], None, State.SYSTEM_ERROR, "deleted"),
    ("cancel label, not finished", job(labels={lb.CANCEL: "requested"}), [pod(phase="Running")], None,
     State.CANCELING, None),
    ("backoff exhausted (1.31+ interim condition first)",
     job([{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit"},
          {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
     [pod(phase="Failed", containerStatuses=[{"name": "taskmaster", "state": {"terminated": {
         "exitCode": 1, "message": "Traceback...\nKubeError: forbidden"}}}])], None,
     State.SYSTEM_ERROR, "forbidden"),
    ("deadline", job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}])
     | {"spec": {"activeDeadlineSeconds": 3660}}, [], None,
     State.EXECUTOR_ERROR, "ran past its time limit and was stopped (its taskmaster Job's activeDeadlineSeconds, 3660 s"),
    ("condition with status False is not a failure",
     job([{"type": "Failed", "status": "False"}]), [pod(phase="Running")], None, State.INITIALIZING, None),
    ("complete without a result", job([{"type": "Complete", "status": "True"}]), [], None,
     State.SYSTEM_ERROR, "without reporting"),
    ("no pod yet (TESK said SYSTEM_ERROR here)", job(), [], None, State.QUEUED, None),
    ("pod pending, pulling within grace", job(), [pod(**waiting("ErrImagePull"))], None, State.QUEUED, None),
    ("pod pending, pull failing past grace", job(), [pod(created=120, **waiting("ImagePullBackOff", "not found"))],
     None, State.SYSTEM_ERROR, "could not pull image 'reg/tesk:1'"),
    ("invalid image name fails at once", job(), [pod(**waiting("InvalidImageName", "bad ref"))], None,
     State.SYSTEM_ERROR, "InvalidImageName"),
    ("unschedulable past grace", job(), [pod(created=500, **UNSCHEDULABLE)], None, State.SYSTEM_ERROR,
     "Insufficient memory"),
    ("taskmaster running, no executor yet", job(), [pod(phase="Running")], None, State.INITIALIZING, None),
    ("executor pod running", job(), [pod(phase="Running"), pod("executor", "Running")], None, State.RUNNING, None),
    ("published RUNNING between executors", job(), [pod(phase="Running"), pod("executor", "Pending")],
     RESULT_RUNNING, State.RUNNING, None),
]


FAILURES = {
    "job deleted before a result": FailureReason.INTERNAL_ERROR,
    "backoff exhausted (1.31+ interim condition first)": FailureReason.INTERNAL_ERROR,
    "deadline": FailureReason.TIME_LIMIT_EXCEEDED,
    "complete without a result": FailureReason.INTERNAL_ERROR,
    "pod pending, pull failing past grace": FailureReason.IMAGE_PULL_FAILED,
    "invalid image name fails at once": FailureReason.IMAGE_PULL_FAILED,
    "unschedulable past grace": FailureReason.UNSCHEDULABLE,
}
"""The failure reason of the rows whose verdict ends the task (the others carry none)."""


@pytest.mark.parametrize(("name", "job_obj", "pods", "result", "state", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_task_state(name: str, job_obj: Any, pods: list[Any], result: Any, state: State, reason: str | None) -> None:
    verdict = task_state(job_obj, pods, result, NOW, GRACES)
    assert verdict.state is state
    assert verdict.failure is FAILURES.get(name)
    if reason is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None and reason in verdict.reason


def test_pod_blocker_only_for_pending_pods() -> None:
    none = Graces(0, 0, 0, 0, 0)
    assert pod_blocker(pod(phase="Running", created=999, **waiting("ImagePullBackOff")), NOW, none) is None
    assert pod_blocker(pod(created=500, **UNSCHEDULABLE), NOW, Graces(1000, 0, 0, 0, 0)) is None


def event(reason: str, message: str, seconds_ago: float, kind: str = "Pod") -> dict[str, Any]:
    return {"kind": "Event", "reason": reason, "message": message, "type": "Warning" if "Not" in reason or
            "Failed" in reason else "Normal", "lastTimestamp": ts(seconds_ago), "involvedObject": {"kind": kind}}


REFUSED = event("FailedCreate", 'pods "x" is forbidden: violates PodSecurity "restricted:latest": '
                "runAsNonRoot != true", 30, "Job")


def test_a_job_whose_pod_creates_are_refused_ends_with_the_refusal_after_its_grace() -> None:
    """The Job controller records FailedCreate Events and sets no condition: only the Events tell."""
    assert failed_create(TASK, 59, [REFUSED], GRACES) is None  # the Job controller retries meanwhile
    assert failed_create(TASK, 61, [], GRACES) is None  # no pod yet, but nothing refused either
    reason = failed_create(TASK, 61, [event("SuccessfulCreate", "Created pod", 5, "Job"), REFUSED], GRACES)
    assert reason is not None and 'violates PodSecurity "restricted:latest"' in reason and TASK in reason
    assert reason.reason is FailureReason.ADMISSION_REFUSED
    verdict = task_state(job(), [], None, NOW, GRACES, {TASK: [REFUSED]})
    assert verdict.state is State.SYSTEM_ERROR and verdict.reason is not None
    assert verdict.failure is FailureReason.ADMISSION_REFUSED
    assert verdict.reason.startswith("the taskmaster could not start: Kubernetes refused to create the pod")
    assert task_state(job(), [], None, NOW, GRACES).state is State.QUEUED  # no Events read: still waiting


def _crashed_taskmaster(ended: float) -> dict[str, Any]:
    return pod(phase="Failed", created=ended + 5, containerStatuses=[{"name": "taskmaster", "state": {
        "terminated": {"exitCode": 1, "finishedAt": ts(ended)}}}])


def test_a_refused_replacement_taskmaster_ends_the_task_and_an_older_refusal_does_not() -> None:
    """The first taskmaster pod crashed; the Job controller's replacement is refused: again only Events tell,
    and only those recorded since the last pod ended."""
    crashed = _crashed_taskmaster(ended=100)
    verdict = task_state(job(), [crashed], None, NOW, GRACES, {TASK: [REFUSED]})  # refused 30 s ago
    assert verdict.state is State.SYSTEM_ERROR and verdict.reason is not None
    assert verdict.reason.startswith("the taskmaster could not start: Kubernetes refused to create the pod")
    older = event("FailedCreate", "exceeded quota: q", 200, "Job")  # before the crashed pod ever ran
    assert task_state(job(), [crashed], None, NOW, GRACES, {TASK: [older]}).state is State.QUEUED
    assert task_state(job(), [_crashed_taskmaster(ended=30)], None, NOW, GRACES,
                      {TASK: [REFUSED]}).state is State.QUEUED  # idle 30 s, within the 60 s grace


def test_events_are_wanted_only_while_they_can_end_the_task() -> None:
    assert wants_events(job(), [_crashed_taskmaster(ended=100)], NOW, GRACES) == [TASK]
    assert wants_events(job(), [_crashed_taskmaster(ended=30)], NOW, GRACES) == []
    assert wants_events(job(), [], NOW, GRACES) == [TASK]  # 600 s without a pod
    young = job()
    young["metadata"]["creationTimestamp"] = ts(5)
    assert wants_events(young, [], NOW, GRACES) == []
    assert wants_events(job(), [pod(phase="Running")], NOW, GRACES) == []
    assert wants_events(job(), [pod(**UNSCHEDULABLE)], NOW, GRACES) == [f"{TASK}-taskmaster-x"]
    assert wants_events(job([{"type": "Complete", "status": "True"}]), [], NOW, GRACES) == []
    assert wants_events(None, [], NOW, GRACES) == []


def test_unschedulable_waits_for_a_scale_up_and_fails_fast_when_none_will_come() -> None:
    stuck = pod(created=500, **UNSCHEDULABLE)  # unschedulable for 400 s, past the 300 s grace
    triggered = event("TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1 (max: 4)}]", 60)
    assert pod_blocker(stuck, NOW, GRACES, [triggered]) is None  # a node is on its way: wait on
    late = pod_blocker(stuck, NOW, Graces(300, 60, 60, 60, 350), [triggered])
    assert late is not None and "although the cluster autoscaler started a scale-up" in late
    fresh = pod(created=20, conditions=[UNSCHEDULABLE["conditions"][0] | {"lastTransitionTime": ts(10)}])
    assert pod_blocker(fresh, NOW, GRACES) is None
    refused = event("NotTriggerScaleUp", "pod didn't trigger scale-up: 2 max node group size reached", 5)
    reason = pod_blocker(fresh, NOW, GRACES, [refused])  # 10 s in, far from the grace: no use waiting
    assert reason is not None and "will not add a node" in reason and "max node group size reached" in reason
    # the newest word counts: a scale-up triggered after an earlier refusal means wait
    assert pod_blocker(fresh, NOW, GRACES, [event("NotTriggerScaleUp", "no", 50), triggered | {
        "lastTimestamp": ts(2)}]) is None


def test_create_container_error_is_retried_within_its_grace() -> None:
    """Often transient ("failed to reserve container name"): the kubelet retries it."""
    error = waiting("CreateContainerError", 'failed to reserve container name "x": name is reserved')
    assert pod_blocker(pod(created=30, **error), NOW, GRACES) is None
    reason = pod_blocker(pod(created=90, **error), NOW, GRACES)
    assert reason is not None and "CreateContainerError" in reason and "reserve container name" in reason
    assert reason.reason is FailureReason.INTERNAL_ERROR
    config = pod_blocker(pod(created=1, **waiting("CreateContainerConfigError", "secret not found")), NOW, GRACES)
    assert config is not None and config.reason is FailureReason.INTERNAL_ERROR


def test_a_preemption_is_preempted_and_every_other_disruption_evicted() -> None:
    def of(reason: str) -> FailureReason | None:
        found = disrupted(pod(phase="Running", conditions=[{"type": "DisruptionTarget", "status": "True",
                                                            "reason": reason, "message": "m"}]))
        return found.reason if found else None

    assert of("PreemptionByScheduler") is FailureReason.PREEMPTED
    for reason in ("EvictionByEvictionAPI", "DeletionByTaintManager", "TerminationByKubelet", "DeletionByPodGC"):
        assert of(reason) is FailureReason.EVICTED, reason
    assert disrupted(pod(phase="Running")) is None


def test_the_controller_s_reason_is_recorded_only_when_the_task_ends_on_it() -> None:
    published = TaskLog(logs=[ExecutorLog(exit_code=0)], metadata={"other": "kept"})
    [ended] = merge_logs(None, Verdict(State.EXECUTOR_ERROR, "past its limit", published,
                                       FailureReason.TIME_LIMIT_EXCEEDED)) or []
    assert failure_of(ended) == Failure(FailureReason.TIME_LIMIT_EXCEEDED) and (ended.metadata or {})["other"] == "kept"
    [running] = merge_logs(None, Verdict(State.RUNNING, None, published, FailureReason.INTERNAL_ERROR)) or []
    assert failure_of(running) is None


def test_result_round_trip_and_trimming_keeps_the_ends_of_logs() -> None:
    big = "a" * 600_000 + "END"
    log = TaskLog(logs=[ExecutorLog(exit_code=0, stdout=big, stderr="e" * 500_000 + "FIN")], system_logs=["x"])
    data = encode_result(State.EXECUTOR_ERROR, log)
    assert sum(len(v) for v in data.values()) <= 900 * 1024
    state, decoded = decode_result(data) or (None, None)
    assert state is State.EXECUTOR_ERROR and decoded is not None
    stdout, stderr = decoded.logs[0].stdout, decoded.logs[0].stderr
    assert stdout is not None and stdout.endswith("END") and stderr is not None and stderr.endswith("FIN")
    assert decode_result({"state": "NOT_A_STATE"}) is None and decode_result(None) is None
