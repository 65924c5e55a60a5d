"""RBAC and OwnerReferencesPermissionEnforcement in the stand-in: who may do what, with kube-apiserver's 403s.

Every request here is plain HTTP with a bearer token, so the test sees exactly the status, reason and
message a client would. Service-account tokens come from the TokenRequest API (`kubectl create token`)
or from what the kubelet mounts into a pod.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster import DevCluster
from devcluster.cluster import fast_config
from devcluster.pytest_plugin import wait_for

pytestmark = pytest.mark.devcluster

NS = "team"
SA = f"system:serviceaccount:{NS}:robot"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


class Http:
    """Requests to the stand-in as one bearer token (or none)."""

    def __init__(self, cluster: DevCluster, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=cluster.url, headers=headers, timeout=30)

    def __call__(self, method: str, path: str, body: Any = None, **params: str) -> httpx.Response:
        content = json.dumps(body) if body is not None else None
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        return self.client.request(method, path, content=content, params=params,
                                   headers={"Content-Type": content_type})


@pytest.fixture
def admin(devcluster: DevCluster) -> Iterator[Http]:
    http = Http(devcluster, devcluster.admin_token)
    assert http("POST", "/api/v1/namespaces", {"metadata": {"name": NS}}).status_code == 201
    assert http("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "robot"}}).status_code == 201
    yield http
    http.client.close()


@pytest.fixture
def robot(devcluster: DevCluster, admin: Http) -> Iterator[Http]:
    """The `robot` service account of namespace `team`, through a TokenRequest as `kubectl create token` makes."""
    issued = admin("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/robot/token",
                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert issued.status_code == 201, issued.text
    assert issued.json()["kind"] == "TokenRequest" and issued.json()["status"]["expirationTimestamp"]
    http = Http(devcluster, issued.json()["status"]["token"])
    yield http
    http.client.close()


def refused(response: httpx.Response) -> str:
    """The message of a 403 Forbidden Status (and that it is one)."""
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Forbidden", 403)
    return str(body["message"])


def bind(admin: Http, name: str, rules: list[dict[str, Any]], *, subject: dict[str, Any] | None = None,
         cluster_role: bool = False, namespace: str = NS) -> None:
    """A Role (or ClusterRole) with `rules`, bound in `namespace` to the robot (or `subject`)."""
    kind = "ClusterRole" if cluster_role else "Role"
    where = f"{RBAC}/clusterroles" if cluster_role else f"{RBAC}/namespaces/{namespace}/roles"
    assert admin("POST", where, {"metadata": {"name": name}, "rules": rules}).status_code == 201
    binding = {"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                                                       "name": name},
               "subjects": [subject or {"kind": "ServiceAccount", "name": "robot", "namespace": NS}]}
    created = admin("POST", f"{RBAC}/namespaces/{namespace}/rolebindings", binding)
    assert created.status_code == 201, created.text


def configmap(name: str, **metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **metadata}, "data": {"k": "v"}}


def test_a_service_account_with_no_binding_is_refused_with_the_api_servers_texts(admin: Http, robot: Http) -> None:
    assert admin("POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("x")).status_code == 201
    user = f'User "{SA}"'
    assert refused(robot("GET", f"/api/v1/namespaces/{NS}/configmaps/x")) == (
        f'configmaps "x" is forbidden: {user} cannot get resource "configmaps" in API group "" in the namespace "{NS}"')
    assert refused(robot("GET", f"/api/v1/namespaces/{NS}/pods")) == (
        f'pods is forbidden: {user} cannot list resource "pods" in API group "" in the namespace "{NS}"')
    assert refused(robot("GET", f"/api/v1/namespaces/{NS}/pods", watch="true")) == (
        f'pods is forbidden: {user} cannot watch resource "pods" in API group "" in the namespace "{NS}"')
    assert refused(robot("GET", f"/api/v1/namespaces/{NS}/pods/p/log")) == (
        f'pods "p" is forbidden: {user} cannot get resource "pods/log" in API group "" in the namespace "{NS}"')
    assert refused(robot("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs")) == (
        f'jobs.batch is forbidden: {user} cannot deletecollection resource "jobs" in API group "batch" in the '
        f'namespace "{NS}"')
    assert refused(robot("PATCH", f"/apis/batch/v1/namespaces/{NS}/jobs/j/status", {})) == (
        f'jobs.batch "j" is forbidden: {user} cannot patch resource "jobs/status" in API group "batch" in the '
        f'namespace "{NS}"')
    assert refused(robot("GET", "/api/v1/nodes")) == (
        f'nodes is forbidden: {user} cannot list resource "nodes" in API group "" at the cluster scope')
    assert refused(robot("GET", f"/api/v1/namespaces/{NS}")) == (
        f'namespaces "{NS}" is forbidden: {user} cannot get resource "namespaces" in API group "" in the namespace '
        f'"{NS}"')
    body = robot("GET", f"/api/v1/namespaces/{NS}/configmaps/x").json()
    assert body["details"] == {"name": "x", "kind": "configmaps"}
    # discovery is the bootstrap system:discovery role's, for every authenticated user
    for path in ("/api", "/api/v1", "/apis", "/apis/batch/v1", "/version"):
        assert robot("GET", path).status_code == 200, path


def test_anonymous_requests_see_only_health_and_version(devcluster: DevCluster) -> None:
    anonymous = Http(devcluster, None)
    assert anonymous("GET", "/version").status_code == 200 and anonymous("GET", "/healthz").status_code == 200
    response = anonymous("GET", "/api")
    assert refused(response) == 'forbidden: User "system:anonymous" cannot get path "/api"'
    assert response.json()["details"] == {}
    assert refused(anonymous("GET", "/api/v1/namespaces/default/pods")) == (
        'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace '
        '"default"')


@pytest.mark.parametrize(("rule", "allowed", "denied"), [
    ({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
     [("GET", "configmaps/a")], [("GET", "configmaps"), ("DELETE", "configmaps/a"), ("GET", "secrets/a")]),
    ({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]},
     [("GET", "configmaps"), ("DELETE", "configmaps/a"), ("DELETE", "configmaps")], [("GET", "secrets")]),
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["list"]},
     [("GET", "configmaps"), ("GET", "secrets"), ("JOBS", "jobs")], [("GET", "configmaps/a")]),
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get", "list", "delete"]},
     [("GET", "configmaps/a"), ("DELETE", "configmaps/a"), ("NAMED", "configmaps?fieldSelector=metadata.name=a")],
     [("GET", "configmaps/b"), ("GET", "configmaps"), ("DELETE", "configmaps")]),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
     [("GET", "pods/p")], [("GET", "pods/p/log")]),
    ({"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]},
     [("GET", "pods/p/log")], [("GET", "pods/p")]),
    ({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},
     [], [("GET", "pods/p/log"), ("GET", "pods/p")]),
    ({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
     [("POST", "pods/p/eviction")], [("DELETE", "pods/p")]),
    ({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
     [("JOBS", "jobs/j")], [("GET", "configmaps/a")]),
])
def test_each_rule_shape_allows_what_kubernetes_allows(admin: Http, robot: Http, rule: dict[str, Any],
                                                       allowed: list[tuple[str, str]],
                                                       denied: list[tuple[str, str]]) -> None:
    """Allowed means "not 403" (the object may well be missing: authorisation comes first)."""
    bind(admin, "shape", [rule])

    def send(method: str, path: str) -> httpx.Response:
        if method == "JOBS":
            return robot("GET", f"/apis/batch/v1/namespaces/{NS}/{path}")
        if method == "NAMED":
            return robot("GET", f"/api/v1/namespaces/{NS}/configmaps", fieldSelector="metadata.name=a")
        return robot(method, f"/api/v1/namespaces/{NS}/{path}", {} if method == "POST" else None)

    for method, path in allowed:
        assert send(method, path).status_code != 403, (rule, method, path)
    for method, path in denied:
        assert send(method, path).status_code == 403, (rule, method, path)


def test_bindings_made_and_removed_through_the_api_take_effect_at_once(admin: Http, robot: Http) -> None:
    listing = f"/api/v1/namespaces/{NS}/configmaps"
    assert robot("GET", listing).status_code == 403
    bind(admin, "reader", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}])
    assert robot("GET", listing).status_code == 200
    assert admin("POST", "/api/v1/namespaces", {"metadata": {"name": "elsewhere"}}).status_code == 201
    assert robot("GET", "/api/v1/namespaces/elsewhere/configmaps").status_code == 403  # a RoleBinding is local
    assert admin("DELETE", f"{RBAC}/namespaces/{NS}/rolebindings/reader").status_code == 200
    assert robot("GET", listing).status_code == 403
    # a ClusterRole bound by a ClusterRoleBinding grants in every namespace and at the cluster scope
    admin("POST", f"{RBAC}/clusterroles", {"metadata": {"name": "lister"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps", "nodes"], "verbs": ["list"]}]})
    assert admin("POST", f"{RBAC}/clusterrolebindings", {
        "metadata": {"name": "lister"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                    "name": "lister"},
        "subjects": [{"kind": "Group", "name": f"system:serviceaccounts:{NS}"}]}).status_code == 201
    for path in (listing, "/api/v1/namespaces/elsewhere/configmaps", "/api/v1/nodes"):
        assert robot("GET", path).status_code == 200, path
    # the roles and bindings are ordinary resources: listed, watched from a version, refused when invalid
    roles = admin("GET", f"{RBAC}/clusterroles").json()
    assert {"cluster-admin", "system:discovery", "lister"} <= {r["metadata"]["name"] for r in roles["items"]}
    assert admin("GET", f"{RBAC}/clusterrolebindings", watch="true", timeoutSeconds="1",
                 resourceVersion=roles["metadata"]["resourceVersion"]).status_code == 200
    invalid = admin("POST", f"{RBAC}/namespaces/{NS}/roles", {"metadata": {"name": "bad"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"]}]})
    assert invalid.status_code == 422 and "verbs must contain at least one value" in invalid.json()["message"]
    moved = admin("PATCH", f"{RBAC}/clusterrolebindings/lister", {"roleRef": {"name": "cluster-admin"}})
    assert moved.status_code == 422 and "cannot change roleRef" in moved.json()["message"]


def test_a_binding_to_a_missing_role_grants_nothing_and_says_so(admin: Http, robot: Http) -> None:
    assert admin("POST", f"{RBAC}/namespaces/{NS}/rolebindings", {
        "metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                      "name": "gone"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}).status_code == 201  # namespace: the binding's
    assert refused(robot("GET", f"/api/v1/namespaces/{NS}/pods")) == (
        f'pods is forbidden: User "{SA}" cannot list resource "pods" in API group "" in the namespace "{NS}": '
        'RBAC: role.rbac.authorization.k8s.io "gone" not found')


def test_a_pods_mounted_token_authenticates_as_its_service_account(devcluster: DevCluster, admin: Http) -> None:
    pod = {"metadata": {"name": "holder"}, "spec": {"serviceAccountName": "robot", "restartPolicy": "Never",
                                                    "containers": [{"name": "c", "image": "busybox",
                                                                    "command": ["sleep", "30"]}]}}
    assert admin("POST", f"/api/v1/namespaces/{NS}/pods", pod).status_code == 201
    uid = admin("GET", f"/api/v1/namespaces/{NS}/pods/holder").json()["metadata"]["uid"]
    token_file = Path(devcluster.state_dir) / "pods" / uid / "serviceaccount" / "token"
    token = wait_for(lambda: token_file.exists() and token_file.read_text(), what="the kubelet to mount the token")
    mounted = Http(devcluster, str(token))
    assert SA in refused(mounted("GET", f"/api/v1/namespaces/{NS}/secrets"))
    bind(admin, "all-accounts", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
         subject={"kind": "Group", "name": "system:serviceaccounts"})
    assert mounted("GET", f"/api/v1/namespaces/{NS}/secrets").status_code == 200
    admin("DELETE", f"/api/v1/namespaces/{NS}/pods/holder", gracePeriodSeconds="0")
    wait_for(lambda: mounted("GET", "/version").status_code == 401, what="the token to die with its pod")


OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "00000000-0000-0000-0000-000000000001"}


def test_changing_owner_references_needs_delete_on_the_object(admin: Http, robot: Http) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    made = admin("POST", path, configmap("owner")).json()  # a live owner, or the garbage collector takes its children
    owner = dict(OWNER, uid=made["metadata"]["uid"])
    bind(admin, "writer", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update", "patch"]}])
    # Since Kubernetes 1.11 the creator may name owners without delete: it could have not created the object
    assert robot("POST", path, configmap("born-owned", ownerReferences=[owner])).status_code == 201
    assert robot("POST", path, configmap("plain")).status_code == 201
    added = robot("PATCH", f"{path}/plain", {"metadata": {"ownerReferences": [owner]}})
    assert refused(added) == ('configmaps "plain" is forbidden: cannot set an ownerRef on a resource you can\'t '
                              'delete: , <nil>')
    current = admin("GET", f"{path}/born-owned").json()
    current["metadata"]["ownerReferences"] = []
    assert "cannot set an ownerRef" in refused(robot("PUT", f"{path}/born-owned", current))
    assert robot("PATCH", f"{path}/plain", {"metadata": {"labels": {"a": "b"}}}).status_code == 200  # refs unchanged
    bind(admin, "deleter", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]}])
    assert robot("PATCH", f"{path}/plain", {"metadata": {"ownerReferences": [owner]}}).status_code == 200


def test_block_owner_deletion_needs_update_on_the_owners_finalizers(admin: Http, robot: Http) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    bind(admin, "writer", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete"]}])
    job_owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "boss", "uid": "u1", "blockOwnerDeletion": True}
    blocked = robot("POST", path, configmap("blocking", ownerReferences=[job_owner]))
    assert refused(blocked) == ('configmaps "blocking" is forbidden: cannot set blockOwnerDeletion if an '
                                'ownerReference refers to a resource you can\'t set finalizers on: , <nil>')
    named_later = robot("POST", path, configmap("", generateName="gen-", ownerReferences=[job_owner]))
    assert refused(named_later).startswith('configmaps "gen-" is forbidden: cannot set blockOwnerDeletion')
    unknown = robot("POST", path, configmap("odd", ownerReferences=[
        {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "u2", "blockOwnerDeletion": True}]))
    assert refused(unknown) == (
        'configmaps "odd" is forbidden: cannot set blockOwnerDeletion in this case because cannot find RESTMapping '
        'for APIVersion example.com/v1 Kind Widget: no matches for kind "Widget" in version "example.com/v1"')
    not_blocking = dict(job_owner, blockOwnerDeletion=False)
    assert robot("POST", path, configmap("not-blocking", ownerReferences=[not_blocking])).status_code == 201
    bind(admin, "finalizer", [{"apiGroups": ["batch"], "resources": ["jobs/finalizers"], "verbs": ["update"],
                               "resourceNames": ["boss"]}])
    assert robot("POST", path, configmap("blocking", ownerReferences=[job_owner])).status_code == 201


def test_the_switches_turn_rbac_and_owner_reference_enforcement_off(tmp_path: Path) -> None:
    with DevCluster(fast_config(state_dir=tmp_path / "open", rbac=False,
                                owner_references_permission_enforcement=False)) as open_cluster:
        anyone = Http(open_cluster, open_cluster.add_user("nobody"))
        owner = {**OWNER, "kind": "Job", "apiVersion": "batch/v1", "blockOwnerDeletion": True}
        made = anyone("POST", "/api/v1/namespaces/default/configmaps", configmap("free", ownerReferences=[owner]))
        assert made.status_code == 201, made.text
        assert Http(open_cluster, None)("GET", "/api/v1/nodes").status_code == 200


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (.ci/setup.d/30-kubectl.sh)")
def test_kubectl_create_token_gives_a_token_of_the_account(devcluster: DevCluster, admin: Http,
                                                           tmp_path: Path) -> None:
    """`kubectl create token` posts a protobuf TokenRequest (over HTTPS: kubectl sends no token over HTTP)."""
    config = devcluster.write_kubeconfig(tmp_path / "kubectl.kubeconfig", https=True)
    done = subprocess.run(["kubectl", "--kubeconfig", str(config), "create", "token", "robot", "-n", NS,
                           "--duration", "20m"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert SA in refused(Http(devcluster, done.stdout.strip())("GET", f"/api/v1/namespaces/{NS}/pods"))


def test_the_node_proxy_needs_get_on_nodes_proxy_at_the_cluster_scope(admin: Http, robot: Http) -> None:
    """The Summary API through the API server: a namespaced grant is not enough, a ClusterRole's is."""
    path = "/api/v1/nodes/devcluster-1/proxy/stats/summary"
    assert refused(robot("GET", path)) == (
        f'nodes "devcluster-1" is forbidden: User "{SA}" cannot get resource "nodes/proxy" in API group "" at the '
        'cluster scope')
    bind(admin, "nodes-in-ns", [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}],
         cluster_role=True)  # bound by a RoleBinding: nodes are in no namespace, so it grants nothing here
    assert robot("GET", path).status_code == 403
    bind(admin, "nodes-get", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}], cluster_role=True)
    assert robot("GET", path).status_code == 403  # `nodes` is not `nodes/proxy`
    role = {"metadata": {"name": "node-stats"},
            "rules": [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]}
    assert admin("POST", f"{RBAC}/clusterroles", role).status_code == 201
    binding = {"metadata": {"name": "node-stats"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-stats"},
               "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}]}
    assert admin("POST", f"{RBAC}/clusterrolebindings", binding).status_code == 201
    allowed = robot("GET", path)
    assert allowed.status_code == 200 and allowed.json()["node"]["nodeName"] == "devcluster-1"
