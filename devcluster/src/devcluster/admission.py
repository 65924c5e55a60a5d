"""Admission of writes, as kube-apiserver's ServiceAccount, LimitRanger, PodSecurity and ResourceQuota plugins do.

Why: on a real cluster a pod create can be refused although the object is valid (a namespace's Pod Security
level, its ResourceQuota, its LimitRange), and a controller that creates the pod then only records a
`FailedCreate` Event. A stand-in that admits everything hides every path that depends on such a refusal.

A pod whose service account does not exist in its namespace is refused (the ServiceAccount plugin:
`error looking up service account NS/NAME: serviceaccount "NAME" not found`), so a pod created in a new
namespace before its `default` account exists fails as it does on a cluster.

The order is kube-apiserver's: mutating admission (LimitRanger's defaults, ServiceAccount) before validation, validating
admission (LimitRanger's min/max, PodSecurity, ResourceQuota last) after it. Each plugin has a switch
(`AdmissionConfig`) for tests that isolate something else. Refusals are 403 Forbidden with the plugins' texts
(k8s.io/pod-security-admission, plugin/pkg/admission/limitranger/admission.go,
staging/src/k8s.io/apiserver/pkg/admission/plugin/resourcequota/controller.go and the pod evaluator in
pkg/quota/v1/evaluator/core/pods.go), naming the pod by its generated name as the validating phase does.

Quotas count pods (pods, count/pods, cpu, memory, requests.cpu/memory, limits.cpu/memory), claims
(persistentvolumeclaims, requests.storage and both per storage class) and every served namespaced resource as
`count/<resource>[.<group>]` (configmaps, secrets, persistentvolumeclaims and resourcequotas also by their legacy
names). Left out: PodSecurity's `warn` and `audit` labels (warnings and audit annotations change no outcome, so
they are ignored) and exemptions; LimitRange on pod resources other than cpu and memory (the Pod type's
totals) and on claim updates; the quota scopes PriorityClass and CrossNamespacePodAffinity and scope selectors
(such a quota covers nothing), ephemeral storage, extended resources and updates (a claim's resize). Where Go
iterates a map (LimitRanger's several violations) the stand-in sorts by resource name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from devcluster import errors, podsecurity
from devcluster.defaults import qos_class
from devcluster.quantity import ONE, ZERO, Quantity, total
from devcluster.resources import BY_PLURAL, ResourceType
from devcluster.store import Store, parse_time

Obj = dict[str, Any]
Usage = dict[str, Quantity]

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
POD_QUOTA_RESOURCES = ("count/pods", "cpu", "limits.cpu", "limits.memory", "memory", "pods", "requests.cpu",
                       "requests.memory")
"""The quota resources the stand-in counts for pods (a subset of the pod evaluator's)."""
_EXPLICIT = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
"""Quota resources every container must state once a quota tracks them (the evaluator's `validationSet`)."""


@dataclass(frozen=True)
class AdmissionConfig:
    """Which admission plugins run (all, as on a cluster with the default plugin set)."""

    pod_security: bool = True
    resource_quota: bool = True
    limit_ranger: bool = True
    service_account: bool = True


class Admission:
    """The admission chain the store runs on create and update."""

    def __init__(self, store: Store, config: AdmissionConfig | None = None) -> None:
        self.store = store
        self.config = config or AdmissionConfig()

    def mutate(self, rtype: ResourceType, namespace: str, obj: Obj) -> None:
        """Mutating admission of a create (before validation): LimitRanger's defaults."""
        if rtype.plural == "pods" and self.config.limit_ranger:
            apply_limit_range_defaults(obj, self._limit_ranges(namespace))
        if rtype.plural == "pods" and self.config.service_account:
            self._service_account(namespace, obj)

    def validate(self, rtype: ResourceType, namespace: str, obj: Obj, old: Obj | None, dry_run: bool) -> None:
        """Validating admission of a create (`old` None) or main-resource update; raises the refusal."""
        if rtype.plural == "namespaces" and self.config.pod_security:
            check_namespace_labels(obj, old)
        if rtype.plural == "pods":
            if old is None and self.config.limit_ranger:
                refused = limit_range_violations(obj, self._limit_ranges(namespace))
                if refused:
                    raise errors.forbidden("", "pods", obj["metadata"]["name"], refused)
            if self.config.pod_security and (old is None or _significant_update(obj, old)):
                self._pod_security(namespace, obj)
        if rtype.plural == "persistentvolumeclaims" and old is None and self.config.limit_ranger:
            refused = claim_limit_violations(obj, self._limit_ranges(namespace))
            if refused:
                raise errors.forbidden("", rtype.plural, obj["metadata"]["name"], refused)
        if old is None and rtype.namespaced and self.config.resource_quota:
            self._charge_quotas(rtype, namespace, obj, dry_run)

    # -- ServiceAccount ---------------------------------------------------------------------------

    def _service_account(self, namespace: str, pod: Obj) -> None:
        spec = pod.get("spec") or {}
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if self.store.peek("serviceaccounts", namespace, account) is None:
            name = pod["metadata"].get("name") or pod["metadata"].get("generateName") or ""
            raise errors.forbidden("", "pods", name, f"error looking up service account {namespace}/{account}: "
                                   f'serviceaccount "{account}" not found')

    # -- PodSecurity ----------------------------------------------------------------------------

    def _pod_security(self, namespace: str, pod: Obj) -> None:
        ns = self.store.peek("namespaces", "", namespace) or {"metadata": {}}
        level, version = enforced_policy(ns["metadata"].get("labels") or {})
        found = podsecurity.violations(pod.get("spec") or {}, level)
        if found:
            raise errors.forbidden("", "pods", pod["metadata"]["name"], podsecurity.refusal(level, version, found))

    # -- LimitRanger ----------------------------------------------------------------------------

    def _limit_ranges(self, namespace: str) -> list[Obj]:
        return sorted(self.store.scan("limitranges", namespace), key=lambda r: r["metadata"]["name"])

    # -- ResourceQuota --------------------------------------------------------------------------

    def _charge_quotas(self, rtype: ResourceType, namespace: str, obj: Obj, dry_run: bool) -> None:
        """Check a new object against every quota of its namespace, then charge them all (none if one refuses)."""
        name = obj["metadata"]["name"]
        delta = object_usage(rtype.plural, obj)
        charged: list[tuple[Obj, Usage]] = []
        for quota in sorted(self.store.scan("resourcequotas", namespace), key=lambda q: q["metadata"]["name"]):
            status = quota.get("status") or {}
            hard = {k: Quantity.parse(v) for k, v in (status.get("hard") or {}).items()}
            tracked = sorted(k for k in hard if counted_by(k) == rtype.plural)
            if not tracked or not in_scope(quota, rtype.plural, obj):
                continue
            quota_name = quota["metadata"]["name"]
            missing = missing_explicit_resources(obj, set(tracked) & _EXPLICIT) if rtype.plural == "pods" else None
            if missing:
                raise errors.forbidden("", "pods", name, f"failed quota: {quota_name}: must specify {missing}")
            used = {k: Quantity.parse(v) for k, v in (status.get("used") or {}).items()}
            if any(k not in used for k in tracked):
                raise errors.forbidden(rtype.group, rtype.plural, name, f"status unknown for quota: {quota_name}, "
                                                                        f"resources: {','.join(tracked)}")
            requested = {k: v for k, v in delta.items() if k in hard}
            new = {k: used.get(k, ZERO) + v for k, v in requested.items()}
            exceeded = sorted(k for k, v in new.items() if v.value > hard[k].value)
            if exceeded:
                raise errors.forbidden(rtype.group, rtype.plural, name, (
                    f"exceeded quota: {quota_name}, requested: {_listed(requested, exceeded)}, "
                    f"used: {_listed(used, exceeded)}, limited: {_listed(hard, exceeded)}"))
            charged.append((quota, {**used, **new}))
        if dry_run:
            return
        for quota, used in charged:
            current = copy.deepcopy(quota)
            current["status"]["used"] = {k: v.text for k, v in sorted(used.items())}
            meta = quota["metadata"]
            self.store.update(BY_PLURAL["resourcequotas"], meta["namespace"], meta["name"], current, "status")


# -- PodSecurity ------------------------------------------------------------------------------------

def enforced_policy(labels: dict[str, str]) -> tuple[str, str]:
    """The namespace's enforced (level, version): no label is privileged; a label that does not parse is
    restricted (level) or latest (version), as `PolicyToEvaluate` falls back."""
    level = labels.get(ENFORCE_LABEL, "privileged")
    if level not in podsecurity.LEVELS:
        level = "restricted"
    version = labels.get(ENFORCE_VERSION_LABEL, "latest")
    return level, version if _version_error(version) is None else "latest"


def _version_error(version: str) -> str | None:
    if version == "latest" or (version.startswith("v1.") and version[3:].isdigit()):
        return None
    return 'must be "latest" or "v1.x"'


def check_namespace_labels(namespace: Obj, old: Obj | None) -> None:
    """PodSecurity refuses a namespace whose enforce labels do not parse (on update only when they change).

    The field paths and the level text are unconfirmed against kube-apiserver; the version text is
    `ParseVersion`'s."""
    labels = namespace["metadata"].get("labels") or {}
    old_labels = (old or {}).get("metadata", {}).get("labels") or {}
    causes = []
    for key in (ENFORCE_LABEL, ENFORCE_VERSION_LABEL):
        if key not in labels or (old is not None and labels.get(key) == old_labels.get(key)):
            continue
        value = labels[key]
        why = (_version_error(value) if key == ENFORCE_VERSION_LABEL else
               None if value in podsecurity.LEVELS else f"must be one of {', '.join(podsecurity.LEVELS)}")
        if why:
            causes.append((f"metadata.labels[{key}]", f'Invalid value: "{value}": {why}'))
    if causes:
        raise errors.invalid("", "Namespace", namespace["metadata"]["name"], causes)


def _significant_update(pod: Obj, old: Obj) -> bool:
    """PodSecurity looks again at a pod update only when a container image changed (`isSignificantPodUpdate`;
    the other fields such an update may touch cannot change a check's outcome)."""
    def images(obj: Obj) -> list[Any]:
        spec = obj.get("spec") or {}
        return [c.get("image") for key in ("initContainers", "containers") for c in spec.get(key) or []]

    return images(pod) != images(old)


# -- LimitRanger ------------------------------------------------------------------------------------

def _items(limit_ranges: list[Obj], kind: str) -> list[Obj]:
    return [item for r in limit_ranges for item in (r.get("spec") or {}).get("limits") or []
            if item.get("type") == kind]


def _quantities(values: dict[str, Any] | None) -> Usage:
    return {k: Quantity.parse(v) for k, v in (values or {}).items()}


def apply_limit_range_defaults(pod: Obj, limit_ranges: list[Obj]) -> None:
    """Give containers the Container defaults they lack (`default` as limits, `defaultRequest` as requests)
    and say so in the `kubernetes.io/limit-ranger` annotation, as `mergePodResourceRequirements` does."""
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for item in _items(limit_ranges, "Container"):
        limits.update(item.get("default") or {})
        requests.update(item.get("defaultRequest") or {})
    if not limits and not requests:
        return
    notes = []
    spec = pod.get("spec") or {}
    for key, kind in (("containers", "container"), ("initContainers", "init container")):
        for container in spec.get(key) or []:
            resources = container.setdefault("resources", {})
            for part, defaults, word in (("requests", requests, "request"), ("limits", limits, "limit")):
                own = resources.setdefault(part, {})
                added = sorted(k for k in defaults if k not in own)
                own.update({k: defaults[k] for k in added})
                if added:
                    notes.append(f"{', '.join(added)} {word} for {kind} {container['name']}")
    if notes:
        pod["metadata"].setdefault("annotations", {})[LIMIT_RANGER_ANNOTATION] = (
            "LimitRanger plugin set: " + "; ".join(notes))
        pod.setdefault("status", {})["qosClass"] = qos_class(spec)


def limit_range_violations(pod: Obj, limit_ranges: list[Obj]) -> str | None:
    """The Container and Pod min, max and maxLimitRequestRatio a pod breaks, as `PodValidateLimitFunc` words
    them; None when it breaks none."""
    found: list[str] = []
    spec = pod.get("spec") or {}
    for item in [i for r in limit_ranges for i in (r.get("spec") or {}).get("limits") or []]:
        if item.get("type") == "Container":
            for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                resources = container.get("resources") or {}
                found += _item_violations(item, "Container", _quantities(resources.get("requests")),
                                          _quantities(resources.get("limits")))
        elif item.get("type") == "Pod":
            found += _item_violations(item, "Pod", _pod_totals(spec, "requests"), _pod_totals(spec, "limits"))
    return _aggregate(found)


def claim_limit_violations(claim: Obj, limit_ranges: list[Obj]) -> str | None:
    """The PersistentVolumeClaim min and max a claim's storage request breaks (`PersistentVolumeClaimValidateLimitFunc`:
    only requests count, a max needs one)."""
    requests = _quantities(((claim.get("spec") or {}).get("resources") or {}).get("requests"))
    found: list[str] = []
    for item in _items(limit_ranges, "PersistentVolumeClaim"):
        for resource, value in sorted((item.get("min") or {}).items()):
            found += _below_min(resource, Quantity.parse(value), requests, {}, "PersistentVolumeClaim")
        for resource, value in sorted((item.get("max") or {}).items()):  # `maxRequestConstraint`
            enforced = Quantity.parse(value)
            start = f"maximum {resource} usage per PersistentVolumeClaim is {enforced}"
            if resource not in requests:
                found.append(f"{start}.  No request is specified")
            elif requests[resource].milli() > enforced.milli():
                found.append(f"{start}, but request is {requests[resource]}")
    return _aggregate(found)


def _aggregate(found: list[str]) -> str | None:
    """One text, or several in brackets as `utilerrors.NewAggregate` joins them (repeats dropped)."""
    unique = list(dict.fromkeys(found))
    if not unique:
        return None
    return unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]"


