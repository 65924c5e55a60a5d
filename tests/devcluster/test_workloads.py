"""Jobs and pods really running through the stand-in's Job controller and podman kubelet."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devcluster import DevCluster
from devcluster.pytest_plugin import wait_for

from .conftest import Clients

pytestmark = [
    pytest.mark.devcluster,
    pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (.ci/setup.d/10-podman.sh)"),
]

NS = "default"


# The official client types request bodies as its model classes and every field of a response as
# Optional; it accepts plain dicts, and the server fills what these tests read, so both are typed Any here.
def job(name: str, script: str, **spec: Any) -> Any:
    template_spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}
    template_spec.update(spec.pop("pod", {}))
    return {"metadata": {"name": name}, "spec": {"template": {"spec": template_spec}, **spec}}


def finished(k8s: Clients, name: str, timeout: float = 40) -> dict[str, Any]:
    """Wait for the terminal condition (Complete or Failed); return the conditions by type."""
    def probe() -> dict[str, Any] | None:
        status = job_status(k8s, name)
        conditions = {c.type: c for c in status.conditions or [] if c.status == "True"}
        return conditions if {"Complete", "Failed"} & set(conditions) else None

    return wait_for(probe, timeout=timeout, what=f"Job {name} to finish")


def job_status(k8s: Clients, name: str) -> Any:
    return k8s.batch.read_namespaced_job(name, NS).status


def pod_status(k8s: Clients, name: str) -> Any:
    return k8s.core.read_namespaced_pod(name, NS).status


def pods_of(k8s: Clients, name: str) -> list[Any]:
    return k8s.core.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={name}").items


def test_job_succeeds_and_logs_honour_tail_lines_and_limit_bytes(k8s: Clients) -> None:
    k8s.batch.create_namespaced_job(NS, job("ok", "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2"))
    conditions = finished(k8s, "ok")
    assert set(conditions) == {"SuccessCriteriaMet", "Complete"}
    status = job_status(k8s, "ok")
    assert status.succeeded == 1 and status.active == 0 and status.completion_time >= status.start_time
    [pod] = pods_of(k8s, "ok")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.reason == "Completed"
    log = k8s.core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert log == "line-1\nline-2\nline-3\nline-4\nline-5\noops\n"
    assert k8s.core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=2) == "line-5\noops\n"
    assert k8s.core.read_namespaced_pod_log(pod.metadata.name, NS, limit_bytes=9) == "line-1\nli"
    assert k8s.core.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=2, limit_bytes=3) == "lin"
    with pytest.raises(ApiException) as wrong:
        k8s.core.read_namespaced_pod_log(pod.metadata.name, NS, container="other")
    assert wrong.value.status == 400


def test_follow_streams_a_running_containers_log_until_it_ends(k8s: Clients) -> None:
    script = "for i in 1 2 3; do echo tick-$i; sleep 0.5; done; echo last words >&2; exit 1"
    container = {"name": "main", "image": "busybox", "terminationMessagePolicy": "FallbackToLogsOnError",
                 "command": ["sh", "-c", script]}
    k8s.batch.create_namespaced_job(NS, job("talk", "", pod={"containers": [container]}, backoffLimit=0))
    pod = wait_for(lambda: [p for p in pods_of(k8s, "talk") if p.status.phase == "Running"], what="a running pod")[0]
    # With _preload_content=False the client returns the raw urllib3 response, not the str its stubs say.
    stream: Any = k8s.core.read_namespaced_pod_log(pod.metadata.name, NS, follow=True, _preload_content=False)
    received = b"".join(stream.stream()).decode()
    assert received.endswith("tick-2\ntick-3\nlast words\n") and received.startswith("tick-")
    finished(k8s, "talk")
    cut: Any = k8s.core.read_namespaced_pod_log(pod.metadata.name, NS, follow=True, limit_bytes=9,
                                                _preload_content=False)
    assert b"".join(cut.stream()) == b"tick-1\nti"  # limitBytes also cuts a followed stream
    terminated = pod_status(k8s, pod.metadata.name).container_statuses[0].state.terminated
    assert terminated.exit_code == 1 and terminated.message.endswith("tick-3\nlast words\n")


def test_job_fails_after_backoff_limit_with_the_1_31_condition_sequence(k8s: Clients) -> None:
    k8s.batch.create_namespaced_job(NS, job("bad", "echo failing; exit 3", backoffLimit=1))
    conditions = finished(k8s, "bad")
    assert conditions["Failed"].reason == "BackoffLimitExceeded"
    status = job_status(k8s, "bad")
    assert [c.type for c in status.conditions] == ["FailureTarget", "Failed"]
    assert status.failed == 2 and not status.succeeded and status.completion_time is None
    pods = pods_of(k8s, "bad")
    assert len(pods) == 2 and all(p.status.phase == "Failed" for p in pods)
    assert {p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {3}
    assert all(p.metadata.finalizers is None for p in pods)


def test_job_exceeding_its_deadline_fails_and_its_pod_is_stopped(k8s: Clients) -> None:
    started = time.monotonic()
    k8s.batch.create_namespaced_job(NS, job("slow", "sleep 60", activeDeadlineSeconds=2))
    conditions = finished(k8s, "slow")
    assert conditions["Failed"].reason == "DeadlineExceeded"
    assert time.monotonic() - started < 20
    status = job_status(k8s, "slow")
    assert [c.type for c in status.conditions] == ["FailureTarget", "Failed"]
    assert status.failed == 1 and status.active == 0 and status.terminating == 0
    # As on a cluster, the Job controller deleted the running pod, and Failed came only once it stopped.
    wait_for(lambda: not pods_of(k8s, "slow"), timeout=10, what="the pod to be deleted")


def test_suspended_job_runs_nothing_until_resumed(k8s: Clients) -> None:
    k8s.batch.create_namespaced_job(NS, job("later", "echo resumed", suspend=True))
    time.sleep(1)
    assert pods_of(k8s, "later") == []
    status = job_status(k8s, "later")
    assert status.start_time is None
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [("Suspended", "True", "JobSuspended")]
    k8s.batch.patch_namespaced_job("later", NS, {"spec": {"suspend": False}})
    assert "Complete" in finished(k8s, "later")
    suspended = next(c for c in job_status(k8s, "later").conditions if c.type == "Suspended")
    assert (suspended.status, suspended.reason) == ("False", "JobResumed")


def test_suspending_a_running_job_deletes_its_active_pod(k8s: Clients) -> None:
    k8s.batch.create_namespaced_job(NS, job("pause", "sleep 60"))
    wait_for(lambda: any(p.status.phase == "Running" for p in pods_of(k8s, "pause")), what="a running pod")
    k8s.batch.patch_namespaced_job("pause", NS, {"spec": {"suspend": True}})
    wait_for(lambda: not pods_of(k8s, "pause"), timeout=20, what="the pod to be deleted")
    status = job_status(k8s, "pause")
    assert status.active == 0 and not status.failed  # a pod stopped by suspension is not a failure


def test_pod_failure_policy_fail_job_and_ignore_disruption(k8s: Clients, devcluster: DevCluster) -> None:
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                                              "values": [3]}}]}
    k8s.batch.create_namespaced_job(NS, job("policy", "exit 3", backoffLimit=5, podFailurePolicy=policy))
    conditions = finished(k8s, "policy")
    assert conditions["Failed"].reason == "PodFailurePolicy" and "exit code 3" in conditions["Failed"].message
    assert len(pods_of(k8s, "policy")) == 1

    k8s.batch.create_namespaced_job(NS, job("evicted", "sleep 2; echo done", backoffLimit=0, podFailurePolicy=policy))
    first = wait_for(lambda: [p for p in pods_of(k8s, "evicted") if p.status.phase == "Running"],
                     what="the first pod to run")[0]
    devcluster.evict(NS, first.metadata.name, grace_period=0)
    assert "Complete" in finished(k8s, "evicted")
    status = job_status(k8s, "evicted")
    assert status.succeeded == 1 and not status.failed


def test_init_container_runs_first_and_shares_an_empty_dir(k8s: Clients) -> None:
    pod = {"volumes": [{"name": "work", "emptyDir": {}}],
           "initContainers": [{"name": "prepare", "image": "busybox", "command": ["sh", "-c", "echo ready > /w/flag"],
                               "volumeMounts": [{"name": "work", "mountPath": "/w"}]}],
           "containers": [{"name": "main", "image": "alpine", "command": ["cat", "/w/flag"],
                           "volumeMounts": [{"name": "work", "mountPath": "/w"}]},
                          {"name": "second", "image": "busybox", "command": ["echo", "beside"]}]}
    k8s.batch.create_namespaced_job(NS, job("init", "", pod=pod))
    assert "Complete" in finished(k8s, "init")
    [created] = pods_of(k8s, "init")
    assert created.status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert k8s.core.read_namespaced_pod_log(created.metadata.name, NS, container="main") == "ready\n"
    assert k8s.core.read_namespaced_pod_log(created.metadata.name, NS, container="second") == "beside\n"
    assert k8s.core.read_namespaced_pod_log(created.metadata.name, NS, container="prepare") == ""
    with pytest.raises(ApiException) as ambiguous:
        k8s.core.read_namespaced_pod_log(created.metadata.name, NS)
    body = ambiguous.value.body
    assert ambiguous.value.status == 400 and body is not None and "choose one of: [main second]" in body


def test_pvc_shared_by_two_sequential_jobs_with_sub_paths(k8s: Clients, devcluster: DevCluster) -> None:
    k8s.core.create_namespaced_persistent_volume_claim(NS, cast(Any, {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}))
    # The default class waits for its first consumer: the claim binds when the writer's pod is scheduled.
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    writer = {"volumes": volumes, "containers": [{
        "name": "main", "image": "busybox", "command": ["sh", "-c", "echo payload > /inputs/in.txt"],
        "volumeMounts": [{"name": "data", "mountPath": "/inputs", "subPath": "root/inputs"}]}]}
    reader = {"volumes": volumes, "containers": [{
        "name": "main", "image": "busybox", "workingDir": "/outputs",
        "command": ["sh", "-c", "cat /in/in.txt > copy.txt && cat copy.txt"],
        "volumeMounts": [{"name": "data", "mountPath": "/in", "subPath": "root/inputs", "readOnly": True},
                         {"name": "data", "mountPath": "/outputs", "subPath": "root/outputs"}]}]}
    k8s.batch.create_namespaced_job(NS, job("write", "", pod=writer))
    assert "Complete" in finished(k8s, "write")
    k8s.batch.create_namespaced_job(NS, job("read", "", pod=reader))
    assert "Complete" in finished(k8s, "read")
    folder = devcluster.pvc_path(NS, "data")
    assert (folder / "root" / "outputs" / "copy.txt").read_text() == "payload\n"

    # A subPath may not lead out of the volume through a symlink a container left there.
    (folder / "escape").symlink_to("/etc")
    sneaky = {"volumes": volumes, "containers": [{"name": "main", "image": "busybox", "command": ["true"],
                                                  "volumeMounts": [{"name": "data", "mountPath": "/x",
                                                                    "subPath": "escape/sneaky"}]}]}
    k8s.batch.create_namespaced_job(NS, job("sneak", "", pod=sneaky))

    def config_error() -> Any:
        pods = pods_of(k8s, "sneak")
        statuses = (pods[0].status.container_statuses or []) if pods else []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    assert "leads out of the volume" in wait_for(config_error, timeout=10, what="the refused subPath").message
    assert not Path("/etc/sneaky").exists()
    k8s.batch.delete_namespaced_job("sneak", NS, propagation_policy="Background")
    k8s.core.delete_namespaced_persistent_volume_claim("data", NS)
    wait_for(lambda: not folder.exists(), timeout=10, what="the claim's folder to be released")


def test_missing_image_waits_in_image_pull_back_off(k8s: Clients) -> None:
    pod: Any = {"metadata": {"name": "noimage"}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "example.org/does/not:exist"}]}}
    k8s.core.create_namespaced_pod(NS, pod)

    def reason() -> str | None:
        statuses = pod_status(k8s, "noimage").container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting and waiting.reason == "ImagePullBackOff" else None

    wait_for(reason, timeout=15, what="ImagePullBackOff")
    events = k8s.core.list_namespaced_event(NS, field_selector="involvedObject.name=noimage").items
    assert "Failed" in {e.reason for e in events}
    assert pod_status(k8s, "noimage").phase == "Pending"


def test_pod_requesting_more_than_the_node_has_is_unschedulable(k8s: Clients) -> None:
    pod: Any = {"metadata": {"name": "huge"}, "spec": {"containers": [{"name": "main", "image": "busybox",
                                                                  "resources": {"requests": {"memory": "100Ti"}}}]}}
    k8s.core.create_namespaced_pod(NS, pod)

    def scheduled() -> Any:
        return next((c for c in pod_status(k8s, "huge").conditions or []
                     if c.type == "PodScheduled"), None)

    condition = wait_for(scheduled, timeout=5, what="the PodScheduled condition")
    assert (condition.status, condition.reason) == ("False", "Unschedulable")
    assert "Insufficient memory" in condition.message
    huge: Any = k8s.core.read_namespaced_pod("huge", NS)
    assert huge.spec.node_name is None


def test_a_job_pod_deleted_before_any_node_took_it_goes_away_and_counts_as_failed(k8s: Clients) -> None:
    """The pod garbage collector's part: with `podReplacementPolicy: Failed` (the default under a
    podFailurePolicy) an unscheduled pod being deleted keeps the Job's tracking finalizer until it is
    marked Failed; it must then go, and the Job must count it."""
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    k8s.batch.create_namespaced_job(NS, job("stuck", "true", backoffLimit=0, podFailurePolicy=policy,
                                            podReplacementPolicy="Failed",
                                            pod={"nodeSelector": {"no-such": "node"}}))
    pod: Any = wait_for(lambda: next(iter(k8s.core.list_namespaced_pod(NS, label_selector="job-name=stuck").items),
                                None), timeout=10, what="the Job's pod")
    assert pod.metadata.finalizers == ["batch.kubernetes.io/job-tracking"]
    k8s.core.delete_namespaced_pod(pod.metadata.name, NS)
    wait_for(lambda: not [p for p in k8s.core.list_namespaced_pod(NS, label_selector="job-name=stuck").items
                          if p.metadata.uid == pod.metadata.uid], timeout=10, what="the deleted pod to go")
    assert wait_for(lambda: job_status(k8s, "stuck").failed, timeout=10, what="the Job to count the pod") == 1


def test_the_pod_garbage_collector_waits_for_its_period(tmp_path: Path) -> None:
    """It runs every gcCheckPeriod (20 s), so an unscheduled pod being deleted stays Terminating until the
    next pass, not one controller tick: tesk's waits must allow for that."""
    from devcluster.cluster import fast_config

    with DevCluster(fast_config(state_dir=tmp_path / "state", pod_gc_period=60)) as slow:
        api = kubernetes.config.new_client_from_config(str(slow.write_kubeconfig(tmp_path / "kubeconfig")))
        k8s = Clients(api, kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api))
        k8s.batch.create_namespaced_job(NS, job("stuck", "true", backoffLimit=0, podReplacementPolicy="Failed",
                                                podFailurePolicy={"rules": [{"action": "FailJob", "onExitCodes": {
                                                    "operator": "In", "values": [42]}}]},
                                                pod={"nodeSelector": {"no-such": "node"}}))
        pod: Any = wait_for(lambda: next(iter(k8s.core.list_namespaced_pod(NS, label_selector="job-name=stuck").items),
                                    None), timeout=10, what="the Job's pod")
        k8s.core.delete_namespaced_pod(pod.metadata.name, NS)
        time.sleep(3)  # many controller passes, no collector pass (the next one is a minute after the start)
        left: Any = k8s.core.read_namespaced_pod(pod.metadata.name, NS)
        assert left.metadata.deletion_timestamp is not None and left.status.phase == "Pending"
        assert job_status(k8s, "stuck").failed is None
        api.close()


