"""Every Kubernetes object a task needs, built as plain dicts by pure functions.

Plain dicts keep the code independent of any client's model classes and let the unit tests validate
each manifest with kubernetes-validate (strict) for old and new cluster versions. Nothing here talks to
a cluster. Choices that differ from TESK, and why:

* every child is owned by the taskmaster Job and every Job has `ttlSecondsAfterFinished` on the
  taskmaster, so deleting or expiring one Job removes the whole task (no leaked ConfigMaps or PVCs);
* the task body travels in a gzip ConfigMap, never in an annotation (256 KiB limit);
* executors run their command as given (no `/bin/sh` needed); a shell is used only when the task asks
  for stdin/stdout/stderr files, with every path quoted and the command passed as `"$@"`;
* user pods get no service-account token and no service links; a preempted or evicted executor fails
  its Job through `podFailurePolicy`, so the taskmaster can report PREEMPTED instead of re-running it;
* task paths map onto one PVC by *identity* (`/data/in` -> PVC folder `data/in`), the layout of the
  filer's `TaskArea` under its base folder, so filers and every executor see one tree.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import posixpath
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.labels import Role
from tesk.config.kubernetes import KubernetesSettings
from tesk.filer.area import TaskArea
from tesk.filer.errors import FilerError
from tesk.limits import TimeLimits
from tesk.models import Executor, FileType, Task, has_wildcards

Manifest = dict[str, Any]

SPEC_KEY = "task.json.gz"
INPUTS_KEY = "inputs.json.gz"
OUTPUTS_KEY = "outputs.json.gz"
SPEC_DIR = "/spec"
PODINFO_DIR = "/podinfo"
FILER_AREA = "/tesk/area"
"""Where filer pods mount the whole PVC: the filer's TaskArea base folder (`/x/y` is `<base>/x/y`)."""
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
"""Where a filer writes its report (`tesk filer --termination-log`): the pod status carries it."""
MAX_SPEC_BYTES = 900 * 1024
TASKMASTER_DEADLINE_GRACE = 60
"""Seconds the taskmaster Job's activeDeadlineSeconds gives beyond the task's time limit: the
taskmaster stops the task at the limit itself and needs a moment to publish why."""
CONTENT_PLACEHOLDER = "(staged by the inputs filer)"
"""Stands for inline `content` in the taskmaster's copy of the task (the filer document has the real one)."""
"""A ConfigMap holds at most 1 MiB; keep room for metadata."""

SHADOWING_MOUNTS = frozenset({"/", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr", "/etc", "/boot",
                              "/proc", "/sys", "/dev", "/run", "/var"})
"""Mounting the task volume here would hide the image's own files (task-execution-schemas#238)."""


class ManifestError(ValueError):
    """The task cannot be expressed as Kubernetes objects (too large, a path that would hide the image)."""


@dataclass(frozen=True)
class Owner:
    """The taskmaster Job every child object belongs to (deleting it removes them all); `labels` are
    the creator labels every child carries too, so one selector finds all of a user's objects."""

    name: str
    uid: str
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, uid: str, labels: dict[str, str] | None) -> Owner:
        """From the taskmaster Job's (or its pod's) labels, keeping only the creator ones."""
        keep = (lb.CREATOR_USER, lb.CREATOR_GROUP)
        return cls(name, uid, {k: v for k, v in (labels or {}).items() if k in keep})

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job", "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": False}