def _item_violations(item: Obj, kind: str, requests: Usage, limits: Usage) -> list[str]:
    found: list[str] = []
    for resource, value in sorted((item.get("min") or {}).items()):
        found += _below_min(resource, Quantity.parse(value), requests, limits, kind)
    for resource, value in sorted((item.get("max") or {}).items()):
        found += _above_max(resource, Quantity.parse(value), requests, limits, kind)
    for resource, value in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        found += _over_ratio(resource, Quantity.parse(value), requests, limits, kind)
    return found


def _below_min(resource: str, enforced: Quantity, requests: Usage, limits: Usage, kind: str) -> list[str]:
    """`minConstraint`."""
    start = f"minimum {resource} usage per {kind} is {enforced}"
    if resource not in requests:
        return [f"{start}.  No request is specified"]
    if requests[resource].milli() < enforced.milli():
        return [f"{start}, but request is {requests[resource]}"]
    if resource in limits and limits[resource].milli() < enforced.milli():
        return [f"{start}, but limit is {limits[resource]}"]
    return []


def _above_max(resource: str, enforced: Quantity, requests: Usage, limits: Usage, kind: str) -> list[str]:
    """`maxConstraint`."""
    start = f"maximum {resource} usage per {kind} is {enforced}"
    if resource not in limits:
        return [f"{start}.  No limit is specified"]
    if limits[resource].milli() > enforced.milli():
        return [f"{start}, but limit is {limits[resource]}"]
    if resource in requests and requests[resource].milli() > enforced.milli():
        return [f"{start}, but request is {requests[resource]}"]
    return []


