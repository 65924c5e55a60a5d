"""Admission in the stand-in (devcluster.admission): Pod Security, ResourceQuota and LimitRange refuse pods with
kube-apiserver's status, reason and texts, and the Job controller answers a refused pod create as the real one does
(a FailedCreate Event, no Job condition, retries)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster import DevCluster
from devcluster.cluster import fast_config
from devcluster.pytest_plugin import wait_for

from .conftest import Clients

pytestmark = pytest.mark.devcluster

NOWHERE = {"nodeSelector": {"devcluster.test/no-such": "node"}}
"""Admitted pods stay Pending on no node: these tests are about admission, not running containers."""


def namespace(k8s: Clients, name: str, **labels: str) -> None:
    """A new namespace, once its `default` ServiceAccount exists (before that, pods are refused: see below)."""
    k8s.core.create_namespace({"metadata": {"name": name, "labels": labels}})
    wait_for(lambda: k8s.core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
             timeout=10, what=f"the default ServiceAccount of namespace {name}")


def pod(name: str, *, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
        **spec: Any) -> Any:
    resources = {key: value for key, value in (("requests", requests), ("limits", limits)) if value}
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "busybox", "resources": resources}], **NOWHERE,
                     **spec}}


def refusal(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ApiException) as caught:
        call()
    body = json.loads(caught.value.body)
    return caught.value.status, body["reason"], body["message"]


def quota(k8s: Clients, ns: str, name: str, **hard: str) -> None:
    """Create a ResourceQuota and wait for the quota controller's first count (until then nothing is enforced)."""
    k8s.core.create_namespaced_resource_quota(ns, {"metadata": {"name": name}, "spec": {"hard": hard}})
    wait_for(lambda: (k8s.core.read_namespaced_resource_quota(name, ns).status.used or None), timeout=10,
             what=f"quota {name}'s status")


