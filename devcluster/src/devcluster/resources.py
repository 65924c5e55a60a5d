"""The resource types the stand-in serves, with the defaulting and validation the API server applies.

Validation matters because the stand-in must reject what a cluster rejects (names over 63 characters
on Jobs, bad label values, a Job without `restartPolicy`, changes to immutable fields): a test
double that accepts everything hides bugs in the manifests the backend builds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from devcluster.errors import invalid
from devcluster.quantity import Quantity
from devcluster.selectors import label_key_error, label_value_error


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: where it lives in the URL space and how it is listed in discovery."""

    plural: str
    kind: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    categories: tuple[str, ...] = ()
    singular: str = ""
    read_only: bool = False

    @property
    def api_version(self) -> str:
        """`apiVersion` of objects of this type (`v1` or `group/version`)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The `kind` of list responses."""
        return f"{self.kind}List"


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("namespaces", "Namespace", namespaced=False, short_names=("ns",), subresources=("status",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"), singular="namespace"),
    ResourceType("nodes", "Node", namespaced=False, short_names=("no",), subresources=("status", "proxy"),
                 verbs=("get", "list", "watch"), singular="node", read_only=True),
    ResourceType("pods", "Pod", short_names=("po",), subresources=("status", "log", "eviction"),
                 categories=("all",), singular="pod"),
    ResourceType("configmaps", "ConfigMap", short_names=("cm",), singular="configmap"),
    ResourceType("secrets", "Secret", singular="secret"),
    ResourceType("persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",),
                 subresources=("status",), singular="persistentvolumeclaim"),
    ResourceType("persistentvolumes", "PersistentVolume", namespaced=False, short_names=("pv",),
                 subresources=("status",), singular="persistentvolume"),
    ResourceType("events", "Event", short_names=("ev",), singular="event"),
    ResourceType("serviceaccounts", "ServiceAccount", short_names=("sa",), subresources=("token",),
                 singular="serviceaccount"),
    ResourceType("resourcequotas", "ResourceQuota", short_names=("quota",), subresources=("status",),
                 singular="resourcequota"),
    ResourceType("limitranges", "LimitRange", short_names=("limits",), singular="limitrange"),
    ResourceType("jobs", "Job", group="batch", subresources=("status",), categories=("all",), singular="job"),
    ResourceType("leases", "Lease", group="coordination.k8s.io", singular="lease"),
    ResourceType("storageclasses", "StorageClass", group="storage.k8s.io", namespaced=False, short_names=("sc",),
                 singular="storageclass"),
    ResourceType("roles", "Role", group="rbac.authorization.k8s.io", singular="role"),
    ResourceType("rolebindings", "RoleBinding", group="rbac.authorization.k8s.io", singular="rolebinding"),
    ResourceType("clusterroles", "ClusterRole", group="rbac.authorization.k8s.io", namespaced=False,
                 singular="clusterrole"),
    ResourceType("clusterrolebindings", "ClusterRoleBinding", group="rbac.authorization.k8s.io", namespaced=False,
                 singular="clusterrolebinding"),
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_PLURAL: dict[str, ResourceType] = {r.plural: r for r in RESOURCES}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_CONFIGMAP_BYTES = 1024 * 1024

Causes = list[tuple[str, str]]


def _check_name(rtype: ResourceType, name: str, causes: Causes) -> None:
    if rtype.group == "rbac.authorization.k8s.io":
        # RBAC names are path segments (`system:discovery`): ValidateRBACName is path.IsValidPathSegmentName
        if not name or name in (".", "..") or "/" in name or "%" in name:
            causes.append(("metadata.name", f"Invalid value: {name!r}: may not be '.' or '..' and may not contain "
                           "'/' or '%'"))
        return
    if rtype.plural in ("namespaces", "jobs"):
        # Namespace names are DNS labels; Job names end up in the pods' job-name label (<= 63).
        if len(name) > 63:
            causes.append(("metadata.name", f"Invalid value: {name!r}: must be no more than 63 characters"))
        if rtype.plural == "namespaces" and not _DNS_LABEL.match(name):
            causes.append(("metadata.name", (f"Invalid value: {name!r}: a lowercase RFC 1123 label must consist "
                                             "of lower case alphanumeric characters or '-'")))
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.append(("metadata.name", (f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist "
                                         "of lower case alphanumeric characters, '-' or '.', and must start and "
                                         "end with an alphanumeric character")))


def _check_labels(path: str, labels: Any, causes: Causes) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        causes.append((path, "Invalid value: must be a map of strings"))
        return
    for key, value in labels.items():
        error = label_key_error(str(key))
        if error:
            causes.append((path, f"Invalid value: {key!r}: {error}"))
        if not isinstance(value, str):
            causes.append((f"{path}.{key}", "Invalid value: must be a string"))
        else:
            error = label_value_error(value)
            if error:
                causes.append((path, f"Invalid value: {value!r}: {error}"))


def _check_metadata(rtype: ResourceType, metadata: dict[str, Any], causes: Causes) -> None:
    _check_labels("metadata.labels", metadata.get("labels"), causes)
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        causes.append(("metadata.annotations", "Invalid value: must be a map of strings"))
    elif sum(len(k) + len(v.encode()) for k, v in annotations.items()) > MAX_ANNOTATIONS_BYTES:
        causes.append(("metadata.annotations", "Too long: must have at most 262144 bytes"))
    for index, ref in enumerate(metadata.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                causes.append((f"metadata.ownerReferences[{index}].{key}", "Required value"))
    if sum(1 for ref in metadata.get("ownerReferences") or [] if ref.get("controller")) > 1:
        causes.append(("metadata.ownerReferences", "Invalid value: Only one reference can have Controller set to true"))


def _check_pod_spec(path: str, spec: Any, causes: Causes, *, in_job: bool) -> None:
    if not isinstance(spec, dict):
        causes.append((path, "Required value"))
        return
    containers = spec.get("containers") or []
    if not containers:
        causes.append((f"{path}.containers", "Required value"))
    names: set[str] = set()
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            where = f"{path}.{group}[{index}]"
            name = container.get("name")
            if not name or not _DNS_LABEL.match(name) or len(name) > 63:
                causes.append((f"{where}.name", f"Invalid value: {name!r}: must be a DNS-1123 label"))
            elif name in names:
                causes.append((f"{where}.name", f"Duplicate value: {name!r}"))
            names.add(name or "")
            if not container.get("image"):
                causes.append((f"{where}.image", "Required value"))
            for env_index, env in enumerate(container.get("env") or []):
                if not _ENV_NAME.match(env.get("name") or ""):
                    causes.append((f"{where}.env[{env_index}].name", (
                        f"Invalid value: {env.get('name')!r}: a valid environment variable name must consist of "
                        "alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")))
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volumes:
                    causes.append((f"{where}.volumeMounts[{mount_index}].name",
                                   f"Not found: {mount.get('name')!r}"))
                if not str(mount.get("mountPath", "")).startswith("/"):
                    causes.append((f"{where}.volumeMounts[{mount_index}].mountPath",
                                   "Invalid value: must be an absolute path"))
                sub_path = str(mount.get("subPath") or "")
                if sub_path.startswith("/") or ".." in sub_path.split("/"):
                    causes.append((f"{where}.volumeMounts[{mount_index}].subPath",
                                   f"Invalid value: {sub_path!r}: must be a relative path without '..'"))
    for index, volume in enumerate(spec.get("volumes") or []):
        sources = [volume.get(k) or {} for k in ("configMap", "secret", "downwardAPI")]
        sources += [next(iter(src.values()), {}) for src in (volume.get("projected") or {}).get("sources") or []]
        for source in sources:
            for item in source.get("items") or [] if isinstance(source, dict) else []:
                item_path = str(item.get("path", ""))
                if not item_path or item_path.startswith("/") or ".." in item_path.split("/"):
                    causes.append((f"{path}.volumes[{index}].items.path",
                                   f"Invalid value: {item_path!r}: must be a relative path without '..'"))
    _check_security_context(f"{path}.securityContext", spec.get("securityContext"), causes, pod=True)
    for group in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(group) or []):
            _check_security_context(f"{path}.{group}[{index}].securityContext", container.get("securityContext"),
                                    causes, pod=False)
    policy = spec.get("restartPolicy", "Always")
    allowed = ("OnFailure", "Never") if in_job else ("Always", "OnFailure", "Never")
    if policy not in allowed:
        causes.append((f"{path}.restartPolicy", f'Unsupported value: "{policy}": supported values: '
                       + ", ".join(f'"{p}"' for p in allowed)))


FS_GROUP_CHANGE_POLICIES = ("Always", "OnRootMismatch")
MAX_ID = 2147483647


def _check_security_context(path: str, context: Any, causes: Causes, *, pod: bool) -> None:
    """validatePodSpecSecurityContext / ValidateSecurityContext: ids in 0..2^31-1 (IsValidUserID,
    IsValidGroupID) and, on the pod, a known fsGroupChangePolicy."""
    if not isinstance(context, dict):
        return
    ids = [(key, context[key]) for key in ("runAsUser", "runAsGroup") + (("fsGroup",) if pod else ())
           if key in context]
    if pod:
        ids += [(f"supplementalGroups[{i}]", g) for i, g in enumerate(context.get("supplementalGroups") or [])]
    for key, value in ids:
        if not isinstance(value, int) or not 0 <= value <= MAX_ID:
            causes.append((f"{path}.{key}", f"Invalid value: {value!r}: must be between 0 and {MAX_ID}, inclusive"))
    policy = context.get("fsGroupChangePolicy") if pod else None
    if policy is not None and policy not in FS_GROUP_CHANGE_POLICIES:
        causes.append((f"{path}.fsGroupChangePolicy", f'Unsupported value: "{policy}": supported values: '
                       + ", ".join(f'"{p}"' for p in FS_GROUP_CHANGE_POLICIES)))


def _check_quantities(path: str, values: Any, causes: Causes) -> None:
    for key, value in (values or {}).items() if isinstance(values, dict) else []:
        try:
            Quantity.parse(value)
        except ValueError as exc:
            causes.append((f"{path}[{key}]", f"Invalid value: {value!r}: {exc}"))


def _check_rules(rules: Any, namespaced: bool, causes: Causes) -> None:
    """pkg/apis/rbac/validation ValidatePolicyRule: verbs always; non-resource URLs only cluster-wide and
    alone; resource rules name groups and resources."""
    for index, rule in enumerate(rules or []):
        where = f"rules[{index}]"
        if not rule.get("verbs"):
            causes.append((f"{where}.verbs", "Required value: verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                causes.append((f"{where}.nonResourceURLs",
                               f"Invalid value: {urls!r}: namespaced rules cannot apply to non-resource URLs"))
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append((f"{where}.nonResourceURLs", f"Invalid value: {urls!r}: rules cannot apply to both "
                               "regular resources and non-resource URLs"))
            continue
        if not rule.get("apiGroups"):
            causes.append((f"{where}.apiGroups", "Required value: resource rules must supply at least one api group"))
        if not rule.get("resources"):
            causes.append((f"{where}.resources", "Required value: resource rules must supply at least one resource"))


def _check_binding(obj: dict[str, Any], namespaced: bool, causes: Causes) -> None:
    """ValidateRoleBinding / ValidateClusterRoleBinding: a roleRef to a (Cluster)Role of the RBAC group; a
    cluster-wide binding's service-account subjects say their namespace."""
    ref = obj.get("roleRef") or {}
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        causes.append(("roleRef.apiGroup", f'Unsupported value: "{ref.get("apiGroup", "")}": supported values: '
                       '"rbac.authorization.k8s.io"'))
    if ref.get("kind") not in kinds:
        causes.append(("roleRef.kind", f'Unsupported value: "{ref.get("kind", "")}": supported values: '
                       + ", ".join(f'"{k}"' for k in kinds)))
    if not ref.get("name"):
        causes.append(("roleRef.name", "Required value"))
    for index, subject in enumerate(obj.get("subjects") or []):
        if not subject.get("name"):
            causes.append((f"subjects[{index}].name", "Required value"))
        if subject.get("kind") not in ("ServiceAccount", "User", "Group"):
            causes.append((f"subjects[{index}].kind", f'Unsupported value: "{subject.get("kind", "")}": supported '
                           'values: "ServiceAccount", "User", "Group"'))
        elif subject.get("kind") == "ServiceAccount" and not namespaced and not subject.get("namespace"):
            causes.append((f"subjects[{index}].namespace", "Required value"))


def validate(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """Raise a 422 `Invalid` error when `obj` would be rejected by the API server on create or update."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "")
    causes: Causes = []
    _check_name(rtype, name, causes)
    _check_metadata(rtype, metadata, causes)
    if rtype.plural == "pods":
        _check_pod_spec("spec", obj.get("spec"), causes, in_job=False)
    elif rtype.plural == "jobs":
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        _check_labels("spec.template.metadata.labels", (template.get("metadata") or {}).get("labels"), causes)
        _check_pod_spec("spec.template.spec", template.get("spec"), causes, in_job=True)
        for key in ("backoffLimit", "parallelism", "completions", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            value = spec.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                causes.append((f"spec.{key}", f"Invalid value: {value!r}: must be greater than or equal to 0"))
        if spec.get("activeDeadlineSeconds") == 0:
            causes.append(("spec.activeDeadlineSeconds", "Invalid value: 0: must be greater than 0"))
        if spec.get("podFailurePolicy") and (template.get("spec") or {}).get("restartPolicy") != "Never":
            causes.append(("spec.template.spec.restartPolicy",
                           "Invalid value: only \"Never\" is supported when podFailurePolicy is specified"))
        for index, rule in enumerate((spec.get("podFailurePolicy") or {}).get("rules") or []):
            if rule.get("action") not in ("FailJob", "Ignore", "Count", "FailIndex"):
                causes.append((f"spec.podFailurePolicy.rules[{index}].action",
                               f"Unsupported value: {rule.get('action')!r}"))
            if bool(rule.get("onExitCodes")) == bool(rule.get("onPodConditions")):
                causes.append((f"spec.podFailurePolicy.rules[{index}]",
                               "Invalid value: specify one of onExitCodes and onPodConditions, but not both"))
            for cond_index, condition in enumerate(rule.get("onPodConditions") or []):
                if "status" not in condition:
                    causes.append((f"spec.podFailurePolicy.rules[{index}].onPodConditions[{cond_index}].status",
                                   "Required value"))
    elif rtype.plural in ("configmaps", "secrets"):
        for part in ("data", "binaryData", "stringData"):
            for key in (obj.get(part) or {}):
                if not _CONFIG_KEY.match(key) or len(key) > 253:
                    causes.append((f"{part}[{key}]", (f"Invalid value: {key!r}: a valid config key must consist "
                                                      "of alphanumeric characters, '-', '_' or '.'")))
        size = len(json.dumps(obj.get("data") or {})) + len(json.dumps(obj.get("binaryData") or {}))
        if size > MAX_CONFIGMAP_BYTES:
            causes.append(("", f"Too long: must have at most {MAX_CONFIGMAP_BYTES} bytes"))
    elif rtype.plural == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        if not spec.get("accessModes"):
            causes.append(("spec.accessModes", "Required value: at least 1 access mode is required"))
        if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
            causes.append(("spec.resources[storage]", "Required value"))
    elif rtype.plural == "resourcequotas":
        _check_quantities("spec.hard", (obj.get("spec") or {}).get("hard"), causes)
    elif rtype.plural == "limitranges":
        for index, item in enumerate((obj.get("spec") or {}).get("limits") or []):
            where = f"spec.limits[{index}]"
            if item.get("type") not in ("Container", "Pod", "PersistentVolumeClaim"):
                causes.append((f"{where}.type", f"Unsupported value: {item.get('type')!r}: supported values: "
                                                '"Container", "Pod", "PersistentVolumeClaim"'))
            for part in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
                _check_quantities(f"{where}.{part}", item.get(part), causes)
    elif rtype.plural == "storageclasses":
        if not obj.get("provisioner"):
            causes.append(("provisioner", "Required value"))
        if obj.get("volumeBindingMode") not in ("Immediate", "WaitForFirstConsumer"):
            causes.append(("volumeBindingMode", (f"Unsupported value: {obj.get('volumeBindingMode')!r}: supported "
                                                 'values: "Immediate", "WaitForFirstConsumer"')))
    elif rtype.plural in ("roles", "clusterroles"):
        _check_rules(obj.get("rules"), rtype.namespaced, causes)
    elif rtype.plural in ("rolebindings", "clusterrolebindings"):
        _check_binding(obj, rtype.namespaced, causes)
    if causes:
        raise invalid(rtype.group, rtype.kind, name, causes)


def validate_update(rtype: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise 422 for changes the API server forbids on an existing object (immutable fields)."""
    name = old["metadata"]["name"]
    causes: Causes = []
    if rtype.plural == "jobs":
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        for key in ("selector", "completionMode", "podFailurePolicy"):
            if old_spec.get(key) != new_spec.get(key):
                causes.append((f"spec.{key}", "Invalid value: field is immutable"))
        if old_spec.get("template") != new_spec.get("template") and not old_spec.get("suspend"):
            causes.append(("spec.template", "Invalid value: field is immutable"))
    elif rtype.plural == "pods":
        old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
        for spec in (old_spec, new_spec):
            spec.pop("activeDeadlineSeconds", None)
            spec.pop("tolerations", None)
            spec["containers"] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get("containers") or []]
            spec["initContainers"] = [
                {k: v for k, v in c.items() if k != "image"} for c in spec.get("initContainers") or []
            ]
        if old_spec != new_spec:
            causes.append(("spec", ("Forbidden: pod updates may not change fields other than "
                                    "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                                    "`spec.activeDeadlineSeconds` or `spec.tolerations`")))
    elif rtype.plural == "persistentvolumeclaims":
        old_spec, new_spec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
        if not old_spec.get("volumeName"):
            new_spec.pop("volumeName", None)  # binding sets it once
        if {k: v for k, v in old_spec.items() if k != "resources"} != {
            k: v for k, v in new_spec.items() if k != "resources"
        }:
            causes.append(("spec", "Forbidden: spec is immutable after creation except resources.requests"))
    elif rtype.plural == "storageclasses":
        for key in ("provisioner", "parameters", "reclaimPolicy"):
            if old.get(key) != new.get(key):
                causes.append((key, f"Forbidden: updates to {key} are forbidden."))
        if old.get("volumeBindingMode") != new.get("volumeBindingMode"):
            causes.append(("volumeBindingMode", "Invalid value: field is immutable"))
    elif rtype.plural in ("rolebindings", "clusterrolebindings") and old.get("roleRef") != new.get("roleRef"):
        # the Invalid value is Go's rendering of the RoleRef struct; the stand-in shows the JSON instead
        causes.append(("roleRef", f"Invalid value: {json.dumps(new.get('roleRef'))}: cannot change roleRef"))
    elif rtype.plural in ("configmaps", "secrets") and old.get("immutable") and any(
            old.get(k) != new.get(k) for k in ("data", "binaryData", "immutable")):
        causes.append(("data", "Forbidden: field is immutable when `immutable` is set"))
    if causes:
        raise invalid(rtype.group, rtype.kind, name, causes)
