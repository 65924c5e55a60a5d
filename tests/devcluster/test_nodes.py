"""Nodes, scheduling, StorageClasses and volume attachment of the stand-in, checked against kube-scheduler's,
the PV controller's and the attach/detach controller's behaviour and texts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devcluster import DevCluster
from devcluster.cluster import fast_config
from devcluster.nodes import NodeConfig
from devcluster.pytest_plugin import wait_for
from devcluster.scheduling import Rejection, fit_error, node_affinity_fits, tolerates

from .conftest import Clients

NS = "default"
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (.ci/setup.d/10-podman.sh)")
pytestmark = [pytest.mark.devcluster]


@contextmanager
def cluster(tmp_path: Path, **config: Any) -> Iterator[tuple[DevCluster, Clients]]:
    with DevCluster(fast_config(state_dir=tmp_path / "devcluster", **config)) as dev:
        api = kubernetes.config.new_client_from_config(str(dev.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield dev, Clients(api, kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api))
        finally:
            api.close()


def pod(name: str, script: str = "true", claim: str | None = None, **spec: Any) -> Any:
    body: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]}
    if claim:
        body["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        body["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {"metadata": {"name": name}, "spec": body | spec}


def claim(name: str, storage_class: str | None = None, mode: str = "ReadWriteOnce") -> Any:
    spec: dict[str, Any] = {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def events(k8s: Clients, name: str) -> list[tuple[str, str, str]]:
    found = k8s.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
    return [(e.type, e.reason, e.message) for e in found]


def phase(k8s: Clients, name: str, *phases: str) -> Any:
    current = k8s.core.read_namespaced_pod(name, NS)
    return current if current.status.phase in phases else None


def unschedulable(k8s: Clients, name: str) -> str:
    def probe() -> str | None:
        conditions = k8s.core.read_namespaced_pod(name, NS).status.conditions or []
        return next((c.message for c in conditions if c.type == "PodScheduled" and c.reason == "Unschedulable"), None)

    return wait_for(probe, timeout=10, what=f"pod {name} to be marked Unschedulable")


def zone_affinity(operator: str, *values: str, key: str = "topology.kubernetes.io/zone") -> dict[str, Any]:
    expression: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        expression["values"] = list(values)
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expression]}]}}}


# -- the rules on their own --------------------------------------------------------------------------

NODE = {"metadata": {"name": "n1", "labels": {"zone": "a", "gpus": "4"}}}


@pytest.mark.parametrize(("operator", "values", "fits"), [
    ("In", ["a", "b"], True), ("In", ["b"], False), ("NotIn", ["b"], True), ("NotIn", ["a"], False),
    ("Exists", [], True), ("DoesNotExist", [], False), ("Gt", ["3"], True), ("Gt", ["4"], False),
    ("Lt", ["5"], True), ("Lt", ["4"], False), ("Gt", ["many"], False),
])
def test_node_affinity_operators(operator: str, values: list[str], fits: bool) -> None:
    key = "gpus" if operator in ("Gt", "Lt") else "zone"
    assert node_affinity_fits({"affinity": zone_affinity(operator, *values, key=key)}, NODE) is fits


def test_affinity_terms_are_ored_and_a_missing_label_is_only_matched_by_not_in_or_does_not_exist() -> None:
    terms = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}
    assert node_affinity_fits({"affinity": terms}, NODE)
    assert node_affinity_fits({"affinity": zone_affinity("NotIn", "x", key="absent")}, NODE)
    assert not node_affinity_fits({"affinity": zone_affinity("In", "x", key="absent")}, NODE)
    assert not node_affinity_fits({"nodeSelector": {"zone": "a", "gpus": "8"}}, NODE)


def test_tolerations() -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert tolerates({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "dedicated", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": "dedicated", "value": "cpu"}, taint)
    assert not tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, taint)


def test_fit_error_counts_sorts_and_adds_what_preemption_found() -> None:
    message = fit_error(3, "", {"a": Rejection(("Insufficient cpu", "Insufficient memory"), resolvable=True),
                                "b": Rejection(("node(s) didn't match Pod's node affinity/selector",)),
                                "c": Rejection(("Insufficient cpu",), resolvable=True)})
    assert message == ("0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node "
                       "affinity/selector, 2 Insufficient cpu. preemption: 0/3 nodes are available: "
                       "1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.")
    assert fit_error(2, 'persistentvolumeclaim "x" not found', {}) == (
        '0/2 nodes are available: persistentvolumeclaim "x" not found. preemption: 0/2 nodes are available: '
        "2 Preemption is not helpful for scheduling.")


# -- the cluster --------------------------------------------------------------------------------------

@needs_podman
def test_two_zoned_nodes_are_served_and_pods_say_which_node_runs_them(k8s: Clients) -> None:
    nodes = {n.metadata.name: n for n in k8s.core.list_node().items}
    assert sorted(nodes) == ["devcluster-1", "devcluster-2"]
    zones = {n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes.values()}
    assert zones == {"zone-a", "zone-b"}
    assert all(n.metadata.labels["kubernetes.io/hostname"] == name for name, n in nodes.items())
    assert all(n.status.allocatable["pods"] == "110" and n.status.allocatable["cpu"] for n in nodes.values())
    for index in range(2):
        k8s.core.create_namespaced_pod(NS, pod(f"p{index}"))
    done = [wait_for(lambda i=index: phase(k8s, f"p{i}", "Succeeded"), timeout=30, what="the pod")
            for index in range(2)]
    # Equal nodes: kube-scheduler breaks the tie at random, the stand-in in turn, so both nodes are used.
    assert {p.spec.node_name for p in done} == set(nodes)
    addresses = {n: nodes[n].status.addresses[0].address for n in nodes}
    assert all(p.status.host_ip == addresses[p.spec.node_name] for p in done)


def test_unschedulable_pod_gets_the_aggregated_message_and_a_failed_scheduling_event(tmp_path: Path) -> None:
    with cluster(tmp_path, node_cpu=2) as (_, k8s):
        big = pod("big")
        big["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "3"}}
        big["spec"]["affinity"] = zone_affinity("NotIn", "zone-b")
        k8s.core.create_namespaced_pod(NS, big)
        message = unschedulable(k8s, "big")
        assert message == ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node "
                           "affinity/selector. preemption: 0/2 nodes are available: 1 No preemption victims found "
                           "for incoming pod, 1 Preemption is not helpful for scheduling.")
        assert ("Warning", "FailedScheduling", message) in events(k8s, "big")
        assert k8s.core.read_namespaced_pod("big", NS).spec.node_name is None


@needs_podman
def test_taints_keep_pods_off_unless_tolerated(tmp_path: Path) -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    nodes = (NodeConfig(name="plain", zone="zone-a"), NodeConfig(name="gpu", zone="zone-b", taints=[taint]))
    with cluster(tmp_path, nodes=nodes) as (_, k8s):
        for index in range(3):
            k8s.core.create_namespaced_pod(NS, pod(f"p{index}"))
        k8s.core.create_namespaced_pod(NS, pod("pinned", nodeSelector={"kubernetes.io/hostname": "gpu"}))
        k8s.core.create_namespaced_pod(NS, pod("tolerant", nodeSelector={"kubernetes.io/hostname": "gpu"},
                                               tolerations=[{"key": "dedicated", "operator": "Exists"}]))
        ran = [wait_for(lambda i=index: phase(k8s, f"p{i}", "Succeeded"), timeout=30, what="the pod")
               for index in range(3)]
        assert {p.spec.node_name for p in ran} == {"plain"}
        assert wait_for(lambda: phase(k8s, "tolerant", "Succeeded"), timeout=30, what="the pod").spec.node_name == "gpu"
        assert unschedulable(k8s, "pinned") == (
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated "
            "taint {dedicated: gpu}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")


@needs_podman
def test_wait_for_first_consumer_binds_on_the_first_pods_node_and_ties_later_pods_to_its_zone(k8s: Clients) -> None:
    k8s.core.create_namespaced_persistent_volume_claim(NS, claim("data"))
    assert wait_for(lambda: ("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before "
                             "binding") in events(k8s, "data"), timeout=5, what="the WaitForFirstConsumer event")
    pending = k8s.core.read_namespaced_persistent_volume_claim("data", NS)
    assert (pending.spec.storage_class_name, pending.status.phase, pending.spec.volume_name) == (
        "standard", "Pending", None)
    k8s.core.create_namespaced_pod(NS, pod("first", "echo hi > /data/f", claim="data"))
    first = wait_for(lambda: phase(k8s, "first", "Succeeded"), timeout=30, what="the first pod")
    bound = k8s.core.read_namespaced_persistent_volume_claim("data", NS)
    assert bound.status.phase == "Bound"
    assert bound.metadata.annotations["volume.kubernetes.io/selected-node"] == first.spec.node_name
    volume = k8s.core.read_persistent_volume(bound.spec.volume_name)
    zone = k8s.core.read_node(first.spec.node_name).metadata.labels["topology.kubernetes.io/zone"]
    term = volume.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert (term.key, term.operator, term.values) == ("topology.kubernetes.io/zone", "In", [zone])
    assert (volume.spec.claim_ref.name, volume.status.phase) == ("data", "Bound")

    for index in range(2):  # the tie-break would alternate nodes; the PV's zone keeps them on one
        k8s.core.create_namespaced_pod(NS, pod(f"later{index}", "cat /data/f", claim="data"))
        later = wait_for(lambda i=index: phase(k8s, f"later{i}", "Succeeded"), timeout=30, what="a later pod")
        assert later.spec.node_name == first.spec.node_name
    other = "zone-b" if zone == "zone-a" else "zone-a"
    k8s.core.create_namespaced_pod(NS, pod("elsewhere", claim="data", affinity=zone_affinity("In", other)))
    assert unschedulable(k8s, "elsewhere") == (
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had volume node "
        "affinity conflict. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")


@needs_podman
def test_local_path_class_pins_the_volume_to_the_node_and_immediate_mode_binds_at_once(tmp_path: Path) -> None:
    with cluster(tmp_path, storage_binding_mode="Immediate") as (_, k8s):
        k8s.core.create_namespaced_persistent_volume_claim(NS, claim("now", "local-path"))
        bound = wait_for(lambda: (c := k8s.core.read_namespaced_persistent_volume_claim("now", NS)).status.phase
                         == "Bound" and c, timeout=5, what="the claim to bind")
        assert k8s.core.read_persistent_volume(bound.spec.volume_name).spec.node_affinity is None
    with cluster(tmp_path / "wffc") as (_, k8s):
        k8s.core.create_namespaced_persistent_volume_claim(NS, claim("local", "local-path"))
        k8s.core.create_namespaced_pod(NS, pod("first", claim="local"))
        first = wait_for(lambda: phase(k8s, "first", "Succeeded"), timeout=30, what="the pod")
        name = k8s.core.read_namespaced_persistent_volume_claim("local", NS).spec.volume_name
        term = k8s.core.read_persistent_volume(name).spec.node_affinity.required.node_selector_terms[0]
        assert (term.match_expressions[0].key, term.match_expressions[0].values) == (
            "kubernetes.io/hostname", [first.spec.node_name])
        k8s.core.delete_namespaced_persistent_volume_claim("local", NS)
        k8s.core.delete_namespaced_pod("first", NS)
        wait_for(lambda: not k8s.core.list_persistent_volume().items, timeout=10, what="the PV to be deleted")


@needs_podman
def test_a_read_write_once_block_volume_is_attached_to_one_node_at_a_time(tmp_path: Path) -> None:
    nodes = (NodeConfig(name="node-1", zone="zone-a"), NodeConfig(name="node-2", zone="zone-a"))
    with cluster(tmp_path, nodes=nodes) as (_, k8s):
        k8s.core.create_namespaced_persistent_volume_claim(NS, claim("disk"))
        k8s.core.create_namespaced_pod(NS, pod("holder", "sleep 3", claim="disk",
                                               nodeSelector={"kubernetes.io/hostname": "node-1"}))
        wait_for(lambda: phase(k8s, "holder", "Running"), timeout=30, what="the first pod to run")
        k8s.core.create_namespaced_pod(NS, pod("waiter", "echo ok", claim="disk",
                                               nodeSelector={"kubernetes.io/hostname": "node-2"}))
        volume = k8s.core.read_namespaced_persistent_volume_claim("disk", NS).spec.volume_name
        blocked = ("Warning", "FailedAttachVolume",
                   f'Multi-Attach error for volume "{volume}" Volume is already used by pod(s) holder')
        wait_for(lambda: blocked in events(k8s, "waiter"), timeout=10, what="the Multi-Attach event")
        waiting = k8s.core.read_namespaced_pod("waiter", NS).status
        assert waiting.phase == "Pending"
        assert waiting.container_statuses[0].state.waiting.reason == "ContainerCreating"
        done = wait_for(lambda: phase(k8s, "waiter", "Succeeded", "Failed"), timeout=30, what="the second pod")
        assert done.status.phase == "Succeeded" and done.spec.node_name == "node-2"
        assert ("Normal", "SuccessfulAttachVolume", f'AttachVolume.Attach succeeded for volume "{volume}"') in \
            events(k8s, "waiter")


def test_bad_storage_input_is_refused_or_reported_and_nothing_is_bound(tmp_path: Path) -> None:
    with cluster(tmp_path) as (_, k8s):
        storage = kubernetes.client.StorageV1Api(k8s.api)
        with pytest.raises(ApiException) as refused:
            storage.create_storage_class({"metadata": {"name": "bad"}, "provisioner": "",
                                          "volumeBindingMode": "Later"})
        assert refused.value.status == 422
        assert "Unsupported value: 'Later'" in refused.value.body and "provisioner: Required value" in refused.value.body
        assert sorted(c.metadata.name for c in storage.list_storage_class().items) == ["local-path", "standard"]
        with pytest.raises(ApiException) as immutable:
            storage.patch_storage_class("standard", {"volumeBindingMode": "Immediate"})
        assert immutable.value.status == 422 and "field is immutable" in immutable.value.body
        k8s.core.create_namespaced_persistent_volume_claim(NS, claim("lost", "no-such-class"))
        wait_for(lambda: ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "no-such-class" not found')
                 in events(k8s, "lost"), timeout=5, what="the ProvisioningFailed event")
        k8s.core.create_namespaced_pod(NS, pod("stuck", claim="lost"))
        assert unschedulable(k8s, "stuck") == (
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are "
            "available: 2 Preemption is not helpful for scheduling.")
        assert k8s.core.read_namespaced_persistent_volume_claim("lost", NS).status.phase == "Pending"
        assert not k8s.core.list_persistent_volume().items
