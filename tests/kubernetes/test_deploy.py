"""deploy/: the kustomize trees render, and every rendered object passes strict validation."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes import manifests
from tesk.config.kubernetes import KubernetesSettings
from tests.kubernetes.podsecurity import restricted_violations
from tests.kubernetes.test_manifests import OWNER, make_task

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TREES = ["kustomize/base", "kustomize/overlays/postgres", "kustomize/overlays/openshift",
         "kustomize/overlays/usage-sampling"]
KUBECTL = shutil.which("kubectl")


def render(tree: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (.ci/setup.d/30-kubectl.sh installs it)")
    return [doc for doc in yaml.safe_load_all(_rendered(tree)) if doc]


@functools.cache
def _rendered(tree: str) -> str:
    """One `kubectl kustomize` per tree for the whole module (each takes about a second)."""
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / tree)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("tree", TREES)
def test_rendered_objects_validate_strictly(tree: str) -> None:
    objects = render(tree)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= kinds
    for obj in objects:
        for version in ("1.27.0", "1.37.0"):
            kubernetes_validate.validate(obj, version, strict=True)
        assert lb.check_object_names(obj) == []


def test_postgres_overlay_uses_postgres_and_drops_the_sqlite_claim() -> None:
    objects = render("kustomize/overlays/postgres")
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    api = next(o for o in objects if o["kind"] == "Deployment")
    env = {e["name"]: e for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TESK_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tesk-postgres"
    assert api["spec"]["replicas"] == 2


def test_api_runs_as_non_root_with_its_own_account_and_the_taskmaster_account_exists() -> None:
    objects = render("kustomize/base")
    api = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert api["securityContext"]["runAsNonRoot"] is True and api["serviceAccountName"] == "tesk-api"
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    assert {"tesk-api", KubernetesSettings().service_account_name} <= accounts
    env = {e["name"]: e.get("value") for e in api["containers"][0]["env"]}
    assert env["TESK_API_TASKMASTER_SERVICE_ACCOUNT_NAME"] == KubernetesSettings().service_account_name
    roles = {o["metadata"]["name"]: o["rules"] for o in objects if o["kind"] == "Role"}
    for rules in roles.values():  # least verbs: nothing broader than the resources named
        assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _api_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}


@pytest.mark.parametrize("tree", TREES)
def test_tasks_run_in_their_own_namespace_and_every_reference_agrees(tree: str) -> None:
    """The API's store, PVC and Secrets are out of the taskmaster's reach: its Role lives in the tasks
    namespace, which holds nothing but tasks."""
    objects = render(tree)
    api = _one(objects, "Deployment")
    api_ns = api["metadata"]["namespace"]
    tasks_ns = _api_env(objects)["TESK_API_K8S_NAMESPACE"]
    assert api_ns != tasks_ns
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} == {api_ns, tasks_ns}
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    assert accounts == {(api_ns, "tesk-api"), (tasks_ns, KubernetesSettings().service_account_name)}
    for obj in objects:
        if obj["kind"] in ("Role", "RoleBinding"):
            assert obj["metadata"]["namespace"] == tasks_ns, obj["metadata"]["name"]
        elif obj["kind"] in ("PersistentVolumeClaim", "Secret", "ConfigMap", "Deployment", "StatefulSet", "Service"):
            assert obj["metadata"]["namespace"] == api_ns, (obj["kind"], obj["metadata"]["name"])
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        for subject in binding["subjects"]:  # an empty namespace means the binding's own
            assert (subject.get("namespace") or binding["metadata"]["namespace"], subject["name"]) in accounts
    assert {b["metadata"]["name"]: b["subjects"][0]["name"] for b in objects if b["kind"] == "RoleBinding"} == \
        {"tesk-api": "tesk-api", "tesk-taskmaster": KubernetesSettings().service_account_name}


def test_only_the_optional_usage_grant_reaches_beyond_the_tasks_namespace() -> None:
    """The base holds nothing cluster-scoped; components/usage-sampling adds exactly `get` on `nodes/proxy`
    (the kubelet Summary API through the node proxy) for the taskmaster account, and nothing else."""
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding"}
    assert not [o for o in render("kustomize/base") if o["kind"] in cluster_kinds]
    objects = render("kustomize/overlays/usage-sampling")
    role, binding = _one(objects, "ClusterRole"), _one(objects, "ClusterRoleBinding")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    tasks_ns = _api_env(objects)["TESK_API_K8S_NAMESPACE"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": KubernetesSettings().service_account_name,
                                    "namespace": tasks_ns}]
    base = {(o["kind"], o["metadata"]["name"]) for o in render("kustomize/base")}
    assert {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] not in cluster_kinds} == base


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present = expr["key"] in labels
        inside = present and labels[expr["key"]] in expr.get("values", [])
        if not {"In": inside, "NotIn": not inside, "Exists": present, "DoesNotExist": not present}[expr["operator"]]:
            return False
    return True


@pytest.mark.parametrize("tree", TREES)
def test_network_policies_keep_task_pods_away_from_the_api_and_its_database(tree: str) -> None:
    """Read the policies as a NetworkPolicy implementation would: which peers may reach which pods."""
    objects = render(tree)
    api_ns = _one(objects, "Deployment")["metadata"]["namespace"]
    tasks_ns = _api_env(objects)["TESK_API_K8S_NAMESPACE"]
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"] | {"kubernetes.io/metadata.name": n["metadata"]["name"]}
                  for n in objects if n["kind"] == "Namespace"} | {"ingress-nginx": {
                      "kubernetes.io/metadata.name": "ingress-nginx"}}
    api_pod = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    task = make_task()
    task_pods = [manifests.executor_job(KubernetesSettings(), task, 0, OWNER),
                 manifests.filer_job(KubernetesSettings(), task, "inputs", OWNER),
                 manifests.taskmaster_job(KubernetesSettings(), task, "u", None)]
    pods = {"api": (api_ns, api_pod), "ingress controller": ("ingress-nginx", {"app": "ingress"})}
    pods |= {f"task {j['metadata']['name']}": (tasks_ns, j["spec"]["template"]["metadata"]["labels"])
             for j in task_pods}
    if tree.endswith("postgres"):
        pods["postgres"] = (api_ns, _one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"])
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]

    def may_reach(source: str, target: str) -> bool:
        src_ns, src_labels = pods[source]
        dst_ns, dst_labels = pods[target]
        applying = [p for p in policies if p["metadata"]["namespace"] == dst_ns
                    and "Ingress" in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], dst_labels)]
        if not applying:
            return True
        for policy in applying:
            for rule in policy["spec"].get("ingress") or []:
                for peer in rule.get("from") or []:
                    ns_ok = _selects(peer["namespaceSelector"], namespaces[src_ns]) if "namespaceSelector" in peer \
                        else src_ns == dst_ns
                    pod_ok = _selects(peer.get("podSelector") or {}, src_labels)
                    if ns_ok and pod_ok:
                        return True
        return False

    for name in pods:
        if name.startswith("task "):
            assert not may_reach(name, "api"), name
            assert not may_reach("api", name) and not may_reach("ingress controller", name), name
            if "postgres" in pods:
                assert not may_reach(name, "postgres"), name
    assert may_reach("ingress controller", "api")
    if "postgres" in pods:
        assert may_reach("api", "postgres") and not may_reach("ingress controller", "postgres")


@pytest.mark.parametrize("tree", TREES)
def test_namespaces_carry_pod_security_labels_and_the_api_side_meets_restricted(tree: str) -> None:
    objects = render(tree)
    api_ns = _one(objects, "Deployment")["metadata"]["namespace"]
    tasks_ns = _api_env(objects)["TESK_API_K8S_NAMESPACE"]
    enforce = {n["metadata"]["name"]: n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
               for n in objects if n["kind"] == "Namespace"}
    # executors run users' images as their own user (root, mostly): baseline; everything else restricted
    assert enforce == {api_ns: "restricted", tasks_ns: "baseline"}
    for workload in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        assert restricted_violations(workload["spec"]["template"]["spec"]) == [], workload["metadata"]["name"]


def test_on_openshift_nothing_fixes_an_id_the_platform_assigns() -> None:
    objects = render("kustomize/overlays/openshift")
    context = _one(objects, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context) and context["runAsNonRoot"] is True
    env = _api_env(objects)
    assert env["TESK_K8S_RUN_AS_USER"] == "" and env["TESK_K8S_FS_GROUP"] == ""
    base = _api_env(render("kustomize/base"))
    assert "TESK_K8S_RUN_AS_USER" not in base


def test_each_role_may_create_what_it_makes_and_no_reference_blocks_owner_deletion() -> None:
    """Who creates what: the API the taskmaster Job and the spec ConfigMap, the taskmaster the PVC, filer
    and executor Jobs and the result ConfigMap. OwnerReferencesPermissionEnforcement (OpenShift) lets a
    create name owners without `delete` (gc_admission.go skips that check on create since Kubernetes 1.11),
    but `blockOwnerDeletion: true` would need update on jobs/finalizers, which no Role grants."""
    objects = render("kustomize/base")
    granted = {r["metadata"]["name"]: {(res, verb) for rule in r["rules"] for res in rule["resources"]
                                       for verb in rule["verbs"]} for r in objects if r["kind"] == "Role"}
    s, task = KubernetesSettings(), make_task()
    made = {"tesk-api": [manifests.taskmaster_job(s, task, "u", None), manifests.spec_configmap(task, OWNER)],
            "tesk-taskmaster": [manifests.data_pvc(s, task, OWNER), manifests.filer_job(s, task, "inputs", OWNER),
                                manifests.executor_job(s, task, 0, OWNER),
                                manifests.result_configmap(task.id or "", OWNER, {})]}
    plural = {"Job": "jobs", "ConfigMap": "configmaps", "PersistentVolumeClaim": "persistentvolumeclaims"}
    assert not any(resource.endswith("/finalizers") for pairs in granted.values() for resource, _ in pairs)
    for role, bodies in made.items():
        for body in bodies:
            assert (plural[body["kind"]], "create") in granted[role], (role, body["kind"])
            assert all(ref["blockOwnerDeletion"] is False for ref in body["metadata"].get("ownerReferences") or [])


def test_dockerfile_is_non_root_with_the_tesk_entrypoint() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and 'ENTRYPOINT ["tesk"]' in text


def test_the_real_cluster_runner_prepares_the_tasks_namespace_as_deploy_does() -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (.ci/setup.d/30-kubectl.sh installs it)")
    runner = DEPLOY.parent / "scripts" / "test-real-cluster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESK_TEST_")} | {"TESK_TEST_NAMESPACE": "e2e-x"}
    done = subprocess.run([sys.executable, str(runner), "--dry-run"], capture_output=True, text=True, timeout=60,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    deployed = {(o["kind"], o["metadata"]["name"]) for o in render("kustomize/base/tasks") if o["kind"] != "Namespace"}
    assert {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] != "Namespace"} == \
        deployed - {("RoleBinding", "tesk-api")}
    assert _one(objects, "Namespace")["metadata"]["name"] == "e2e-x"
    assert _one(objects, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert all(o["metadata"].get("namespace") == "e2e-x" for o in objects if o["kind"] != "Namespace")
    assert _one(objects, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "tesk-taskmaster", "namespace": "e2e-x"}]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.37.0", strict=True)
    missing = subprocess.run([sys.executable, str(runner)], capture_output=True, text=True, timeout=60,
                             env=env, check=False)
    assert missing.returncode != 0 and "set TESK_TEST_KUBECONFIG" in missing.stderr