def test_pod_security_enforces_the_namespace_label_with_the_apiservers_text(k8s: Clients) -> None:
    namespace(k8s, "strict", **{"pod-security.kubernetes.io/enforce": "restricted"})
    assert refusal(lambda: k8s.core.create_namespaced_pod("strict", pod("bare"))) == (
        403, "Forbidden",
        'pods "bare" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "main" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "main" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to '
        '"RuntimeDefault" or "Localhost")')
    assert not k8s.core.list_namespaced_pod("strict").items
    safe = pod("safe", securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})
    safe["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}
    k8s.core.create_namespaced_pod("strict", safe)


def test_baseline_with_a_version_refuses_host_namespaces_and_admits_a_plain_pod(k8s: Clients) -> None:
    namespace(k8s, "tasks", **{"pod-security.kubernetes.io/enforce": "baseline",
                               "pod-security.kubernetes.io/enforce-version": "v1.29"})
    k8s.core.create_namespaced_pod("tasks", pod("plain"))
    assert refusal(lambda: k8s.core.create_namespaced_pod("tasks", pod("host", hostNetwork=True))) == (
        403, "Forbidden",
        'pods "host" is forbidden: violates PodSecurity "baseline:v1.29": host namespaces (hostNetwork=true)')


def test_warn_and_audit_labels_refuse_nothing_and_an_unlabelled_namespace_is_privileged(k8s: Clients) -> None:
    namespace(k8s, "warned", **{"pod-security.kubernetes.io/warn": "restricted",
                                "pod-security.kubernetes.io/audit": "restricted"})
    k8s.core.create_namespaced_pod("warned", pod("bare"))
    k8s.core.create_namespaced_pod("default", pod("host", hostNetwork=True))


def test_a_namespace_with_an_unknown_level_is_invalid(k8s: Clients) -> None:
    status, reason, message = refusal(lambda: namespace(k8s, "typo", **{"pod-security.kubernetes.io/enforce": "strict"}))
    assert (status, reason) == (422, "Invalid")
    assert message.startswith('Namespace "typo" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
                              'Invalid value: "strict": must be one of privileged, baseline, restricted')


def test_a_pod_security_label_set_later_applies_to_the_next_pod(k8s: Clients) -> None:
    namespace(k8s, "later")
    k8s.core.create_namespaced_pod("later", pod("before"))
    k8s.core.patch_namespace("later", {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    status, _, message = refusal(lambda: k8s.core.create_namespaced_pod("later", pod("after")))
    assert status == 403 and message.startswith('pods "after" is forbidden: violates PodSecurity "restricted:latest"')


def test_a_quota_on_pods_refuses_the_pod_over_it_and_gives_back_what_a_deleted_pod_used(k8s: Clients) -> None:
    quota(k8s, "default", "one-pod", pods="1")
    k8s.core.create_namespaced_pod("default", pod("first"))
    assert k8s.core.read_namespaced_resource_quota("one-pod", "default").status.used == {"pods": "1"}
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", pod("second"))) == (
        403, "Forbidden",
        'pods "second" is forbidden: exceeded quota: one-pod, requested: pods=1, used: pods=1, limited: pods=1')
    k8s.core.delete_namespaced_pod("first", "default")
    wait_for(lambda: k8s.core.read_namespaced_resource_quota("one-pod", "default").status.used == {"pods": "0"},
             timeout=10, what="the quota controller to give the deleted pod's share back")
    k8s.core.create_namespaced_pod("default", pod("second"))


def test_a_quota_on_compute_names_every_exceeded_resource_and_what_containers_must_state(k8s: Clients) -> None:
    quota(k8s, "default", "compute", **{"requests.cpu": "1", "requests.memory": "1Gi", "limits.memory": "2Gi"})
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", pod("bare"))) == (
        403, "Forbidden",
        'pods "bare" is forbidden: failed quota: compute: must specify limits.memory for: main; '
        "requests.cpu for: main; requests.memory for: main")
    k8s.core.create_namespaced_pod("default", pod("small", requests={"cpu": "500m", "memory": "512Mi"},
                                                  limits={"memory": "512Mi"}))
    used = k8s.core.read_namespaced_resource_quota("compute", "default").status.used
    assert used == {"limits.memory": "512Mi", "requests.cpu": "500m", "requests.memory": "512Mi"}
    assert refusal(lambda: k8s.core.create_namespaced_pod(
        "default", pod("big", requests={"cpu": "1500m", "memory": "1Gi"}, limits={"memory": "1Gi"}))) == (
        403, "Forbidden",
        'pods "big" is forbidden: exceeded quota: compute, requested: requests.cpu=1500m,requests.memory=1Gi, '
        "used: requests.cpu=500m,requests.memory=512Mi, limited: requests.cpu=1,requests.memory=1Gi")


def test_limit_range_defaults_containers_and_refuses_what_is_over_its_maximum(k8s: Clients) -> None:
    k8s.core.create_namespaced_limit_range("default", {"metadata": {"name": "bounds"}, "spec": {"limits": [{
        "type": "Container", "max": {"cpu": "1", "memory": "1Gi"}, "min": {"cpu": "50m"},
        "defaultRequest": {"cpu": "100m"}}]}})
    stored = k8s.core.read_namespaced_limit_range("bounds", "default").spec.limits[0]
    assert (stored.default, stored.default_request) == ({"cpu": "1", "memory": "1Gi"},
                                                        {"cpu": "100m", "memory": "1Gi"})
    created = k8s.core.create_namespaced_pod("default", pod("bare"))
    assert created.spec.containers[0].resources.to_dict() == {
        "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "1Gi"}, "claims": None}
    assert created.metadata.annotations["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container main; cpu, memory limit for container main")
    assert created.status.qos_class == "Burstable"
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", pod("greedy", limits={"cpu": "2"}))) == (
        403, "Forbidden", 'pods "greedy" is forbidden: maximum cpu usage per Container is 1, but limit is 2')
    status, _, message = refusal(lambda: k8s.core.create_namespaced_pod(
        "default", pod("odd", requests={"cpu": "10m"}, limits={"cpu": "2", "memory": "2Gi"})))
    assert message == ('pods "odd" is forbidden: [minimum cpu usage per Container is 50m, but request is 10m, '
                       "maximum cpu usage per Container is 1, but limit is 2, "
                       "maximum memory usage per Container is 1Gi, but limit is 2Gi]")


def test_a_refused_job_pod_is_a_failed_create_event_no_condition_and_is_retried(k8s: Clients) -> None:
    quota(k8s, "default", "none", pods="0")
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}], **NOWHERE}}
    k8s.batch.create_namespaced_job("default", {"metadata": {"name": "blocked"}, "spec": {"template": template}})

    def refusals() -> list[Any]:
        return [e for e in k8s.core.list_namespaced_event(
            "default", field_selector="involvedObject.kind=Job,involvedObject.name=blocked").items
            if e.reason == "FailedCreate"]

    events = wait_for(lambda: len(refusals()) >= 2 and refusals(), timeout=10, what="two FailedCreate Events")
    assert {e.type for e in events} == {"Warning"}
    assert {e.source.component for e in events} == {"job-controller"}
    for event in events:
        assert event.message.startswith('Error creating: pods "blocked-')
        assert event.message.endswith('" is forbidden: exceeded quota: none, requested: pods=1, used: pods=0, '
                                      "limited: pods=0")
    job = k8s.batch.read_namespaced_job("blocked", "default")
    assert not job.status.conditions and not job.status.active and not job.status.failed
    k8s.core.patch_namespaced_resource_quota("none", "default", {"spec": {"hard": {"pods": "1"}}})
    wait_for(lambda: k8s.core.list_namespaced_pod("default", label_selector="job-name=blocked").items, timeout=70,
             what="the Job controller's retry to create the pod once the quota allows it")