def _over_ratio(resource: str, enforced: Quantity, requests: Usage, limits: Usage, kind: str) -> list[str]:
    """`limitRequestRatioConstraint` (the ratio printed as Go's %f)."""
    start = f"{resource} max limit to request ratio per {kind} is {enforced}"
    if resource not in requests or requests[resource].milli() == 0:
        return [f"{start}, but no request is specified or request is 0"]
    if resource not in limits or limits[resource].milli() == 0:
        return [f"{start}, but no limit is specified or limit is 0"]
    ratio = limits[resource].milli() / requests[resource].milli()
    if ratio * 1000 > enforced.milli():
        return [f"{start}, but provided ratio is {ratio:f}"]
    return []


# -- ResourceQuota ----------------------------------------------------------------------------------

def _listed(values: Usage, keys: list[str]) -> str:
    """`prettyPrint` of the masked list: `key=value` sorted by key, joined by commas."""
    return ",".join(f"{k}={values.get(k, ZERO)}" for k in keys)


def _container_usage(container: Obj) -> set[str]:
    """The quota resources one container states (`podComputeUsageHelper` of its own requests and limits)."""
    resources = container.get("resources") or {}
    stated = set()
    for key in resources.get("requests") or {}:
        if key in ("cpu", "memory"):
            stated |= {key, f"requests.{key}"}
    stated |= {f"limits.{key}" for key in resources.get("limits") or {} if key in ("cpu", "memory")}
    return stated