def test_downward_api_labels_follow_label_changes_inside_the_container(k8s: Clients) -> None:
    pod: Any = {"metadata": {"name": "watcher", "labels": {"task": "t1"}}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c",
                        "until grep -q 'cancel=\"requested\"' /podinfo/labels; do sleep 0.2; done; cat /podinfo/labels"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "volumeMounts": [{"name": "podinfo", "mountPath": "/podinfo"}]}]}}
    k8s.core.create_namespaced_pod(NS, pod)
    wait_for(lambda: pod_status(k8s, "watcher").phase == "Running", what="a running pod")
    k8s.core.patch_namespaced_pod("watcher", NS, {"metadata": {"labels": {"cancel": "requested", "quote": "a_b"}}})
    wait_for(lambda: pod_status(k8s, "watcher").phase == "Succeeded", timeout=15,
             what="the container to see the new label")
    # The kubelet's format: sorted key="value" lines, Go-quoted, no newline after the last one.
    assert k8s.core.read_namespaced_pod_log("watcher", NS) == 'cancel="requested"\nquote="a_b"\ntask="t1"'


def test_memory_limit_gives_oom_killed(k8s: Clients) -> None:
    pod = {"containers": [{"name": "main", "image": "busybox", "resources": {"limits": {"memory": "16Mi"}},
                           "command": ["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"]}]}
    k8s.batch.create_namespaced_job(NS, job("oom", "", backoffLimit=0, pod=pod))
    finished(k8s, "oom")
    terminated = pods_of(k8s, "oom")[0].status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_deleting_a_pod_stops_its_container(k8s: Clients) -> None:
    pod: Any = {"metadata": {"name": "stopme"}, "spec": {"containers": [{"name": "main", "image": "busybox",
                                                                    "command": ["sleep", "300"]}]}}
    k8s.core.create_namespaced_pod(NS, pod)
    wait_for(lambda: pod_status(k8s, "stopme").phase == "Running", what="a running pod")
    started = time.monotonic()
    k8s.core.delete_namespaced_pod("stopme", NS, grace_period_seconds=1)
    terminating: Any = k8s.core.read_namespaced_pod("stopme", NS)
    assert terminating.metadata.deletion_timestamp is not None

    def gone() -> bool:
        try:
            k8s.core.read_namespaced_pod("stopme", NS)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=15, what="the pod to be gone")
    assert time.monotonic() - started < 10

    # A second delete with a shorter grace period cuts the wait short, as on a cluster.
    slow: Any = {"metadata": {"name": "slowstop", "finalizers": ["example.org/hold"]}, "spec": {
        "terminationGracePeriodSeconds": 60, "containers": [{"name": "main", "image": "busybox",
                                                             "command": ["sleep", "300"]}]}}
    k8s.core.create_namespaced_pod(NS, slow)
    wait_for(lambda: pod_status(k8s, "slowstop").phase == "Running", what="a running pod")
    k8s.core.delete_namespaced_pod("slowstop", NS)
    time.sleep(0.5)
    started = time.monotonic()
    k8s.core.delete_namespaced_pod("slowstop", NS, grace_period_seconds=0)
    wait_for(lambda: pod_status(k8s, "slowstop").phase == "Failed", timeout=15,
             what="the container to be killed")
    assert time.monotonic() - started < 10


