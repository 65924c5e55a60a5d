"""What Pod Security `restricted` would refuse in a pod spec: the rules of the Pod Security Standards
(v1.27+) that tesk's own pods must meet, for unit tests of rendered manifests and deploy/."""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUMES = frozenset({"configMap", "downwardAPI", "persistentVolumeClaim", "secret", "emptyDir",
                                "projected", "csi", "ephemeral"})


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    context = pod.get("securityContext") or {}
    found = []
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        own = c.get("securityContext") or {}
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{c['name']}: allowPrivilegeEscalation != false")
        if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
            found.append(f"{c['name']}: capabilities.drop lacks ALL")
        if set((own.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{c['name']}: capabilities.add beyond NET_BIND_SERVICE")
        if own.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            found.append(f"{c['name']}: runAsNonRoot != true")
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            found.append(f"{c['name']}: runAsUser 0")
        seccomp = (own.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{c['name']}: seccompProfile is {seccomp}")
        if own.get("privileged"):
            found.append(f"{c['name']}: privileged")
    found += [f"volume {v['name']}" for v in pod.get("volumes") or [] if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        found.append("host namespaces")
    return found
