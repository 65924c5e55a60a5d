"""deploy/: the kustomize trees render, and every rendered object passes strict validation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.settings import KubernetesSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TREES = ["kustomize/base", "kustomize/overlays/postgres"]
KUBECTL = shutil.which("kubectl")


def render(tree: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (.ci/setup.d/30-kubectl.sh installs it)")
    done = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / tree)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


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


def test_dockerfile_is_non_root_with_the_tesk_entrypoint() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in text and 'ENTRYPOINT ["tesk"]' in text