def test_pod_active_deadline_is_enforced_by_the_kubelet(k8s: Clients) -> None:
    pod: Any = {"metadata": {"name": "bounded"}, "spec": {
        "restartPolicy": "Never", "activeDeadlineSeconds": 1, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "60"]}]}}
    k8s.core.create_namespaced_pod(NS, pod)
    status = wait_for(lambda: (s := pod_status(k8s, "bounded")).phase == "Failed" and s,
                      timeout=20, what="the pod to fail")
    assert status.reason == "DeadlineExceeded"
    assert status.container_statuses[0].state.terminated.exit_code == 137


def test_security_context_is_applied_and_run_as_non_root_is_enforced(k8s: Clients) -> None:
    script = "id -u; id -G; touch /rootfs-file 2>/dev/null && echo writable || echo read-only; touch /w/ok && ls -ln /w"
    pod = {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000},
           "volumes": [{"name": "w", "emptyDir": {}}],
           "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                           "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                               "capabilities": {"drop": ["ALL"]}},
                           "volumeMounts": [{"name": "w", "mountPath": "/w"}]}]}
    k8s.batch.create_namespaced_job(NS, job("secure", "", pod=pod))
    assert "Complete" in finished(k8s, "secure")
    lines = k8s.core.read_namespaced_pod_log(pods_of(k8s, "secure")[0].metadata.name, NS).splitlines()
    assert lines[0] == "1000" and "2000" in lines[1].split() and lines[2] == "read-only"
    assert lines[-1].split()[2:4] == ["1000", "2000"]  # the file in the fsGroup volume has group 2000

    root: Any = {"metadata": {"name": "rooted"}, "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [
        {"name": "main", "image": "busybox", "command": ["true"]}]}}
    k8s.core.create_namespaced_pod(NS, root)

    def waiting() -> Any:
        statuses = pod_status(k8s, "rooted").container_statuses or []
        state = statuses[0].state.waiting if statuses else None
        return state if state and state.reason == "CreateContainerConfigError" else None

    assert "image will run as root" in wait_for(waiting, timeout=10, what="CreateContainerConfigError").message