def missing_explicit_resources(pod: Obj, required: set[str]) -> str | None:
    """`must specify ...`'s list: each required resource some container does not state, with those
    containers (`limits.cpu for: a,b; requests.memory for: a`), or None."""
    missing: dict[str, list[str]] = {}
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for resource in sorted(required - _container_usage(container)):
            missing.setdefault(resource, []).append(container["name"])
    if not missing:
        return None
    return "; ".join(sorted(f"{resource} for: {','.join(sorted(set(names)))}" for resource, names in missing.items()))


def _pod_totals(spec: Obj, part: str) -> Usage:
    """`PodRequests`/`PodLimits` of cpu and memory: containers summed, then the largest init container if larger."""
    sums: dict[str, list[Quantity]] = {}
    for container in spec.get("containers") or []:
        for key, value in ((container.get("resources") or {}).get(part) or {}).items():
            if key in ("cpu", "memory"):
                sums.setdefault(key, []).append(Quantity.parse(value))
    result = {key: total(values) for key, values in sums.items()}
    for container in spec.get("initContainers") or []:
        for key, value in ((container.get("resources") or {}).get(part) or {}).items():
            quantity = Quantity.parse(value)
            if key in ("cpu", "memory") and (key not in result or quantity.value > result[key].value):
                result[key] = quantity
    return result