def _metadata(name: str, task_id: str, role: Role, owner: Owner | None = None, index: int | None = None,
              extra_labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    inherited = owner.labels if owner is not None else {}
    meta: dict[str, Any] = {"name": name,
                            "labels": lb.task_labels(task_id, role, index) | inherited | (extra_labels or {})}
    if annotations:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return meta


# -- paths --------------------------------------------------------------------------------------

def task_mount_points(task: Task) -> list[str]:
    """The folders of the task volume every pod mounts (parents first), as the filer's `TaskArea` lays
    them out, plus every output folder so it exists before an executor writes into it.

    The layout rules live in one place (`TaskArea.mounts`: file -> its folder, DIRECTORY -> itself,
    nested folders folded into their parent); it is asked on a scratch folder because it also creates
    the host folders, which here are the PVC's and appear on their own (kubelet creates subPaths).
    """
    with tempfile.TemporaryDirectory(prefix="tesk-layout-") as scratch:
        try:
            mounts = TaskArea(Path(scratch)).mounts(task.inputs or [], task.outputs or [], task.volumes or [])
        except FilerError as exc:
            raise ManifestError(str(exc)) from None
        points = []
        for mount in mounts:
            if mount.host_path.is_file():
                raise ManifestError(
                    f"{mount.container_path} sits directly under '/', so it would need a file mount that "
                    "Kubernetes can only make for files that already exist; put it in a folder such as /data"
                )
            points.append(mount.container_path)
    # Output folders inside a mount must exist before executors write there; mounting them too
    # (same PVC folder, so the tree stays one) makes the kubelet create them.
    for out in task.outputs or []:
        if has_wildcards(out.path):
            folder = out.path_prefix or posixpath.dirname(out.path)
        elif out.type is FileType.DIRECTORY:
            folder = out.path
        else:
            folder = posixpath.dirname(out.path)
        folder = folder.rstrip("/") or "/"
        if folder != "/" and folder not in points:
            points.append(folder)
    points.sort(key=lambda p: (p.count("/"), p))
    for path in points:
        if path in SHADOWING_MOUNTS or path.startswith(("/proc/", "/sys/", "/dev/")):
            raise ManifestError(
                f"the task's files would be mounted at {path}, which would hide the image's own {path}; "
                "put inputs, outputs and volumes under a folder of their own, such as /data"
            )
    return points


def area_mounts(points: list[str], volume: str = "data") -> list[dict[str, Any]]:
    """Executor mounts: container path `/x/y` is folder `x/y` of the PVC (the filer's base folder)."""
    return [{"name": volume, "mountPath": p, "subPath": p.lstrip("/")} for p in points]


def needs_volume(task: Task) -> bool:
    """TESK's rule: a PVC (and filer Jobs) only when the task has inputs, outputs or volumes."""
    return bool(task.inputs or task.outputs or task.volumes)


# -- resources ----------------------------------------------------------------------------------

def gib_quantity(gb: float) -> str:
    """TES sizes are GB; like TESK we read them as GiB, as a whole number of MiB (no float noise)."""
    return f"{max(1, math.ceil(gb * 1024))}Mi"


def _executor_resources(task: Task) -> dict[str, Any]:
    res = task.resources
    amounts: dict[str, str] = {}
    if res is not None and res.cpu_cores:
        amounts["cpu"] = str(res.cpu_cores)
    if res is not None and res.ram_gb:
        amounts["memory"] = gib_quantity(res.ram_gb)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _zone_affinity(task: Task) -> dict[str, Any] | None:
    zones = task.resources.zones if task.resources else None
    if not zones:
        return None
    term = {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(zones)}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


HOSTNAME_LABEL = "kubernetes.io/hostname"


def pin_to_node(job: Manifest, node: str) -> Manifest:
    """The Job with its pods required on `node` (R9): a ReadWriteOnce volume is attached to one node at a
    time, so a step placed on another node would wait on Multi-Attach until the disk is detached (seconds
    to minutes on clouds). Required node affinity, not `nodeName`, so the scheduler still checks taints and
    resources; the node term is added to every term the pod has, so zone constraints stay."""
    spec = job["spec"]["template"]["spec"]
    required = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {}).setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {"nodeSelectorTerms": [{}]})
    pin = {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
    for term in required["nodeSelectorTerms"]:
        term["matchExpressions"] = [*(term.get("matchExpressions") or []), pin]
    return job


# -- the spec ConfigMap and the taskmaster Job (built by the API) --------------------------------

def _gzip_json(document: str) -> bytes:
    return gzip.compress(document.encode(), mtime=0)


def spec_documents(task: Task) -> dict[str, bytes]:
    """The ConfigMap's files: the task for the taskmaster, one job document per filer direction.

    Inline input `content` (the bulk of a large task) is only in the inputs document: the taskmaster
    never needs it. The filer documents are `tesk filer` job files with the filer pods' base folder.
    """
    slim = task.model_copy(deep=True)
    for item in slim.inputs or []:
        if item.content is not None:
            item.content = CONTENT_PLACEHOLDER
    docs = {SPEC_KEY: _gzip_json(slim.model_dump_json(exclude_none=True))}
    if task.inputs:
        docs[INPUTS_KEY] = _gzip_json(json.dumps({
            "direction": "inputs", "base": FILER_AREA,
            "inputs": [i.model_dump(mode="json", exclude_none=True) for i in task.inputs]}))
    if task.outputs:
        docs[OUTPUTS_KEY] = _gzip_json(json.dumps({
            "direction": "outputs", "base": FILER_AREA,
            "outputs": [o.model_dump(mode="json", exclude_none=True) for o in task.outputs]}))
    size = sum(len(d) for d in docs.values())
    if size > MAX_SPEC_BYTES:
        raise ManifestError(
            f"the task is {size} bytes even compressed, over the {MAX_SPEC_BYTES}-byte limit of a "
            "Kubernetes ConfigMap; move large inline `content` to a URL"
        )
    return docs


def decode_spec(data: bytes) -> Task:
    return Task.model_validate_json(gzip.decompress(data))


def spec_configmap(task: Task, owner: Owner, documents: dict[str, bytes] | None = None) -> Manifest:
    """The task's spec ConfigMap (`documents`: from `spec_documents`, when already built)."""
    assert task.id is not None
    documents = documents if documents is not None else spec_documents(task)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(lb.child_name(task.id, Role.SPEC), task.id, Role.SPEC, owner),
        "immutable": True,
        "binaryData": {k: base64.b64encode(v).decode() for k, v in documents.items()},
    }