def test_on_failure_restarts_in_place_with_crash_loop_back_off_and_previous_logs(k8s: Clients) -> None:
    pod: Any = {"metadata": {"name": "crashy"}, "spec": {"restartPolicy": "OnFailure", "containers": [
        {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo attempt; exit 1"]}]}}
    k8s.core.create_namespaced_pod(NS, pod)

    def restarted() -> Any:
        statuses = pod_status(k8s, "crashy").container_statuses or []
        return statuses[0] if statuses and statuses[0].restart_count >= 2 else None

    status = wait_for(restarted, timeout=20, what="two restarts")
    assert status.last_state.terminated.exit_code == 1
    assert pod_status(k8s, "crashy").phase == "Running"
    assert k8s.core.read_namespaced_pod_log("crashy", NS, previous=True) == "attempt\n"
    events: list[Any] = k8s.core.list_namespaced_event(
        NS, field_selector="involvedObject.name=crashy,reason=BackOff").items
    assert events and "Back-off restarting failed container main" in events[0].message


def test_missing_command_is_a_start_error_and_a_missing_working_dir_is_created(k8s: Clients) -> None:
    for name, container in (("nocmd", {"command": ["no-such-command"]}),
                            ("newdir", {"command": ["pwd"], "workingDir": "/made/by/runtime"})):
        k8s.core.create_namespaced_pod(NS, cast(Any, {"metadata": {"name": name}, "spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", **container}]}}))
    for name in ("nocmd", "newdir"):
        def ended(name: str = name) -> bool:
            return pod_status(k8s, name).phase in ("Succeeded", "Failed")

        wait_for(ended, what=f"pod {name} to finish")
    failed = pod_status(k8s, "nocmd")
    terminated = failed.container_statuses[0].state.terminated
    assert failed.phase == "Failed" and (terminated.reason, terminated.exit_code) == ("StartError", 128)
    assert "executable file not found" in terminated.message
    assert pod_status(k8s, "newdir").phase == "Succeeded"
    assert k8s.core.read_namespaced_pod_log("newdir", NS) == "/made/by/runtime\n"


def test_ttl_after_finished_deletes_the_job_and_its_pods(k8s: Clients) -> None:
    k8s.batch.create_namespaced_job(NS, job("brief", "true", ttlSecondsAfterFinished=1))
    finished(k8s, "brief")
    wait_for(lambda: not k8s.batch.list_namespaced_job(NS).items and not pods_of(k8s, "brief"), timeout=10,
             what="the TTL controller to delete the Job and its pod")


def test_config_map_volume_and_env_value_from(k8s: Clients) -> None:
    k8s.core.create_namespaced_config_map(NS, cast(Any, {"metadata": {"name": "settings"}, "data": {"greeting": "hello"}}))
    pod = {"volumes": [{"name": "cfg", "configMap": {"name": "settings"}}], "containers": [{
        "name": "main", "image": "busybox",
        "command": ["sh", "-c", "echo $(GREETING) $NS $(cat /cfg/greeting)"],
        "env": [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}]}
    k8s.batch.create_namespaced_job(NS, job("cfg", "", pod=pod))
    assert "Complete" in finished(k8s, "cfg")
    # $(GREETING) is expanded by Kubernetes itself, $(cat ...) is left for the shell.
    assert k8s.core.read_namespaced_pod_log(pods_of(k8s, "cfg")[0].metadata.name, NS) == "hello default hello\n"


def test_host_image_pod_reaches_the_api_with_in_cluster_config(tmp_path: Any) -> None:
    from devcluster import DevCluster
    from devcluster.cluster import fast_config

    script = ("from kubernetes import client, config; config.load_incluster_config(); "
              "ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read(); "
              "print(ns, [p.metadata.name for p in client.CoreV1Api().list_namespaced_pod(ns).items])")
    import sys

    config = fast_config(state_dir=tmp_path / "state", host_images=("localhost/tesk",),
                         host_entrypoint=[sys.executable])
    with DevCluster(config) as cluster:
        api = kubernetes.config.new_client_from_config(str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        core = kubernetes.client.CoreV1Api(api)
        rbac = kubernetes.client.RbacAuthorizationV1Api(api)  # under RBAC the pod's account needs a grant
        rbac.create_namespaced_role(NS, cast(Any, {"metadata": {"name": "lister"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}))
        rbac.create_namespaced_role_binding(NS, cast(Any, {
            "metadata": {"name": "lister"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lister"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}]}))
        core.create_namespaced_pod(NS, cast(Any, {"metadata": {"name": "taskmaster"}, "spec": {
            "restartPolicy": "Never", "containers": [{"name": "main", "image": "localhost/tesk:1.0",
                                                      "args": ["-c", script]}]}}))
        wait_for(lambda: cast(Any, core.read_namespaced_pod("taskmaster", NS)).status.phase in ("Succeeded", "Failed"),
                 what="the host-process pod to finish")
        log = core.read_namespaced_pod_log("taskmaster", NS)
        assert log == "default ['taskmaster']\n", log
        assert cluster.faults.count(verb="list", resource="pods", client="system:serviceaccount:default:default") == 1


def test_pod_log_stream_is_ignored_unless_the_split_streams_gate_is_on(k8s: Clients, tmp_path: Path) -> None:
    """As on 1.29-1.31 (no `stream` field) and 1.32+ with PodLogsQuerySplitStreams off: `stream` is dropped and
    the combined log comes back; only with the gate on does it select one stream."""
    from devcluster.cluster import fast_config

    script = "echo to-out; sleep 0.2; echo to-err >&2"
    k8s.batch.create_namespaced_job(NS, job("both", script, backoffLimit=0))
    finished(k8s, "both")
    name = pods_of(k8s, "both")[0].metadata.name
    combined = "to-out\nto-err\n"
    assert k8s.core.read_namespaced_pod_log(name, NS) == combined
    assert k8s.core.read_namespaced_pod_log(name, NS, stream="Stdout") == combined
    assert k8s.core.read_namespaced_pod_log(name, NS, stream="Stderr") == combined
    with DevCluster(fast_config(state_dir=tmp_path / "gated", pod_logs_query_split_streams=True)) as gated:
        api = kubernetes.config.new_client_from_config(str(gated.write_kubeconfig(tmp_path / "gated.kubeconfig")))
        clients = Clients(api, kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api))
        clients.batch.create_namespaced_job(NS, job("both", script, backoffLimit=0))
        finished(clients, "both")
        name = pods_of(clients, "both")[0].metadata.name
        assert clients.core.read_namespaced_pod_log(name, NS, stream="Stdout") == "to-out\n"
        assert clients.core.read_namespaced_pod_log(name, NS, stream="Stderr") == "to-err\n"
        assert clients.core.read_namespaced_pod_log(name, NS, stream="All") == combined
        api.close()
