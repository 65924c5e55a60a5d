"""The Pod Security Standards' checks, with the reasons and details kube-apiserver's PodSecurity
admission writes.

One implementation for the stand-in and for tesk's own tests of rendered manifests (tests/kubernetes),
so a pod spec that tesk renders is judged by the same rules wherever it is judged. Covered here: the
baseline checks non-default capabilities, host namespaces, hostPath volumes, hostPort and privileged, and the
restricted checks allowPrivilegeEscalation, capabilities, volume types, runAsNonRoot, runAsUser and
seccompProfile (texts from k8s.io/pod-security-admission/policy). Left out for now: the baseline checks
AppArmor, SELinux, procMount, sysctls and Windows host process, and the user-namespace relaxation. The
stand-in's API server applies them on pod create and update (devcluster.admission).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Pod = dict[str, Any]
Violation = tuple[str, str]

LEVELS = ("privileged", "baseline", "restricted")
ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")


def _containers(spec: Pod) -> Iterator[Pod]:
    """Init containers, then containers, then ephemeral containers: the order the checks name them in."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _own(container: Pod) -> Pod:
    return container.get("securityContext") or {}


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _containers_named(names: list[str]) -> str:
    return f"{'container' if len(names) == 1 else 'containers'} {_quoted(names)}"


def _host_namespaces(spec: Pod) -> Violation | None:
    used = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return ("host namespaces", ", ".join(used)) if used else None


BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
"""The capabilities baseline lets a container add (`capabilities_allowed_1_0`)."""