def counts_in_quota(pod: Obj, now: Any) -> bool:
    """`QuotaV1Pod`: a pod stops counting (but for count/pods) once it has ended or its deletion grace is over."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod["metadata"]
    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
        ends = parse_time(meta["deletionTimestamp"]) + timedelta(seconds=meta["deletionGracePeriodSeconds"])
        return bool(now <= ends)
    return True


def pod_usage(pod: Obj, now: Any = None) -> Usage:
    """What one pod counts against a quota (`PodUsageFunc`): count/pods always, the rest while it lives."""
    usage: Usage = {"count/pods": ONE}
    if now is not None and not counts_in_quota(pod, now):
        return usage
    spec = pod.get("spec") or {}
    usage["pods"] = ONE
    for key, value in _pod_totals(spec, "requests").items():
        usage[key] = value
        usage[f"requests.{key}"] = value
    for key, value in _pod_totals(spec, "limits").items():
        usage[f"limits.{key}"] = value
    return usage


_LEGACY_COUNTS = ("configmaps", "persistentvolumeclaims", "resourcequotas", "secrets")
"""Object counts quotas also take by their pre-`count/` names (the evaluators' legacy resource names)."""
_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


def counted_by(resource: str) -> str | None:
    """The resource (plural) whose objects a quota resource counts, or None for one the stand-in does not
    count (then it is neither enforced nor reported in `used`)."""
    if resource in POD_QUOTA_RESOURCES:
        return "pods"
    if resource == "requests.storage" or (_CLASS_SUFFIX in resource and resource.split("/", 1)[1] in (
            "requests.storage", "persistentvolumeclaims")):
        return "persistentvolumeclaims"
    if resource in _LEGACY_COUNTS:
        return resource
    if resource.startswith("count/"):
        plural, _, group = resource[len("count/"):].partition(".")
        rtype = BY_PLURAL.get(plural)
        if rtype is not None and rtype.namespaced and rtype.group == group:
            return plural
    return None


def object_usage(plural: str, obj: Obj, now: Any = None) -> Usage:
    """What one object counts against quotas: pods as `PodUsageFunc`, claims with their storage by class, every
    other object once under `count/<resource>[.<group>]` (and its legacy name)."""
    if plural == "pods":
        return pod_usage(obj, now)
    rtype = BY_PLURAL[plural]
    usage: Usage = {f"count/{plural}.{rtype.group}" if rtype.group else f"count/{plural}": ONE}
    if plural in _LEGACY_COUNTS:
        usage[plural] = ONE
    if plural == "persistentvolumeclaims":
        spec = obj.get("spec") or {}
        storage = Quantity.parse(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "0")
        usage["requests.storage"] = storage
        storage_class = spec.get("storageClassName")
        if storage_class:
            usage[f"{storage_class}{_CLASS_SUFFIX}requests.storage"] = storage
            usage[f"{storage_class}{_CLASS_SUFFIX}persistentvolumeclaims"] = ONE
    return usage


_SCOPES = {
    "BestEffort": lambda pod: qos_class(pod.get("spec") or {}) == "BestEffort",
    "NotBestEffort": lambda pod: qos_class(pod.get("spec") or {}) != "BestEffort",
    "Terminating": lambda pod: (pod.get("spec") or {}).get("activeDeadlineSeconds") is not None,
    "NotTerminating": lambda pod: (pod.get("spec") or {}).get("activeDeadlineSeconds") is None,
}


def in_scope(quota: Obj, plural: str, obj: Obj) -> bool:
    """Whether a quota with `spec.scopes` covers the object: only pods matching every scope (BestEffort,
    NotBestEffort, Terminating, NotTerminating); a scope the stand-in does not know (PriorityClass,
    CrossNamespacePodAffinity, scopeSelector) matches nothing, so such a quota refuses nothing."""
    spec = quota.get("spec") or {}
    scopes = list(spec.get("scopes") or [])
    scopes += [e.get("scopeName") for e in (spec.get("scopeSelector") or {}).get("matchExpressions") or []]
    if not scopes:
        return True
    return plural == "pods" and all(scope in _SCOPES and _SCOPES[scope](obj) for scope in scopes)


def quota_status(quota: Obj, store: Store, now: Any) -> Obj:
    """The status the quota controller keeps: `hard` from the spec, `used` of the resources it counts."""
    namespace = quota["metadata"]["namespace"]
    hard = dict((quota.get("spec") or {}).get("hard") or {})
    sums: dict[str, list[Quantity]] = {k: [] for k in hard if counted_by(k)}
    for plural in sorted({counted for k in sums if (counted := counted_by(k))}):
        for obj in store.scan(plural, namespace):
            if not in_scope(quota, plural, obj):
                continue
            for key, value in object_usage(plural, obj, now).items():
                if key in sums:
                    sums[key].append(value)
    return {"hard": hard, "used": {key: total(values).text for key, values in sorted(sums.items())}}
