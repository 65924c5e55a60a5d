"""Manifest builders: every object validates (strict) for an old and a new Kubernetes, plus our checks."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import kubernetes_validate
import pytest

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes import manifests
from tesk.backends.kubernetes.election import LeaseElector, lease_manifest
from tesk.config.kubernetes import KubernetesSettings
from tesk.models import Task
from tests.kubernetes.podsecurity import restricted_violations

VERSIONS = ("1.27.0", "1.37.0")
OWNER = manifests.Owner.of("task-0123456789abcdefghjkmnpqrs", "8c2b0d8e-7a0e-4c3b-9a57-0d1f3b2f6c11",
                           {lb.CREATOR_USER: "alice_example.org-1a2b3c4d5e", lb.ROLE: "taskmaster"})


def make_task(**extra: Any) -> Task:
    body: dict[str, Any] = {
        "name": "x" * 300,
        "inputs": [{"url": "http://example.org/in.txt", "path": "/data/in/in.txt"},
                   {"content": "hello", "path": "/data/in/sub/hello.txt"}],
        "outputs": [{"url": "s3://bucket/out/", "path": "/data/out", "type": "DIRECTORY"},
                    {"url": "s3://bucket/logs/", "path": "/logs/*.txt", "path_prefix": "/logs"}],
        "volumes": ["/scratch"],
        "resources": {"cpu_cores": 2, "ram_gb": 1.5, "disk_gb": 3, "zones": ["eu-west-1a"]},
        "executors": [
            {"image": "alpine", "command": ["sh", "-c", "echo $0 > /data/out/x", "it's"], "env": {"A": "1"},
             "workdir": "/data"},
            {"image": "ubuntu:22.04", "command": ["wc", "-l"], "stdin": "/data/in/in.txt",
             "stdout": "/data/out/count's.txt", "stderr": "/logs/err.txt"},
        ],
        **extra,
    }
    task = Task.model_validate(body)
    task.id = OWNER.name
    return task


def settings(**values: Any) -> KubernetesSettings:
    return KubernetesSettings(**values)


def all_manifests(s: KubernetesSettings, task: Task) -> list[dict[str, Any]]:
    return [
        manifests.taskmaster_job(s, task, "alice@example.org", "team:EBI"),
        manifests.spec_configmap(task, OWNER),
        manifests.data_pvc(s, task, OWNER),
        manifests.filer_job(s, task, "inputs", OWNER),
        manifests.filer_job(s, task, "outputs", OWNER),
        *(manifests.executor_job(s, task, i, OWNER) for i in range(len(task.executors))),
        manifests.result_configmap(task.id or "", OWNER, {"state": "RUNNING"}),
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", ["plain", "everything"])
def test_every_manifest_validates_strictly(version: str, variant: str) -> None:
    s = settings() if variant == "plain" else settings(
        TESK_API_TASKMASTER_DEBUG=True, TESK_API_TASKMASTER_FTP_SECRET_NAME="ftp",
        TESK_API_TASKMASTER_EXECUTOR_SECRET_NAME="exec-secret", storage_class="fast",
        filer_secret_name="s3-creds", image_pull_secrets="regcred",
        executor_run_as_user=1000, executor_run_as_group=1000, executor_run_as_non_root=True,
        TESK_API_TASKMASTER_ENVIRONMENT_={"TRANSFER_PVC_NAME": "transfer", "CONTAINER_BASE_PATH": "/transfer",
                                          "HOST_BASE_PATH": "/mnt/data", "EXECUTOR_BACKOFF_LIMIT": "1"})
    for obj in all_manifests(s, make_task()):
        kubernetes_validate.validate(obj, version, strict=True)
        assert lb.check_object_names(obj) == [], obj["kind"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_election_lease_validates(version: str) -> None:
    elector = LeaseElector(None, "tesk-controller", 15, lambda leading: None)  # type: ignore[arg-type]
    lease = lease_manifest({"name": "tesk-controller", "labels": {lb.MANAGED_BY: lb.MANAGER}},
                           {"holderIdentity": elector.identity, "leaseDurationSeconds": 15,
                            "renewTime": elector._now(), "acquireTime": elector._now(), "leaseTransitions": 0})
    kubernetes_validate.validate(lease, version, strict=True)
    assert lb.check_object_names(lease) == []


def test_every_object_and_pod_template_carries_the_task_labels() -> None:
    task = make_task()
    for obj in all_manifests(settings(), task):
        assert obj["metadata"]["labels"][lb.TASK_ID] == task.id
        assert obj["metadata"]["labels"][lb.MANAGED_BY] == "tesk"
        assert obj["metadata"]["labels"][lb.CREATOR_USER].startswith("alice_example.org-")
        if obj["kind"] == "Job":
            template = obj["spec"]["template"]["metadata"]["labels"]
            assert template[lb.TASK_ID] == task.id and template[lb.ROLE] == obj["metadata"]["labels"][lb.ROLE]
            assert template[lb.CREATOR_USER] == obj["metadata"]["labels"][lb.CREATOR_USER]
        if obj["metadata"]["labels"][lb.ROLE] != "taskmaster":
            assert obj["metadata"]["ownerReferences"] == [OWNER.reference()]


def test_taskmaster_job_follows_the_seed_variables() -> None:
    s = settings(TESK_API_TASKMASTER_IMAGE_NAME="reg.example/tesk", TESK_API_TASKMASTER_IMAGE_VERSION="9.9",
                 TESK_API_TASKMASTER_SERVICE_ACCOUNT_NAME="tm", TESK_API_TASKMASTER_DEBUG=True,
                 TESK_API_TASKMASTER_ENVIRONMENT_={"FILER_BACKOFF_LIMIT": "4"}, job_ttl_seconds=77)
    job = manifests.taskmaster_job(s, make_task(), "alice@example.org", None)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "reg.example/tesk:9.9" and container["imagePullPolicy"] == "Always"
    assert pod["serviceAccountName"] == "tm" and "--debug" in container["args"]
    assert env["FILER_BACKOFF_LIMIT"] == "4" and env["TESK_API_TASKMASTER_ENVIRONMENT_FILER_BACKOFF_LIMIT"] == "4"
    assert env["TESK_API_TASKMASTER_DEBUG"] == "true"
    assert job["spec"]["ttlSecondsAfterFinished"] == 77
    # The raw creator goes in an annotation, a label-safe form (hash-suffixed) in the label.
    assert job["metadata"]["annotations"][lb.ANNOTATION_USER] == "alice@example.org"
    assert job["metadata"]["labels"][lb.CREATOR_USER].startswith("alice_example.org-")
    assert "json-input" not in job["metadata"].get("annotations", {})


def test_spec_configmap_holds_the_task_and_the_filer_documents() -> None:
    task = make_task()
    cm = manifests.spec_configmap(task, OWNER)
    docs = {k: json.loads(gzip.decompress(base64.b64decode(v))) for k, v in cm["binaryData"].items()}
    assert docs["task.json.gz"]["id"] == task.id
    assert docs["task.json.gz"]["inputs"][1]["content"] == manifests.CONTENT_PLACEHOLDER  # inline content only in the filer document
    assert docs["inputs.json.gz"]["inputs"][1]["content"] == "hello"
    assert docs["inputs.json.gz"]["base"] == manifests.FILER_AREA
    assert docs["outputs.json.gz"]["direction"] == "outputs"


def test_a_task_too_large_for_a_configmap_is_refused_with_a_reason() -> None:
    import os

    task = make_task(inputs=[{"content": base64.b64encode(os.urandom(1_000_000)).decode(), "path": "/d/x"}])
    with pytest.raises(manifests.ManifestError, match="limit of a Kubernetes ConfigMap"):
        manifests.spec_configmap(task, OWNER)


def test_paths_map_by_identity_onto_one_volume() -> None:
    task = make_task()
    points = manifests.task_mount_points(task)
    assert points == ["/logs", "/scratch", "/data/in", "/data/out"]  # parents before anything nested
    nested = make_task(inputs=[{"content": "x", "path": "/data/in.txt"}],
                       outputs=[{"url": "s3://b/o", "path": "/data/out/deep/o.txt"}], volumes=None)
    assert manifests.task_mount_points(nested) == ["/data", "/data/out/deep"]  # the output folder exists
    job = manifests.executor_job(settings(), task, 0, OWNER)
    mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {m["mountPath"]: m["subPath"] for m in mounts} == {p: p[1:] for p in points}


@pytest.mark.parametrize("path", ["/usr/tool", "/etc/x.conf", "/top.txt"])
def test_paths_that_would_hide_the_image_are_refused(path: str) -> None:
    task = make_task(inputs=[{"content": "x", "path": path}])
    with pytest.raises(manifests.ManifestError, match="/data"):
        manifests.task_mount_points(task)


def test_executor_runs_its_command_without_a_shell_and_quotes_stdio_paths() -> None:
    task = make_task()
    first = manifests.executor_job(settings(), task, 0, OWNER)["spec"]["template"]["spec"]
    assert first["containers"][0]["command"] == ["sh", "-c", "echo $0 > /data/out/x", "it's"]
    assert first["automountServiceAccountToken"] is False and first["enableServiceLinks"] is False
    second = manifests.executor_job(settings(), task, 1, OWNER)["spec"]["template"]["spec"]["containers"][0]
    assert second["command"] == ["/bin/sh", "-c",
                                 "exec \"$@\" < /data/in/in.txt > '/data/out/count'\"'\"'s.txt' 2> /logs/err.txt",
                                 "sh", "wc", "-l"]
    assert second["resources"] == {"requests": {"cpu": "2", "memory": "1536Mi"},
                                   "limits": {"cpu": "2", "memory": "1536Mi"}}


def test_executor_and_filer_backoff_limits_come_from_the_seed_environment() -> None:
    s = settings(TESK_API_TASKMASTER_ENVIRONMENT_={"EXECUTOR_BACKOFF_LIMIT": "3", "FILER_BACKOFF_LIMIT": "5"})
    assert manifests.executor_job(s, make_task(), 0, OWNER)["spec"]["backoffLimit"] == 3
    assert manifests.filer_job(s, make_task(), "inputs", OWNER)["spec"]["backoffLimit"] == 5
    assert manifests.executor_job(settings(), make_task(), 0, OWNER)["spec"]["backoffLimit"] == 0
    with pytest.raises(ValueError, match="EXECUTOR_BACKOFF_LIMIT must be a whole number"):
        settings(TESK_API_TASKMASTER_ENVIRONMENT_={"EXECUTOR_BACKOFF_LIMIT": "two"}).backoff_limit("EXECUTOR")


def test_ftp_credentials_reach_filers_by_reference_only() -> None:
    s = settings(TESK_API_TASKMASTER_FTP_SECRET_NAME="ftp-secret")
    container = manifests.filer_job(s, make_task(), "inputs", OWNER)["spec"]["template"]["spec"]["containers"][0]
    ftp = [e for e in container["env"] if e["name"].startswith("TESK_FTP_")]
    assert ftp and all("value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == "ftp-secret" for e in ftp)
    tm = manifests.taskmaster_job(s, make_task(), "u", None)["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in tm["env"] if e["name"].startswith("TESK_FTP_")]


def test_a_task_without_files_needs_no_volume() -> None:
    task = Task.model_validate({"executors": [{"image": "alpine", "command": ["true"]}]})
    task.id = OWNER.name
    assert not manifests.needs_volume(task)
    pod = manifests.executor_job(settings(), task, 0, OWNER)["spec"]["template"]["spec"]
    assert pod["volumes"] == [] and "volumeMounts" not in pod["containers"][0]


@pytest.mark.parametrize("uid", [10001, None])
def test_taskmaster_and_filer_pods_pass_pod_security_restricted(uid: int | None) -> None:
    """With the image's ids, and with none where OpenShift's restricted-v2 assigns them."""
    s = settings(run_as_user=uid, fs_group=uid)
    task = make_task()
    pods = [manifests.taskmaster_job(s, task, "u", None), manifests.filer_job(s, task, "inputs", OWNER),
            manifests.filer_job(s, task, "outputs", OWNER)]
    for job in pods:
        pod = job["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], job["metadata"]["name"]
        context = pod["securityContext"]
        if uid is None:  # nothing fixed that the platform assigns
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context)
        else:
            assert (context["runAsUser"], context["runAsGroup"]) == (uid, uid)
    assert "fsGroup" not in pods[0]["spec"]["template"]["spec"]["securityContext"]  # no volume, no group
    filer = pods[1]["spec"]["template"]["spec"]["securityContext"]
    if uid is not None:  # a fresh block volume is root:root 0755: the kubelet hands it to this group
        assert filer["fsGroup"] == uid and filer["fsGroupChangePolicy"] == "OnRootMismatch"


def test_empty_ids_from_the_environment_mean_the_platform_assigns_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESK_K8S_RUN_AS_USER", "")
    monkeypatch.setenv("TESK_K8S_FS_GROUP", "")
    s = KubernetesSettings()
    assert (s.run_as_user, s.fs_group) == (None, None)
    env = s.taskmaster_env()  # and the taskmaster is told so, not left at the default
    assert env["TESK_K8S_RUN_AS_USER"] == "" and env["TESK_K8S_FS_GROUP"] == ""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert KubernetesSettings().run_as_user is None
    monkeypatch.setenv("TESK_K8S_RUN_AS_USER", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        KubernetesSettings()


def test_executors_keep_their_image_user_unless_the_operator_sets_one() -> None:
    task = make_task()
    pod = manifests.executor_job(settings(), task, 0, OWNER)["spec"]["template"]["spec"]
    assert "securityContext" not in pod and "securityContext" not in pod["containers"][0]
    s = settings(executor_run_as_user=1000, executor_run_as_group=1000, executor_run_as_non_root=True)
    context = manifests.executor_job(s, task, 0, OWNER)["spec"]["template"]["spec"]["securityContext"]
    # the filer's group by default: the executor can write where the filer wrote, and no recursive chown
    assert context == {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "fsGroup": 10001,
                       "fsGroupChangePolicy": "OnRootMismatch"}
    context = manifests.executor_job(settings(executor_fs_group=2000), task, 0, OWNER)["spec"]["template"]["spec"]
    assert context["securityContext"] == {"fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"}


def test_image_pull_secrets_reach_every_task_pod() -> None:
    s = settings(image_pull_secrets="regcred, other ,")
    task = make_task()
    jobs = [manifests.taskmaster_job(s, task, "u", None), manifests.filer_job(s, task, "inputs", OWNER),
            manifests.executor_job(s, task, 0, OWNER), manifests.filer_job(s, task, "outputs", OWNER)]
    for job in jobs:
        assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    assert "imagePullSecrets" not in manifests.executor_job(settings(), task, 0, OWNER)["spec"]["template"]["spec"]
    assert s.taskmaster_env()["TESK_K8S_IMAGE_PULL_SECRETS"] == "regcred, other ,"


def test_filers_keep_to_the_task_zones_like_executors() -> None:
    """The inputs filer is a WaitForFirstConsumer volume's first consumer: it decides the volume's zone."""
    task = make_task()
    expected = manifests.executor_job(settings(), task, 0, OWNER)["spec"]["template"]["spec"]["affinity"]
    assert expected["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["values"] == ["eu-west-1a"]
    for direction in ("inputs", "outputs"):
        assert manifests.filer_job(settings(), task, direction, OWNER)["spec"]["template"]["spec"][
            "affinity"] == expected


@pytest.mark.parametrize("zones", [["eu-west-1a"], None])
def test_pinning_a_step_to_the_volumes_node_keeps_its_zone_and_validates(zones: list[str] | None) -> None:
    task = make_task(resources={"zones": zones} if zones else None)
    job = manifests.pin_to_node(manifests.executor_job(settings(), task, 0, OWNER), "node-7")
    terms = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    pin = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-7"]}
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": zones}
    assert terms == [{"matchExpressions": [zone, pin] if zones else [pin]}]
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_time_limits_become_active_deadlines(version: str) -> None:
    task = make_task(resources={"backend_parameters": {"tesk.time_limit": "600"}})
    taskmaster = manifests.taskmaster_job(settings(), task, "u", None, default_time_limit=3600)
    assert taskmaster["spec"]["activeDeadlineSeconds"] == 600 + manifests.TASKMASTER_DEADLINE_GRACE
    args = taskmaster["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--default-time-limit") + 1] == "3600"
    executor = manifests.executor_job(settings(), task, 0, OWNER, time_limit=12.2)
    assert executor["spec"]["activeDeadlineSeconds"] == 13
    for obj in (taskmaster, executor):
        kubernetes_validate.validate(obj, version, strict=True)
    plain = manifests.taskmaster_job(settings(), make_task(), "u", None)
    assert "activeDeadlineSeconds" not in plain["spec"]
    assert "--default-time-limit" not in plain["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "activeDeadlineSeconds" not in manifests.executor_job(settings(), make_task(), 0, OWNER)["spec"]
    by_default = manifests.taskmaster_job(settings(), make_task(), "u", None, default_time_limit=3600)
    assert by_default["spec"]["activeDeadlineSeconds"] == 3600 + manifests.TASKMASTER_DEADLINE_GRACE