def _baseline_capabilities(spec: Pod) -> Violation | None:
    bad, extra = [], set()
    for c in _containers(spec):
        added = set((_own(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            bad.append(c["name"])
            extra |= added
    if not bad:
        return None
    return ("non-default capabilities",
            f"{_containers_named(bad)} must not include {_quoted(sorted(extra))} in securityContext.capabilities.add")


def _host_path_volumes(spec: Pod) -> Violation | None:
    names = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if not names:
        return None
    return "hostPath volumes", f"{'volume' if len(names) == 1 else 'volumes'} {_quoted(names)}"


def _host_ports(spec: Pod) -> Violation | None:
    bad, ports = [], set()
    for c in _containers(spec):
        used = {str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")}
        if used:
            bad.append(c["name"])
            ports |= used
    if not bad:
        return None
    return ("hostPort", f"{_containers_named(bad)} {'uses' if len(bad) == 1 else 'use'} "
                        f"{'hostPort' if len(ports) == 1 else 'hostPorts'} {', '.join(sorted(ports))}")


def _privileged(spec: Pod) -> Violation | None:
    bad = [c["name"] for c in _containers(spec) if _own(c).get("privileged") is True]
    return (
        ("privileged", f"{_containers_named(bad)} must not set securityContext.privileged=true")
        if bad
        else None
    )


def _allow_privilege_escalation(spec: Pod) -> Violation | None:
    bad = [c["name"] for c in _containers(spec) if _own(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return (
        "allowPrivilegeEscalation != false",
        f"{_containers_named(bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _capabilities(spec: Pod) -> Violation | None:
    missing_drop, adding, forbidden = [], [], set()
    for c in _containers(spec):
        caps = _own(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            missing_drop.append(c["name"])
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            adding.append(c["name"])
            forbidden |= extra
    details = []
    if missing_drop:
        details.append(
            f'{_containers_named(missing_drop)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_containers_named(adding)} must not include {_quoted(sorted(forbidden))} "
            "in securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _volume_types(spec: Pod) -> Violation | None:
    bad = {v["name"]: sorted(set(v) - {"name"} - ALLOWED_VOLUME_TYPES) for v in spec.get("volumes") or []}
    bad = {name: types for name, types in bad.items() if types}
    if not bad:
        return None
    types = sorted({t for ts in bad.values() for t in ts})
    if len(bad) == 1 and len(types) == 1:
        return (
            "restricted volume types",
            f"volume {_quoted(list(bad))} uses restricted volume type {_quoted(types)}",
        )
    return (
        "restricted volume types",
        f"volumes {_quoted(sorted(bad))} use restricted volume types {_quoted(types)}",
    )


def _pod_or_containers(
    spec: Pod, field: str, bad_value: Callable[[Any], bool]
) -> tuple[list[str], list[str], list[Any]]:
    """Who sets `field` to a bad value (the pod, containers), which containers leave it unset under a pod that
    sets no good value itself, and the bad values: the shape of the runAsNonRoot and seccompProfile checks."""
    pod_value = (spec.get("securityContext") or {}).get(field)
    setters, values = [], []
    if pod_value is not None and bad_value(pod_value):
        setters, values = ["pod"], [pod_value]
    pod_good = pod_value is not None and not bad_value(pod_value)
    explicit, implicit = [], []
    for c in _containers(spec):
        value = _own(c).get(field)
        if value is None:
            if not pod_good:
                implicit.append(c["name"])
        elif bad_value(value):
            explicit.append(c["name"])
            values.append(value)
    if explicit:
        setters.append(_containers_named(explicit))
    return setters, implicit, values


def _run_as_non_root(spec: Pod) -> Violation | None:
    setters, implicit, _ = _pod_or_containers(spec, "runAsNonRoot", lambda v: v is not True)
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit:
        return (
            "runAsNonRoot != true",
            f"pod or {_containers_named(implicit)} must set securityContext.runAsNonRoot=true",
        )
    return None


def _run_as_user(spec: Pod) -> Violation | None:
    setters = ["pod"] if (spec.get("securityContext") or {}).get("runAsUser") == 0 else []
    bad = [c["name"] for c in _containers(spec) if _own(c).get("runAsUser") == 0]
    if bad:
        setters.append(_containers_named(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_profile(spec: Pod) -> Violation | None:
    def bad(profile: Any) -> bool:
        return (profile or {}).get("type") not in ALLOWED_SECCOMP

    setters, implicit, profiles = _pod_or_containers(spec, "seccompProfile", bad)
    if setters:
        types = sorted({str((p or {}).get("type")) for p in profiles})
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_quoted(types)}",
        )
    if implicit:
        return (
            "seccompProfile",
            (
                f"pod or {_containers_named(implicit)} must set securityContext.seccompProfile.type "
                'to "RuntimeDefault" or "Localhost"'
            ),
        )
    return None


BASELINE_CHECKS = (_baseline_capabilities, _host_namespaces, _host_path_volumes, _host_ports, _privileged)
"""In the order of their check IDs (capabilities_baseline, hostNamespaces, hostPath, hostPorts, privileged)."""
RESTRICTED_CHECKS = (
    _allow_privilege_escalation,
    _capabilities,
    _volume_types,
    _run_as_non_root,
    _run_as_user,
    _seccomp_profile,
)


OVERRIDDEN = (_baseline_capabilities, _host_path_volumes)
"""Baseline checks a restricted one replaces (`OverrideCheckIDs`: capabilities_restricted overrides
capabilities_baseline, restrictedVolumes overrides hostPath)."""


def violations(spec: Pod, level: str) -> list[Violation]:
    """The (reason, detail) pairs a pod spec breaks at `level`, baseline checks first, in the order
    the admission lists them.

    Raises ValueError for a level that is not one of LEVELS (a namespace label with a typo is an
    error to show, not a level to guess)."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}: expected one of {', '.join(LEVELS)}")
    checks = {
        "privileged": (),
        "baseline": BASELINE_CHECKS,
        "restricted": tuple(c for c in BASELINE_CHECKS if c not in OVERRIDDEN) + RESTRICTED_CHECKS,
    }[level]
    return [found for check in checks if (found := check(spec)) is not None]


def refusal(level: str, version: str, found: list[Violation]) -> str:
    """Why the admission refuses a pod: `violates PodSecurity "restricted:latest": ...`."""
    listed = ", ".join(f"{reason} ({detail})" if detail else reason for reason, detail in found)
    return f'violates PodSecurity "{level}:{version}": {listed}'


def forbidden_message(pod_name: str, level: str, version: str, found: list[Violation]) -> str:
    """The refusal text of kube-apiserver:
    `pods "x" is forbidden: violates PodSecurity "restricted:latest": ...`."""
    return f'pods "{pod_name}" is forbidden: {refusal(level, version, found)}'