def test_each_admission_plugin_can_be_switched_off(tmp_path: Path) -> None:
    config = fast_config(state_dir=tmp_path / "devcluster", pod_security_admission=False,
                         resource_quota_admission=False, limit_ranger_admission=False, service_account_admission=False)
    with DevCluster(config) as cluster:
        import kubernetes

        api = kubernetes.config.new_client_from_config(str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "strict", "labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}})
        core.create_namespaced_resource_quota("strict", {"metadata": {"name": "none"}, "spec": {"hard": {"pods": "0"}}})
        core.create_namespaced_limit_range("strict", {"metadata": {"name": "bounds"}, "spec": {"limits": [{
            "type": "Container", "max": {"cpu": "1"}}]}})
        wait_for(lambda: core.read_namespaced_resource_quota("none", "strict").status.used, timeout=10,
                 what="the quota's status")
        created = core.create_namespaced_pod("strict", pod("anything", limits={"cpu": "2"}, serviceAccountName="none"))
        assert created.metadata.annotations is None
        api.close()


def test_a_quota_counts_claims_their_storage_by_class_and_any_object(k8s: Clients) -> None:
    quota(k8s, "default", "storage", **{"requests.storage": "1Gi", "standard.storageclass.storage.k8s.io/"
                                        "persistentvolumeclaims": "1", "count/jobs.batch": "0", "configmaps": "1"})
    claim: Any = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                       "resources": {"requests": {"storage": "512Mi"}}}}
    k8s.core.create_namespaced_persistent_volume_claim("default", claim)
    assert k8s.core.read_namespaced_resource_quota("storage", "default").status.used == {
        "configmaps": "0", "count/jobs.batch": "0", "requests.storage": "512Mi",
        "standard.storageclass.storage.k8s.io/persistentvolumeclaims": "1"}
    claim["metadata"]["name"] = "more"
    assert refusal(lambda: k8s.core.create_namespaced_persistent_volume_claim("default", claim)) == (
        403, "Forbidden",
        'persistentvolumeclaims "more" is forbidden: exceeded quota: storage, requested: '
        "standard.storageclass.storage.k8s.io/persistentvolumeclaims=1, used: "
        "standard.storageclass.storage.k8s.io/persistentvolumeclaims=1, limited: "
        "standard.storageclass.storage.k8s.io/persistentvolumeclaims=1")
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    assert refusal(lambda: k8s.batch.create_namespaced_job("default", {"metadata": {"name": "j"},
                                                                       "spec": {"template": template}})) == (
        403, "Forbidden", 'jobs.batch "j" is forbidden: exceeded quota: storage, requested: count/jobs.batch=1, '
                          "used: count/jobs.batch=0, limited: count/jobs.batch=0")
    k8s.core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    status, _, message = refusal(lambda: k8s.core.create_namespaced_config_map("default", {"metadata": {"name": "two"}}))
    assert (status, message) == (403, 'configmaps "two" is forbidden: exceeded quota: storage, requested: '
                                      "configmaps=1, used: configmaps=1, limited: configmaps=1")
    k8s.core.delete_namespaced_config_map("one", "default")
    wait_for(lambda: k8s.core.read_namespaced_resource_quota("storage", "default").status.used["configmaps"] == "0",
             timeout=10, what="the quota controller to count the deleted ConfigMap out")


