"""Server-side defaulting applied on create, as the API server's defaulters and strategies do.

Why: code that reads back what it created sees defaulted fields on a cluster (a Job's generated
selector and controller-uid labels, a pod's `restartPolicy`), so the stand-in must fill them too.
"""

from __future__ import annotations

import base64
from typing import Any

CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def default_pod_spec(spec: dict[str, Any]) -> None:
    """Fill the pod spec fields the API server defaults."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    if spec.get("serviceAccountName") is None:
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("imagePullPolicy", _image_pull_policy(container.get("image", "")))
            container.setdefault("resources", {})
            resources = container["resources"]
            if resources.get("limits") and not resources.get("requests"):
                resources["requests"] = dict(resources["limits"])
            for env in container.get("env") or []:
                field_ref = (env.get("valueFrom") or {}).get("fieldRef")
                if field_ref is not None:
                    field_ref.setdefault("apiVersion", "v1")
    for volume in spec.get("volumes") or []:
        for kind in ("configMap", "secret", "downwardAPI"):
            if kind in volume:
                volume[kind].setdefault("defaultMode", 420)
        if "emptyDir" in volume and volume["emptyDir"] is None:
            volume["emptyDir"] = {}


def qos_class(spec: dict[str, Any]) -> str:
    """The pod's QoS class from its containers' requests and limits."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    requests = [c.get("resources", {}).get("requests") or {} for c in containers]
    limits = [c.get("resources", {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu") and lim.get("memory") and req.get("cpu", lim["cpu"]) == lim["cpu"]
        and req.get("memory", lim["memory"]) == lim["memory"]
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(pod: dict[str, Any]) -> None:
    """Defaults for a new pod: spec defaults plus the initial Pending status."""
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def default_job(job: dict[str, Any]) -> None:
    """Defaults for a new Job, including the generated selector and controller labels.

    As in `pkg/apis/batch/v1/defaults.go`, an unlabelled Job takes its template's labels, then the
    strategy adds `batch.kubernetes.io/controller-uid` and `job-name` to the template and selector.
    """
    metadata = job["metadata"]
    spec = job.setdefault("spec", {})
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    if not metadata.get("labels") and template_meta.get("labels"):
        metadata["labels"] = dict(template_meta["labels"])
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("manualSelector", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    if not spec.get("manualSelector"):
        uid = metadata["uid"]
        labels = template_meta.setdefault("labels", {})
        for key in CONTROLLER_UID_LABELS:
            labels[key] = uid
        for key in JOB_NAME_LABELS:
            labels[key] = metadata["name"]
        spec["selector"] = {"matchLabels": {CONTROLLER_UID_LABELS[0]: uid}}
    default_pod_spec(template.setdefault("spec", {}))
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for condition in rule.get("onPodConditions") or []:
            condition.setdefault("status", "True")
    job["status"] = {}


def default_pvc(pvc: dict[str, Any]) -> None:
    """Defaults for a new PersistentVolumeClaim (Pending until the binder binds it); the class comes from the
    DefaultStorageClass admission plugin (`Store.create`), not from defaulting."""
    spec = pvc.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    pvc["status"] = {"phase": "Pending"}
    finalizers = pvc["metadata"].setdefault("finalizers", [])
    if "kubernetes.io/pvc-protection" not in finalizers:
        finalizers.append("kubernetes.io/pvc-protection")


def default_storage_class(storage_class: dict[str, Any]) -> None:
    """Defaults for a new StorageClass."""
    storage_class.setdefault("reclaimPolicy", "Delete")
    storage_class.setdefault("volumeBindingMode", "Immediate")


def default_persistent_volume(volume: dict[str, Any]) -> None:
    """Defaults for a new PersistentVolume (Available until a claim is bound to it)."""
    volume.setdefault("spec", {}).setdefault("persistentVolumeReclaimPolicy", "Retain")
    volume["status"] = {"phase": "Available"}


def default_namespace(namespace: dict[str, Any]) -> None:
    """Defaults for a new Namespace."""
    namespace.setdefault("spec", {"finalizers": ["kubernetes"]})
    namespace["status"] = {"phase": "Active"}
    namespace["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = namespace["metadata"]["name"]


def default_secret(secret: dict[str, Any]) -> None:
    """`stringData` is write-only: it is merged into base64 `data` on write."""
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    secret.setdefault("type", "Opaque")


def default_resource_quota(quota: dict[str, Any]) -> None:
    """A new ResourceQuota has no status: the quota controller fills `hard` and `used`."""
    quota["status"] = {}


def default_limit_range(limit_range: dict[str, Any]) -> None:
    """`SetDefaults_LimitRangeItem` for Container items: `default` from `max`, then `defaultRequest` from
    `default`, then from `min`."""
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") != "Container":
            continue
        default = item.setdefault("default", {})
        request = item.setdefault("defaultRequest", {})
        for source, target in ((item.get("max") or {}, default), (default, request), (item.get("min") or {}, request)):
            for key, value in source.items():
                target.setdefault(key, value)


DEFAULTERS = {
    "pods": default_pod,
    "jobs": default_job,
    "persistentvolumeclaims": default_pvc,
    "storageclasses": default_storage_class,
    "persistentvolumes": default_persistent_volume,
    "namespaces": default_namespace,
    "secrets": default_secret,
    "resourcequotas": default_resource_quota,
    "limitranges": default_limit_range,
}
