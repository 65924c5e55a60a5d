"""Who owns a pod's volumes, with which mode: fresh claims of each class, emptyDir, the kubelet's fsGroup
walk under each fsGroupChangePolicy, subPath folders, symlinks. The stand-in runs as root here (CI does),
so the ownerships checked on the host are real ones, and the pods' own reads and writes show what a
non-root container may do."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster import DevCluster
from devcluster.pytest_plugin import wait_for

from .conftest import Clients

NS = "default"
pytestmark = [
    pytest.mark.devcluster,
    pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman (.ci/setup.d/10-podman.sh)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="real ownership needs the stand-in to run as root"),
]


def claim(k8s: Clients, name: str, storage_class: str = "standard", mode: str = "ReadWriteOnce") -> None:
    k8s.core.create_namespaced_persistent_volume_claim(NS, {"metadata": {"name": name}, "spec": {
        "storageClassName": storage_class, "accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}})


def run(k8s: Clients, name: str, script: str, volume: dict[str, Any], security: dict[str, Any] | None = None,
        sub_path: str | None = None) -> tuple[str, str]:
    """Run a busybox pod with `volume` at /data to its end; its phase and log."""
    mount: dict[str, Any] = {"name": "data", "mountPath": "/data"}
    if sub_path:
        mount["subPath"] = sub_path
    spec: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                            "volumes": [{"name": "data", **volume}],
                            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                                            "volumeMounts": [mount]}]}
    if security:
        spec["securityContext"] = security
    k8s.core.create_namespaced_pod(NS, {"metadata": {"name": name}, "spec": spec})

    def ended() -> str | None:
        phase = k8s.core.read_namespaced_pod(name, NS).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(ended, timeout=40, what=f"pod {name} to end")
    return phase, k8s.core.read_namespaced_pod_log(name, NS)


def pvc(name: str) -> dict[str, Any]:
    return {"persistentVolumeClaim": {"claimName": name}}


def owner(path: Path) -> tuple[int, int, int]:
    """uid, gid and permission bits (setgid included) of a path itself."""
    info = os.lstat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_a_fresh_claim_is_root_0755_on_block_storage_and_0777_on_local_path(k8s: Clients,
                                                                              devcluster: DevCluster) -> None:
    claim(k8s, "block")
    claim(k8s, "local", storage_class="local-path")
    # WaitForFirstConsumer: a claim's folder exists once its first pod is scheduled.
    assert run(k8s, "block-writer", "touch /data/x", pvc("block"), {"runAsUser": 1000})[0] == "Failed"
    block = devcluster.pvc_path(NS, "block")
    assert owner(block) == (0, 0, 0o755)
    assert os.listdir(block) == ["lost+found"] and owner(block / "lost+found") == (0, 0, 0o700)  # mkfs.ext4's
    assert run(k8s, "local-writer", "touch /data/x", pvc("local"), {"runAsUser": 1000})[0] == "Succeeded"
    assert owner(devcluster.pvc_path(NS, "local")) == (0, 0, 0o777)
    assert os.listdir(devcluster.pvc_path(NS, "local")) == ["x"]
    assert owner(devcluster.pvc_path(NS, "local") / "x")[0] == 1000


def test_an_empty_dir_is_0777_so_any_uid_writes_into_it(k8s: Clients) -> None:
    phase, log = run(k8s, "scratch", "stat -c '%u %g %a' /data && touch /data/x", {"emptyDir": {}}, {"runAsUser": 1000})
    assert (phase, log.split()) == ("Succeeded", ["0", "0", "777"])


def test_fs_group_walks_the_volume_unless_on_root_mismatch_finds_the_root_right(
        k8s: Clients, devcluster: DevCluster, tmp_path: Path) -> None:
    claim(k8s, "data")
    mismatch = {"runAsUser": 1000, "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"}
    # The root is root:root 0755: OnRootMismatch walks, so uid 1000 in group 2000 may write.
    assert run(k8s, "first", "mkdir /data/d && echo hi > /data/d/f", pvc("data"), mismatch)[0] == "Succeeded"
    folder = devcluster.pvc_path(NS, "data")
    assert owner(folder) == (0, 2000, 0o2775)
    assert owner(folder / "lost+found") == (0, 2000, 0o2770)
    assert owner(folder / "d") == (1000, 2000, 0o2755)  # made after the walk: the setgid folder's group
    # Between pods, another uid leaves a private file, and a symlink points out of the volume.
    stray = folder / "stray"
    stray.write_text("private")
    os.chown(stray, 3000, 3000)
    stray.chmod(0o600)
    outside = tmp_path / "outside"
    outside.write_text("host file")
    outside.chmod(0o600)
    (folder / "link").symlink_to(outside)

    assert run(k8s, "second", "true", pvc("data"), mismatch)[0] == "Succeeded"
    assert owner(stray) == (3000, 3000, 0o600)  # the root fitted: no walk
    assert owner(folder / "d" / "f") == (1000, 2000, 0o644)

    for policy in ({"fsGroupChangePolicy": "Always"}, {}):  # Always, and the default (no policy), walk
        stray.chmod(0o600)
        os.chown(stray, 3000, 3000)
        name = "always" if policy else "default"
        assert run(k8s, name, "true", pvc("data"), {"runAsUser": 1000, "fsGroup": 2000, **policy})[0] == "Succeeded"
        assert owner(stray) == (3000, 2000, 0o660), name
    assert owner(folder / "d") == (1000, 2000, 0o2775)
    assert owner(folder / "d" / "f") == (1000, 2000, 0o664)
    assert os.lstat(folder / "link").st_gid == 2000  # the link itself changes group (lchown)...
    assert owner(outside) == (0, 0, 0o600)  # ...never what it points to


def test_fs_group_is_left_alone_where_the_kubelet_does_not_apply_it(k8s: Clients, devcluster: DevCluster) -> None:
    group = {"runAsUser": 1000, "fsGroup": 2000}
    claim(k8s, "local", storage_class="local-path")  # a hostPath PV: no ownership management
    claim(k8s, "shared", mode="ReadWriteMany")  # CSI's default fsGroupPolicy needs ReadWriteOnce
    claim(k8s, "readonly")
    assert run(k8s, "local", "touch /data/x", pvc("local"), group)[0] == "Succeeded"
    assert owner(devcluster.pvc_path(NS, "local")) == (0, 0, 0o777)
    assert run(k8s, "shared", "touch /data/x", pvc("shared"), group)[0] == "Failed"
    assert owner(devcluster.pvc_path(NS, "shared")) == (0, 0, 0o755)
    read_only = {"persistentVolumeClaim": {"claimName": "readonly", "readOnly": True}}
    assert run(k8s, "readonly", "ls /data", read_only, group)[0] == "Succeeded"
    assert owner(devcluster.pvc_path(NS, "readonly")) == (0, 0, 0o755)
    phase, log = run(k8s, "scratch", "stat -c '%g %a' /data && touch /data/x", {"emptyDir": {}},
                     {"runAsUser": 1000, "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"})
    assert (phase, log.split()) == ("Succeeded", ["2000", "2777"])  # emptyDir walks whatever the policy


def test_sub_path_folders_take_the_volume_roots_mode(k8s: Clients, devcluster: DevCluster) -> None:
    claim(k8s, "data")
    claim(k8s, "local", storage_class="local-path")
    group = {"runAsUser": 1000, "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"}
    assert run(k8s, "grouped", "touch /data/x", pvc("data"), group, sub_path="a/b")[0] == "Succeeded"
    folder = devcluster.pvc_path(NS, "data")
    assert owner(folder / "a") == owner(folder / "a" / "b") == (0, 2000, 0o2775)
    assert owner(folder / "a" / "b" / "x")[:2] == (1000, 2000)
    assert run(k8s, "open", "touch /data/x", pvc("local"), {"runAsUser": 1000}, sub_path="c/d")[0] == "Succeeded"
    assert owner(devcluster.pvc_path(NS, "local") / "c" / "d") == (0, 0, 0o777)


def test_a_sub_path_through_a_file_is_refused_with_the_kubelets_text(k8s: Clients, devcluster: DevCluster) -> None:
    claim(k8s, "data")
    assert run(k8s, "first", "touch /data/file && mkdir /data/real && ln -s real /data/link", pvc("data"))[0] == \
        "Succeeded"
    # A symlink inside the volume is resolved as the kubelet resolves it: the folder is made in its target.
    assert run(k8s, "linked", "true", pvc("data"), sub_path="link/made")[0] == "Succeeded"
    folder = devcluster.pvc_path(NS, "data")
    assert (folder / "real" / "made").is_dir() and (folder / "link").is_symlink()
    k8s.core.create_namespaced_pod(NS, {"metadata": {"name": "blocked"}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
        "volumes": [{"name": "data", **pvc("data")}],
        "containers": [{"name": "main", "image": "busybox", "command": ["true"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "file/x"}]}]}})

    def refused() -> Any:
        statuses = k8s.core.read_namespaced_pod("blocked", NS).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    message = wait_for(refused, timeout=15, what="the refused subPath").message
    assert message == 'failed to create subPath directory for volumeMount "data" of container "main"'


def test_a_container_runs_as_its_images_user_unless_the_security_context_says_otherwise(k8s: Clients) -> None:
    assert run(k8s, "image", "id -u; id -g", {"emptyDir": {}})[1].split() == ["0", "0"]
    assert run(k8s, "group", "id -u; id -g", {"emptyDir": {}}, {"runAsGroup": 1234})[1].split() == ["0", "1234"]
    assert run(k8s, "both", "id -u; id -g", {"emptyDir": {}}, {"runAsUser": 1000, "runAsGroup": 1234})[1].split() == \
        ["1000", "1234"]


def test_api_data_volumes_and_read_only_claims_are_mounted_read_only_whatever_the_mount_says(
        k8s: Clients) -> None:
    k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    claim(k8s, "data")
    write = "touch /data/x 2>&1; cat /data/a 2>/dev/null; true"
    assert "Read-only file system" in run(k8s, "config", write, {"configMap": {"name": "settings"}})[1]
    assert "Read-only file system" in run(k8s, "claim", write, {"persistentVolumeClaim": {
        "claimName": "data", "readOnly": True}})[1]
    assert run(k8s, "writable", "touch /data/x && echo wrote", pvc("data"))[1] == "wrote\n"


def test_fs_group_lets_a_non_root_container_read_a_private_secret_file(k8s: Clients) -> None:
    k8s.core.create_namespaced_secret(NS, {"metadata": {"name": "key"}, "stringData": {"token": "s3cret"}})
    secret = {"secret": {"secretName": "key", "defaultMode": 0o400}}
    read = "cat /data/token 2>&1; echo; stat -L -c '%g %a' /data/token"
    assert run(k8s, "grouped", read, secret, {"runAsUser": 1000, "fsGroup": 2000})[1].split() == \
        ["s3cret", "2000", "440"]
    assert run(k8s, "alone", read, secret, {"runAsUser": 1000})[1].split()[-2:] == ["0", "400"]


def test_ids_and_the_fs_group_change_policy_are_validated_as_the_api_server_does(k8s: Clients) -> None:
    bad = {"runAsUser": -1, "fsGroup": 2147483648, "supplementalGroups": [5, -2], "fsGroupChangePolicy": "Sometimes"}
    with pytest.raises(ApiException) as refused:
        k8s.core.create_namespaced_pod(NS, {"metadata": {"name": "bad"}, "spec": {
            "securityContext": bad, "containers": [{"name": "main", "image": "busybox",
                                                    "securityContext": {"runAsGroup": -3}}]}})
    assert refused.value.status == 422
    causes = {c["field"]: c["message"] for c in json.loads(refused.value.body)["details"]["causes"]}
    assert causes == {
        "spec.securityContext.runAsUser": "Invalid value: -1: must be between 0 and 2147483647, inclusive",
        "spec.securityContext.fsGroup": "Invalid value: 2147483648: must be between 0 and 2147483647, inclusive",
        "spec.securityContext.supplementalGroups[1]": "Invalid value: -2: must be between 0 and 2147483647, inclusive",
        "spec.securityContext.fsGroupChangePolicy":
            'Unsupported value: "Sometimes": supported values: "Always", "OnRootMismatch"',
        "spec.containers[0].securityContext.runAsGroup":
            "Invalid value: -3: must be between 0 and 2147483647, inclusive",
    }


def test_a_non_root_container_writes_its_termination_message(k8s: Clients) -> None:
    """The kubelet makes the termination-log file 0666 whatever its umask (kuberuntime makeMounts), so any
    uid may write it (the conformance test "report termination message ... as non-root user")."""
    phase, _ = run(k8s, "message", "echo -n done-as-1000 > /dev/termination-log", {"emptyDir": {}},
                   {"runAsUser": 1000})
    assert phase == "Succeeded"
    status = k8s.core.read_namespaced_pod("message", NS).status.container_statuses[0]
    assert status.state.terminated.message == "done-as-1000"