def check_task(task: Task) -> dict[str, bytes]:
    """Everything about a task Kubernetes would refuse later, checked before anything is created
    (so the client gets a 400 that says what to change); returns the spec documents."""
    if needs_volume(task):
        task_mount_points(task)
    return spec_documents(task)


def _security_context() -> dict[str, Any]:
    """Container part of Pod Security `restricted` for our own (tesk image) containers."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def tesk_pod_security(settings: KubernetesSettings, volume: bool) -> dict[str, Any]:
    """Pod part of Pod Security `restricted` for taskmaster and filer (`volume`) pods.

    `fsGroup` makes the kubelet hand the PVC to that group (setgid, group-writable): a fresh ext4/xfs
    block volume's root is `root:root 0755`, which uid 10001 could not write otherwise.
    `OnRootMismatch` skips the recursive walk when the root already fits (every pod after the first).
    Where the platform assigns ids (OpenShift restricted-v2), `run_as_user`/`fs_group` are unset and
    only `runAsNonRoot` stays: the image's numeric USER, or the assigned uid, satisfies it. The
    taskmaster mounts no volume, so it never asks for a group (an SCC may refuse one it did not pick).
    """
    context: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if settings.run_as_user is not None:
        context |= {"runAsUser": settings.run_as_user, "runAsGroup": settings.run_as_user}
    if volume and settings.fs_group is not None:
        context |= {"fsGroup": settings.fs_group, "fsGroupChangePolicy": "OnRootMismatch"}
    return context


def executor_pod_security(settings: KubernetesSettings) -> dict[str, Any] | None:
    """The operator's executor identity, or None: users' images expect to run as their own user
    (root, mostly), so by default executors get no securityContext (Pod Security `baseline`)."""
    context: dict[str, Any] = {}
    if settings.executor_run_as_user is not None:
        context["runAsUser"] = settings.executor_run_as_user
    if settings.executor_run_as_group is not None:
        context["runAsGroup"] = settings.executor_run_as_group
    fs_group = settings.executor_fs_group
    if fs_group is None and settings.executor_run_as_user is not None:
        fs_group = settings.fs_group  # the filer's group: its folders and files are the task's group's
    if fs_group is not None:
        context |= {"fsGroup": fs_group, "fsGroupChangePolicy": "OnRootMismatch"}
    if settings.executor_run_as_non_root:
        context["runAsNonRoot"] = True
    return context or None


def _pull_secrets(settings: KubernetesSettings) -> list[dict[str, str]]:
    return [{"name": name} for name in settings.pull_secrets()]


def taskmaster_job(settings: KubernetesSettings, task: Task, user: str, group: str | None,
                   default_time_limit: int | None = None) -> Manifest:
    """The taskmaster Job: runs `tesk taskmaster` (the image's entrypoint is `tesk`) with the spec
    ConfigMap and its own labels mounted. The taskmaster enforces the task's time limit
    (`default_time_limit`: the server's, for a task without its own); the Job's activeDeadlineSeconds,
    `TASKMASTER_DEADLINE_GRACE` later, ends the task should the taskmaster not."""
    assert task.id is not None
    task_id = lb.check_task_id(task.id)
    annotations = {lb.ANNOTATION_USER: user}
    if group:
        annotations[lb.ANNOTATION_GROUP] = group
    if task.name:
        annotations[lb.ANNOTATION_NAME] = task.name[:1024]
    creator = lb.creator_labels(user, group)
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *({"name": k, "value": v} for k, v in sorted(settings.taskmaster_env().items())),
        *({"name": k, "value": v} for k, v in sorted(settings.environment.items())),
    ]
    container: dict[str, Any] = {
        "name": "taskmaster",
        "image": settings.taskmaster_image,
        "args": ["taskmaster", "--task-id", task_id, "--spec", f"{SPEC_DIR}/{SPEC_KEY}",
                 "--labels-file", f"{PODINFO_DIR}/labels", *(["--debug"] if settings.debug else []),
                 *(["--default-time-limit", str(default_time_limit)] if default_time_limit is not None else [])],
        "env": env,
        "resources": {"requests": {"cpu": settings.taskmaster_cpu, "memory": settings.taskmaster_memory},
                      "limits": {"memory": settings.taskmaster_memory}},
        "securityContext": _security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
                         {"name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": True}],
    }
    if settings.debug:
        container["imagePullPolicy"] = "Always"
    spec: dict[str, Any] = {
        "backoffLimit": settings.taskmaster_backoff_limit,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "podFailurePolicy": {"rules": [
            # A drained node or a preempted taskmaster is not the task's fault: restart it (it resumes).
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {
            "metadata": {"labels": lb.task_labels(task_id, Role.TASKMASTER) | creator},
            "spec": {
                "serviceAccountName": settings.service_account_name,
                "restartPolicy": "Never",
                "enableServiceLinks": False,
                "securityContext": tesk_pod_security(settings, volume=False),
                **({"imagePullSecrets": _pull_secrets(settings)} if settings.pull_secrets() else {}),
                "containers": [container],
                "volumes": [
                    # The API creates the ConfigMap just after the Job (it needs the Job's uid as its
                    # owner). A required volume would hold the pod in ContainerCreating, retrying the
                    # mount with the kubelet's back-off (0.5 s, 1 s, ...), whenever the pod reaches its
                    # node first; optional, it mounts at once, and the taskmaster reads the spec through
                    # the API when the file is not there yet.
                    {"name": "spec", "configMap": {"name": lb.child_name(task_id, Role.SPEC), "optional": True}},
                    {"name": "podinfo", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
                ],
            },
        },
    }
    limit = TimeLimits.of(task, default_time_limit).task
    if limit is not None:
        spec["activeDeadlineSeconds"] = limit + TASKMASTER_DEADLINE_GRACE
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(task_id, task_id, Role.TASKMASTER, extra_labels=creator, annotations=annotations),
        "spec": spec,
    }


# -- children (built by the taskmaster) ----------------------------------------------------------

def data_pvc(settings: KubernetesSettings, task: Task, owner: Owner) -> Manifest:
    assert task.id is not None
    disk = task.resources.disk_gb if task.resources and task.resources.disk_gb else settings.default_disk_gb
    spec: dict[str, Any] = {"accessModes": [settings.access_mode],
                            "resources": {"requests": {"storage": gib_quantity(disk)}}}
    storage_class = settings.effective_storage_class()
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(lb.child_name(task.id, Role.DATA), task.id, Role.DATA, owner), "spec": spec}


def _child_job(name: str, task_id: str, role: Role, owner: Owner, pod_spec: dict[str, Any],
               backoff_limit: int, index: int | None = None) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, task_id, role, owner, index),
        "spec": {
            "backoffLimit": backoff_limit,
            "podFailurePolicy": {"rules": [
                # Evicted or preempted: fail at once and say so (PREEMPTED), never re-run silently.
                {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": lb.task_labels(task_id, role, index) | owner.labels},
                         "spec": pod_spec},
        },
    }


def _user_pod_spec(settings: KubernetesSettings, task: Task, containers: list[dict[str, Any]],
                   volumes: list[dict[str, Any]], security: dict[str, Any] | None) -> dict[str, Any]:
    """Pods that run user code or user data never get an API token or service links; filers and
    executors alike keep to the task's zones (the first of them to mount a WaitForFirstConsumer
    volume decides its zone)."""
    spec: dict[str, Any] = {"restartPolicy": "Never", "automountServiceAccountToken": False,
                            "enableServiceLinks": False}
    if security:
        spec["securityContext"] = security
    if settings.pull_secrets():
        spec["imagePullSecrets"] = _pull_secrets(settings)
    affinity = _zone_affinity(task)
    if affinity:
        spec["affinity"] = affinity
    return spec | {"containers": containers, "volumes": volumes}


def filer_job(settings: KubernetesSettings, task: Task, direction: Literal["inputs", "outputs"],
              owner: Owner) -> Manifest:
    """A filer Job: `tesk filer` moves the task's inputs into (or outputs out of) the task area."""
    assert task.id is not None
    role = Role.INPUTS if direction == "inputs" else Role.OUTPUTS
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(settings.environment.items())]
    if settings.ftp_secret_name:
        env += [{"name": f"TESK_FTP_{key.upper()}", "valueFrom": {"secretKeyRef": {
            "name": settings.ftp_secret_name, "key": key, "optional": True}}} for key in ("username", "password")]
    mounts: list[dict[str, Any]] = [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
                                    {"name": "data", "mountPath": FILER_AREA}]
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": lb.child_name(task.id, Role.SPEC)}},
        {"name": "data", "persistentVolumeClaim": {"claimName": lb.child_name(task.id, Role.DATA)}},
    ]
    transfer_pvc = settings.environment.get("TRANSFER_PVC_NAME")
    container_base = settings.environment.get("CONTAINER_BASE_PATH")
    if transfer_pvc and container_base:
        mounts.append({"name": "transfer", "mountPath": container_base})
        volumes.append({"name": "transfer", "persistentVolumeClaim": {"claimName": transfer_pvc}})
    container: dict[str, Any] = {
        "name": "filer",
        "image": settings.filer_image,
        "args": ["filer", f"{SPEC_DIR}/{INPUTS_KEY if direction == 'inputs' else OUTPUTS_KEY}",
                 "--termination-log", TERMINATION_MESSAGE_PATH],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "env": env,
        "resources": {"requests": {"cpu": settings.filer_cpu, "memory": settings.filer_memory},
                      "limits": {"memory": settings.filer_memory}},
        "securityContext": _security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    if settings.filer_secret_name:
        container["envFrom"] = [{"secretRef": {"name": settings.filer_secret_name, "optional": True}}]
    if settings.debug:
        container["imagePullPolicy"] = "Always"
    pod_spec = _user_pod_spec(settings, task, [container], volumes, tesk_pod_security(settings, volume=True))
    return _child_job(lb.child_name(task.id, role), task.id, role, owner, pod_spec, settings.backoff_limit("FILER"))


def executor_command(executor: Executor) -> list[str]:
    """The container command: the TES command itself, or a quoted shell line only for stdio files.

    The command goes to the shell as `"$@"` (never parsed), and each file name is `shlex.quote`d, so no
    argument or path can inject shell syntax (TESK's Python port joined arguments unquoted).
    """
    redirects = []
    for symbol, path in (("<", executor.stdin), (">", executor.stdout), ("2>", executor.stderr)):
        if path:
            redirects.append(f"{symbol} {shlex.quote(path)}")
    if not redirects:
        return list(executor.command)
    return ["/bin/sh", "-c", 'exec "$@" ' + " ".join(redirects), "sh", *executor.command]


def executor_job(settings: KubernetesSettings, task: Task, index: int, owner: Owner,
                 time_limit: float | None = None) -> Manifest:
    """Executor `index`'s Job; `time_limit` (seconds, rounded up) becomes its activeDeadlineSeconds."""
    assert task.id is not None
    executor = task.executors[index]
    container: dict[str, Any] = {
        "name": "executor",
        "image": executor.image,
        "command": executor_command(executor),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if executor.workdir:
        container["workingDir"] = executor.workdir
    if executor.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(executor.env.items())]
    resources = _executor_resources(task)
    if resources:
        container["resources"] = resources
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if needs_volume(task):
        mounts += area_mounts(task_mount_points(task))
        volumes.append({"name": "data",
                        "persistentVolumeClaim": {"claimName": lb.child_name(task.id, Role.DATA)}})
    if settings.executor_secret_name:
        mounts.append({"name": "executor-secret", "mountPath": settings.executor_secret_mount_path,
                       "readOnly": True})
        volumes.append({"name": "executor-secret", "secret": {"secretName": settings.executor_secret_name}})
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec = _user_pod_spec(settings, task, [container], volumes, executor_pod_security(settings))
    job = _child_job(lb.child_name(task.id, Role.EXECUTOR, index), task.id, Role.EXECUTOR, owner, pod_spec,
                     settings.backoff_limit("EXECUTOR"), index)
    if time_limit is not None:
        job["spec"]["activeDeadlineSeconds"] = max(1, math.ceil(time_limit))
    return job


def result_configmap(task_id: str, owner: Owner, data: dict[str, str]) -> Manifest:
    """Where the taskmaster publishes state, executor results and log tails (read by the controller)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(lb.child_name(task_id, Role.RESULT), task_id, Role.RESULT, owner),
            "data": data}