def test_limit_range_pod_totals_ratios_and_claim_sizes(k8s: Clients) -> None:
    k8s.core.create_namespaced_limit_range("default", {"metadata": {"name": "shapes"}, "spec": {"limits": [
        {"type": "Pod", "max": {"memory": "1Gi"}},
        {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
        {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]}})
    two = pod("two", requests={"cpu": "100m", "memory": "600Mi"}, limits={"cpu": "100m", "memory": "600Mi"})
    two["spec"]["containers"].append({**two["spec"]["containers"][0], "name": "side"})
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", two)) == (
        403, "Forbidden", 'pods "two" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1200Mi')
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", pod(
        "bursty", requests={"cpu": "100m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "64Mi"}))) == (
        403, "Forbidden",
        'pods "bursty" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000')

    def claim(name: str, size: str) -> Any:
        return {"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                     "resources": {"requests": {"storage": size}}}}

    assert refusal(lambda: k8s.core.create_namespaced_persistent_volume_claim("default", claim("tiny", "1Mi"))) == (
        403, "Forbidden",
        'persistentvolumeclaims "tiny" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, '
        "but request is 1Mi")
    assert refusal(lambda: k8s.core.create_namespaced_persistent_volume_claim("default", claim("huge", "20Gi"))) == (
        403, "Forbidden",
        'persistentvolumeclaims "huge" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, '
        "but request is 20Gi")
    k8s.core.create_namespaced_persistent_volume_claim("default", claim("fits", "2Gi"))


def test_a_scoped_quota_covers_only_the_pods_in_its_scope(k8s: Clients) -> None:
    k8s.core.create_namespaced_resource_quota("default", {"metadata": {"name": "no-best-effort"},
                                                          "spec": {"hard": {"pods": "0"}, "scopes": ["BestEffort"]}})
    wait_for(lambda: k8s.core.read_namespaced_resource_quota("no-best-effort", "default").status.used, timeout=10,
             what="the scoped quota's status")
    k8s.core.create_namespaced_pod("default", pod("burstable", requests={"cpu": "10m"}))
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", pod("best-effort"))) == (
        403, "Forbidden", 'pods "best-effort" is forbidden: exceeded quota: no-best-effort, requested: pods=1, '
                          "used: pods=0, limited: pods=0")
    k8s.core.create_namespaced_config_map("default", {"metadata": {"name": "not-a-pod"}})
    assert k8s.core.read_namespaced_resource_quota("no-best-effort", "default").status.used == {"pods": "0"}


def test_a_pod_needs_its_service_account_and_each_namespace_gets_a_default_one(k8s: Clients) -> None:
    """The ServiceAccount plugin refuses a pod whose account is missing (on a cluster, also a pod created in
    a new namespace before the service-account controller made its `default` account)."""
    assert refusal(lambda: k8s.core.create_namespaced_pod("default", pod("orphan", serviceAccountName="robot"))) == (
        403, "Forbidden", 'pods "orphan" is forbidden: error looking up service account default/robot: '
        'serviceaccount "robot" not found')
    assert k8s.core.list_namespaced_pod("default").items == []
    k8s.core.create_namespaced_service_account("default", {"metadata": {"name": "robot"}})
    k8s.core.create_namespaced_pod("default", pod("orphan", serviceAccountName="robot"))
    namespace(k8s, "fresh")  # waits for the controller's default account
    k8s.core.create_namespaced_pod("fresh", pod("plain"))
