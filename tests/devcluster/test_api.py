"""The stand-in API server's REST semantics, exercised through the official Python client."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, cast

import httpx
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devcluster import DevCluster
from devcluster.cluster import fast_config
from devcluster.pytest_plugin import wait_for

from .conftest import Clients

pytestmark = pytest.mark.devcluster

NS = "default"


# The official client types request bodies as its model classes and every field of a response as
# Optional; it accepts plain dicts, and the server fills what these tests read, so both are typed Any here.
def configmap(name: str, labels: dict[str, str] | None = None, **metadata: Any) -> Any:
    return {"metadata": {"name": name, "labels": labels or {}, **metadata}, "data": {"k": name}}


def error_body(exc: ApiException) -> dict[str, Any]:
    assert exc.body is not None
    return json.loads(exc.body)


def test_create_fills_server_metadata_and_generate_name(k8s: Clients) -> None:
    first: Any = k8s.core.create_namespaced_config_map(NS, configmap("", generateName="gen-"))
    second: Any = k8s.core.create_namespaced_config_map(NS, configmap("", generateName="gen-"))
    assert first.metadata.name.startswith("gen-") and len(first.metadata.name) == len("gen-") + 5
    assert first.metadata.name != second.metadata.name
    assert first.metadata.uid != second.metadata.uid
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.creation_timestamp is not None


def test_duplicate_create_is_409_already_exists_and_missing_get_is_404_status(k8s: Clients) -> None:
    k8s.core.create_namespaced_config_map(NS, configmap("dup"))
    with pytest.raises(ApiException) as taken:
        k8s.core.create_namespaced_config_map(NS, configmap("dup"))
    assert taken.value.status == 409
    body = error_body(taken.value)
    assert (body["kind"], body["reason"], body["details"]["name"]) == ("Status", "AlreadyExists", "dup")
    with pytest.raises(ApiException) as missing:
        k8s.batch.read_namespaced_job("nope", NS)
    assert missing.value.status == 404
    assert error_body(missing.value)["message"] == 'jobs.batch "nope" not found'
    with pytest.raises(ApiException) as no_namespace:
        k8s.core.create_namespaced_config_map("absent", configmap("x"))
    assert no_namespace.value.status == 404


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=a", {"a1", "a2"}),
        ("app==a", {"a1", "a2"}),
        ("app!=a", {"b1", "none"}),
        ("app in (a,b)", {"a1", "a2", "b1"}),
        ("app notin (a)", {"b1", "none"}),
        ("tier", {"a1", "b1"}),
        ("!tier", {"a2", "none"}),
        ("app=a,tier=web", {"a1"}),
        ("app in (a, b),!tier", {"a2"}),
        ("example.org/role=x", {"b1"}),
        ("app=", set()),
        ("", {"a1", "a2", "b1", "none"}),
    ],
)
def test_label_selector_grammar(k8s: Clients, selector: str, expected: set[str]) -> None:
    for name, labels in {"a1": {"app": "a", "tier": "web"}, "a2": {"app": "a"},
                         "b1": {"app": "b", "tier": "db", "example.org/role": "x"}, "none": {}}.items():
        k8s.core.create_namespaced_config_map(NS, configmap(name, labels))
    found: list[Any] = k8s.core.list_namespaced_config_map(NS, label_selector=selector).items
    assert {c.metadata.name for c in found} == expected


@pytest.mark.parametrize("selector", ["app in a", "=a", "app=a,", "app in ()", "Bad Key=a", "app=not valid!"])
def test_malformed_label_selector_is_400(k8s: Clients, selector: str) -> None:
    with pytest.raises(ApiException) as bad:
        k8s.core.list_namespaced_config_map(NS, label_selector=selector)
    assert bad.value.status == 400
    assert "unable to parse requirement" in error_body(bad.value)["message"]


def test_field_selectors(k8s: Clients) -> None:
    for name in ("one", "two"):
        k8s.core.create_namespaced_config_map(NS, configmap(name))
    names: list[Any] = k8s.core.list_namespaced_config_map(NS, field_selector="metadata.name=two").items
    assert [c.metadata.name for c in names] == ["two"]
    others: list[Any] = k8s.core.list_namespaced_config_map(NS, field_selector="metadata.name!=two").items
    assert [c.metadata.name for c in others] == ["one"]
    pod: Any = {"metadata": {"name": "big"}, "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
        "requests": {"cpu": "10000"}}}]}}
    k8s.core.create_namespaced_pod(NS, pod)
    pending: list[Any] = k8s.core.list_namespaced_pod(NS, field_selector="status.phase=Pending").items
    assert [p.metadata.name for p in pending] == ["big"]
    assert k8s.core.list_namespaced_pod(NS, field_selector="status.phase=Running").items == []
    with pytest.raises(ApiException) as bad:
        k8s.core.list_namespaced_config_map(NS, field_selector="data.k=one")
    assert bad.value.status == 400 and "field label not supported" in error_body(bad.value)["message"]


def test_limit_and_continue_pages_then_410_after_compaction(k8s: Clients, devcluster: DevCluster) -> None:
    for index in range(7):
        k8s.core.create_namespaced_config_map(NS, configmap(f"page-{index}"))
    first: Any = k8s.core.list_namespaced_config_map(NS, limit=3)
    assert [c.metadata.name for c in first.items] == ["page-0", "page-1", "page-2"]
    assert first.metadata.remaining_item_count == 4
    # Under a selector kube-apiserver cannot know how many are left: it pages on but leaves the count unset.
    selected: Any = k8s.core.list_namespaced_config_map(NS, limit=3, field_selector="metadata.name!=page-0")
    assert [c.metadata.name for c in selected.items] == ["page-1", "page-2", "page-3"]
    assert selected.metadata._continue and selected.metadata.remaining_item_count is None
    second: Any = k8s.core.list_namespaced_config_map(NS, limit=3, _continue=first.metadata._continue)
    assert [c.metadata.name for c in second.items] == ["page-3", "page-4", "page-5"]
    k8s.core.create_namespaced_config_map(NS, configmap("page-9"))
    devcluster.compact()
    with pytest.raises(ApiException) as expired:
        k8s.core.list_namespaced_config_map(NS, limit=3, _continue=second.metadata._continue)
    assert expired.value.status == 410 and error_body(expired.value)["reason"] == "Expired"


def test_watch_resumes_from_resource_version_and_reports_selector_transitions(k8s: Clients) -> None:
    start = list_version(k8s)
    k8s.core.create_namespaced_config_map(NS, configmap("w1", {"watched": "yes"}))
    k8s.core.create_namespaced_config_map(NS, configmap("w2", {"watched": "no"}))
    k8s.core.patch_namespaced_config_map("w1", NS, {"data": {"k": "changed"}})
    k8s.core.patch_namespaced_config_map("w1", NS, {"metadata": {"labels": {"watched": "no"}}})
    k8s.core.patch_namespaced_config_map("w2", NS, {"metadata": {"labels": {"watched": "yes"}}})
    k8s.core.delete_namespaced_config_map("w2", NS)
    seen = [(e["type"], e["object"].metadata.name) for e in kubernetes.watch.Watch().stream(
        k8s.core.list_namespaced_config_map, NS, label_selector="watched=yes", resource_version=start,
        timeout_seconds=1)]
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1"), ("ADDED", "w2"), ("DELETED", "w2")]


def test_watch_from_compacted_version_is_410_gone(k8s: Clients, devcluster: DevCluster) -> None:
    old: Any = k8s.core.create_namespaced_config_map(NS, configmap("old"))
    k8s.core.create_namespaced_config_map(NS, configmap("newer"))
    devcluster.compact()
    with pytest.raises(ApiException) as gone:
        list(kubernetes.watch.Watch().stream(k8s.core.list_namespaced_config_map, NS, resource_version=old.metadata.resource_version,
                                             timeout_seconds=1))
    assert gone.value.status == 410


def test_watch_sends_bookmarks_and_ends_when_dropped(tmp_path: Path) -> None:
    """The official client's watch gets bookmarks (here every 0.5 s instead of the default minute) and ends
    at once when the stand-in drops its watches."""
    with DevCluster(fast_config(state_dir=tmp_path / "dc", bookmark_interval=0.5)) as cluster:
        api = kubernetes.config.new_client_from_config(str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        core = kubernetes.client.CoreV1Api(api)
        version = core.list_namespaced_config_map(NS).metadata.resource_version
        events: list[str] = []

        def consume() -> None:
            for event in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, NS,
                                                         resource_version=version, allow_watch_bookmarks=True,
                                                         timeout_seconds=30, _preload_content=False):
                events.append(event["type"])

        reader = threading.Thread(target=consume)
        reader.start()
        wait_for(lambda: "BOOKMARK" in events, timeout=5, what="a BOOKMARK event")
        started = time.monotonic()
        cluster.drop_watches()
        reader.join(timeout=5)
        api.close()
    assert not reader.is_alive() and time.monotonic() - started < 5


def test_injected_watch_faults_force_410_and_cut_streams(k8s: Clients, devcluster: DevCluster) -> None:
    version = list_version(k8s)
    devcluster.inject(verb="watch", resource="configmaps", status=410, times=1)
    with pytest.raises(ApiException) as forced:
        list(kubernetes.watch.Watch().stream(k8s.core.list_namespaced_config_map, NS, resource_version=version,
                                             timeout_seconds=5))
    assert forced.value.status == 410
    devcluster.inject(verb="watch", resource="configmaps", status=0, drop_after=0.5, times=1)
    started = time.monotonic()
    assert list(kubernetes.watch.Watch().stream(k8s.core.list_namespaced_config_map, NS,
                                                resource_version=version, timeout_seconds=30)) == []
    assert time.monotonic() - started < 5


def test_server_side_printing_for_kubectl_lists_and_watches(k8s: Clients, devcluster: DevCluster) -> None:
    k8s.core.create_namespaced_config_map(NS, configmap("printed"))
    headers = {"Authorization": f"Bearer {devcluster.admin_token}",
               "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    url = f"{devcluster.url}/api/v1/namespaces/{NS}/configmaps"
    table = httpx.get(url, headers=headers).json()
    assert table["kind"] == "Table" and [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"][0] == "printed"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    with httpx.stream("GET", f"{url}?watch=1&timeoutSeconds=1", headers=headers) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert [(e["type"], e["object"]["kind"], e["object"]["rows"][0]["cells"][0]) for e in events] == [
        ("ADDED", "Table", "printed")]


def test_replace_with_stale_resource_version_is_409_conflict(k8s: Clients) -> None:
    created: Any = k8s.core.create_namespaced_config_map(NS, configmap("cas"))
    created.data = {"k": "first"}
    k8s.core.replace_namespaced_config_map("cas", NS, created)
    created.data = {"k": "second"}
    with pytest.raises(ApiException) as stale:
        k8s.core.replace_namespaced_config_map("cas", NS, created)
    assert stale.value.status == 409 and error_body(stale.value)["reason"] == "Conflict"
    assert "the object has been modified" in error_body(stale.value)["message"]
    with pytest.raises(ApiException) as stale_patch:
        k8s.core.patch_namespaced_config_map("cas", NS, {"metadata": {
            "resourceVersion": created.metadata.resource_version}, "data": {"k": "third"}})
    assert stale_patch.value.status == 409
    assert k8s.core.read_namespaced_config_map("cas", NS).data == {"k": "first"}


def test_patch_flavours(k8s: Clients, devcluster: DevCluster) -> None:
    pod: Any = {"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {"nodeSelector": {"never": "x"},
           "containers": [{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}]}}
    k8s.core.create_namespaced_pod(NS, pod)
    # Strategic merge (the official client's default for dicts): list items merge by name.
    patched: Any = k8s.core.patch_namespaced_pod("p", NS, {"metadata": {"labels": {"b": None, "c": "3"}}, "spec": {
        "containers": [{"name": "two", "image": "alpine"}]}})
    assert patched.metadata.labels == {"a": "1", "c": "3"}
    assert [(c.name, c.image) for c in patched.spec.containers] == [("one", "busybox"), ("two", "alpine")]
    # JSON merge patch replaces lists wholesale.
    url = f"{devcluster.url}/api/v1/namespaces/{NS}/configmaps/m"
    headers = {"Authorization": f"Bearer {devcluster.admin_token}"}
    k8s.core.create_namespaced_config_map(NS, cast(Any, {"metadata": {"name": "m", "finalizers": ["a/x", "b/y"]}}))
    merged = httpx.patch(url, headers={**headers, "Content-Type": "application/merge-patch+json"},
                         content=json.dumps({"metadata": {"finalizers": ["c/z"]}}))
    assert merged.json()["metadata"]["finalizers"] == ["c/z"]
    # JSON patch, with a failing test op that leaves the object alone.
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/finalizers/0", "value": "nope"},
           {"op": "add", "path": "/data", "value": {"x": "y"}}]
    failed = httpx.patch(url, headers={**headers, "Content-Type": "application/json-patch+json"},
                         content=json.dumps(ops))
    assert failed.status_code == 422 and "test failed" in failed.json()["message"]
    ops[0]["value"] = "c/z"
    assert httpx.patch(url, headers={**headers, "Content-Type": "application/json-patch+json"},
                       content=json.dumps(ops)).json()["data"] == {"x": "y"}
    unsupported = httpx.patch(url, headers={**headers, "Content-Type": "application/apply-patch+yaml"},
                              content="{}")
    assert unsupported.status_code == 422 and "server-side apply" in unsupported.json()["message"]


def test_status_subresource_is_separate_from_the_main_resource(k8s: Clients) -> None:
    job: Any = {"metadata": {"name": "st"}, "spec": {"suspend": True, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
    k8s.batch.create_namespaced_job(NS, job)
    k8s.batch.patch_namespaced_job("st", NS, {"status": {"active": 7}, "metadata": {"labels": {"x": "y"}}})
    before: Any = k8s.batch.read_namespaced_job("st", NS)
    assert before.status.active in (None, 0)
    k8s.batch.patch_namespaced_job_status("st", NS, {"status": {"failed": 2}, "spec": {"parallelism": 5}})
    after: Any = k8s.batch.read_namespaced_job("st", NS)
    assert after.status.failed == 2 and after.spec.parallelism == 1 and after.metadata.labels["x"] == "y"


def test_validation_rejects_what_a_cluster_rejects(k8s: Clients) -> None:
    long_name = "j" * 64
    template: Any = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(ApiException) as too_long:
        k8s.batch.create_namespaced_job(NS, cast(Any, {"metadata": {"name": long_name}, "spec": {"template": template}}))
    assert too_long.value.status == 422 and "no more than 63 characters" in error_body(too_long.value)["message"]
    with pytest.raises(ApiException) as bad_label:
        k8s.core.create_namespaced_config_map(NS, configmap("l", {"k": "not ok!"}))
    assert bad_label.value.status == 422
    with pytest.raises(ApiException) as always:
        k8s.batch.create_namespaced_job(NS, cast(Any, {"metadata": {"name": "a"}, "spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}]}}}}))
    assert always.value.status == 422 and "restartPolicy" in error_body(always.value)["message"]
    with pytest.raises(ApiException) as escaping:
        k8s.core.create_namespaced_pod(NS, cast(Any, {"metadata": {"name": "esc"}, "spec": {
            "volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../../x"}]}}],
            "containers": [{"name": "c", "image": "busybox"}]}}))
    assert escaping.value.status == 422 and "without '..'" in error_body(escaping.value)["message"]
    k8s.batch.create_namespaced_job(NS, cast(Any, {"metadata": {"name": "imm"}, "spec": {"template": template}}))
    with pytest.raises(ApiException) as immutable:
        k8s.batch.patch_namespaced_job("imm", NS, {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}})
    assert immutable.value.status == 422 and "immutable" in error_body(immutable.value)["message"]


def owned(name: str, owner: Any, block: bool = False) -> Any:
    return configmap(name, ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
                                             "uid": owner.metadata.uid, "blockOwnerDeletion": block}])


def names(k8s: Clients) -> set[str]:
    found: list[Any] = k8s.core.list_namespaced_config_map(NS).items
    return {c.metadata.name for c in found}


def list_version(k8s: Clients) -> str:
    listed: Any = k8s.core.list_namespaced_config_map(NS)
    return listed.metadata.resource_version


def test_garbage_collection_background_and_orphan(k8s: Clients) -> None:
    owner = k8s.core.create_namespaced_config_map(NS, configmap("owner"))
    child = k8s.core.create_namespaced_config_map(NS, owned("child", owner))
    k8s.core.create_namespaced_config_map(NS, owned("grandchild", child))
    k8s.core.delete_namespaced_config_map("owner", NS, propagation_policy="Background")
    wait_for(lambda: not names(k8s) & {"owner", "child", "grandchild"}, timeout=5, what="cascading deletion")

    owner = k8s.core.create_namespaced_config_map(NS, configmap("owner2"))
    k8s.core.create_namespaced_config_map(NS, owned("kept", owner))
    k8s.core.delete_namespaced_config_map("owner2", NS, propagation_policy="Orphan")
    wait_for(lambda: "owner2" not in names(k8s), timeout=5, what="the orphaning owner to go")
    kept: Any = k8s.core.read_namespaced_config_map("kept", NS)
    assert kept.metadata.owner_references is None


def test_garbage_collection_foreground_waits_for_blocking_dependents(k8s: Clients) -> None:
    owner = k8s.core.create_namespaced_config_map(NS, configmap("fg"))
    blocker_body: Any = {**owned("blocker", owner, block=True),
                         "metadata": {**owned("blocker", owner, True)["metadata"], "finalizers": ["example.org/hold"]}}
    k8s.core.create_namespaced_config_map(NS, blocker_body)
    k8s.core.delete_namespaced_config_map("fg", NS, propagation_policy="Foreground")
    time.sleep(1)
    held: Any = k8s.core.read_namespaced_config_map("fg", NS)
    assert held.metadata.deletion_timestamp is not None and "foregroundDeletion" in held.metadata.finalizers
    blocker: Any = k8s.core.read_namespaced_config_map("blocker", NS)
    assert blocker.metadata.deletion_timestamp is not None
    k8s.core.patch_namespaced_config_map("blocker", NS, {"metadata": {"finalizers": None}})
    wait_for(lambda: not names(k8s) & {"fg", "blocker"}, timeout=5, what="foreground deletion to finish")


def test_a_dependent_created_for_a_missing_owner_is_collected(k8s: Clients) -> None:
    ghost = kubernetes.client.V1ObjectMeta(name="ghost", uid="00000000-0000-0000-0000-000000000000")
    k8s.core.create_namespaced_config_map(NS, owned("stray", kubernetes.client.V1ConfigMap(metadata=ghost)))
    wait_for(lambda: "stray" not in names(k8s), timeout=5, what="the stray dependent to be collected")


def test_faults_and_accounting(k8s: Clients, devcluster: DevCluster) -> None:
    devcluster.faults.reset_counts()
    fault = devcluster.inject(verb="create", resource="configmaps", status=429, retry_after=2, times=1)
    with pytest.raises(ApiException) as throttled:
        k8s.core.create_namespaced_config_map(NS, configmap("t"))
    headers = throttled.value.headers
    assert throttled.value.status == 429 and headers is not None and headers["Retry-After"] == "2"
    k8s.core.create_namespaced_config_map(NS, configmap("t"))
    assert fault.hits == 1
    devcluster.inject(verb="get", resource="configmaps", name="t", status=500, times=None)
    with pytest.raises(ApiException) as broken:
        k8s.core.read_namespaced_config_map("t", NS)
    assert broken.value.status == 500
    devcluster.faults.clear()
    devcluster.inject(verb="list", resource="configmaps", status=0, delay=0.5)
    started = time.monotonic()
    k8s.core.list_namespaced_config_map(NS)
    assert time.monotonic() - started >= 0.5
    other = kubernetes.config.new_client_from_config(str(devcluster.write_kubeconfig(
        devcluster.state_dir / "tm.kubeconfig", user="taskmaster", groups=("system:masters",))))
    kubernetes.client.CoreV1Api(other).list_namespaced_config_map(NS)
    assert devcluster.faults.count(verb="create", resource="configmaps", client="admin") == 2
    assert devcluster.faults.count(verb="list", resource="configmaps", client="taskmaster") == 1
    assert devcluster.faults.counts(client="admin")[("list", "configmaps")] == 1
    unknown = httpx.get(f"{devcluster.url}/api/v1/namespaces", headers={"Authorization": "Bearer wrong"})
    assert unknown.status_code == 401


def test_job_delete_without_policy_orphans_its_pods(k8s: Clients) -> None:
    job: Any = {"metadata": {"name": "orph"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "nodeSelector": {"no": "node"}, "containers": [{"name": "c", "image": "busybox"}]}}}}
    k8s.batch.create_namespaced_job(NS, job)
    pod: Any = wait_for(lambda: k8s.core.list_namespaced_pod(NS, label_selector="job-name=orph").items, timeout=5,
                   what="the Job's pod")[0]
    assert pod.metadata.owner_references[0].controller and pod.metadata.labels["batch.kubernetes.io/job-name"] == "orph"
    k8s.batch.delete_namespaced_job("orph", NS)
    wait_for(lambda: not k8s.batch.list_namespaced_job(NS).items, timeout=5, what="the Job to go")
    survivor: Any = k8s.core.read_namespaced_pod(pod.metadata.name, NS)
    assert survivor.metadata.owner_references is None


def test_namespace_deletion_removes_its_contents(k8s: Clients) -> None:
    k8s.core.create_namespace(cast(Any, {"metadata": {"name": "scratch"}}))
    k8s.core.create_namespaced_config_map("scratch", configmap("inside"))
    k8s.core.delete_namespace("scratch")
    with pytest.raises(ApiException) as terminating:
        k8s.core.create_namespaced_config_map("scratch", configmap("late"))
    assert terminating.value.status in (403, 404)
    def namespaces() -> set[str]:
        found: list[Any] = k8s.core.list_namespace().items
        return {n.metadata.name for n in found}

    wait_for(lambda: "scratch" not in namespaces(), timeout=5, what="the namespace to go")
    assert k8s.core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=scratch").items == []
