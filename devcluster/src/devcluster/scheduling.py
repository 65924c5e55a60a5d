"""What kube-scheduler's filter plugins decide for one pod and one node, and how it reports a pod that fits nowhere.

Pure functions over Pod and Node objects, so the kubelet's scheduling pass stays a loop and the
rules can be tested on their own. The plugins run in kube-scheduler's default order and a node is
rejected by the first one that fails (TaintToleration, NodeAffinity, NodeResourcesFit, then the
VolumeBinding checks in `storage`). The texts are kube-scheduler's (pkg/scheduler/framework/plugins
and framework.FitError): reasons are counted per node and listed sorted as strings, followed by
what DefaultPreemption found; every pod here has priority 0, so preemption never finds a victim.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

NODE_AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass(frozen=True)
class Rejection:
    """Why one node cannot take the pod; `resolvable` is False for UnschedulableAndUnresolvable
    (preemption cannot help: taints, affinity, volume topology), True for a shortage of resources."""

    reasons: tuple[str, ...]
    resolvable: bool = False


def _expression_matches(expression: dict[str, Any], value: str | None) -> bool:
    """One `matchExpressions` requirement against the value of its key (None: the label is absent)."""
    operator = expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        try:
            have, want = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return have > want if operator == "Gt" else have < want
    return False


def term_matches(term: dict[str, Any], node: dict[str, Any]) -> bool:
    """A NodeSelectorTerm: all its expressions and fields hold. An empty term matches no node."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    if not all(_expression_matches(e, labels.get(e.get("key", ""))) for e in expressions):
        return False
    field_values = {"metadata.name": node["metadata"]["name"]}
    return all(_expression_matches(f, field_values.get(f.get("key", ""))) for f in fields)


def selector_matches(selector: dict[str, Any] | None, node: dict[str, Any]) -> bool:
    """A NodeSelector (required node affinity, a PV's node affinity): any of its terms holds."""
    if not selector:
        return True
    return any(term_matches(term, node) for term in selector.get("nodeSelectorTerms") or [])


def node_affinity_fits(spec: dict[str, Any], node: dict[str, Any]) -> bool:
    """The NodeAffinity plugin: `nodeSelector` and required node affinity must both hold."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    return required is None or selector_matches(required, node)


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Whether one toleration tolerates one taint (an empty key with Exists tolerates every taint)."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return bool(toleration.get("key")) and toleration.get("value", "") == taint.get("value", "")


def untolerated_taint(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """The TaintToleration filter: the first NoSchedule/NoExecute taint the pod does not tolerate."""
    tolerations = spec.get("tolerations") or []
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def taint_reason(taint: dict[str, Any]) -> str:
    """The TaintToleration plugin's reason for a node."""
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def resource_shortage(requests: dict[str, float], free: dict[str, float], pods_free: int) -> tuple[str, ...]:
    """The NodeResourcesFit filter: every resource the node lacks, pod count first."""
    reasons = [TOO_MANY_PODS] if pods_free < 1 else []
    reasons += [f"Insufficient {name}" for name in ("cpu", "memory")
                if requests.get(name, 0.0) > 0 and requests[name] > free.get(name, 0.0)]
    return tuple(reasons)


def fit_error(node_count: int, prefilter: str, rejections: dict[str, Rejection]) -> str:
    """framework.FitError's message plus DefaultPreemption's, as in the FailedScheduling event.

    A PreFilter failure (a missing claim, an unbound immediate claim) stands for every node; else
    the nodes' reasons are counted and sorted. Preemption then looks at each node: resources might
    be freed (no victim of lower priority exists here), anything else it cannot help.
    """
    header = f"0/{node_count} nodes are available:"
    if prefilter:
        return f"{header} {prefilter}. preemption: {header} {node_count} {NOT_HELPFUL}."
    counts = Counter(reason for rejection in rejections.values() for reason in rejection.reasons)
    reasons = sorted(f"{count} {reason}" for reason, count in counts.items())
    preemption = Counter(NO_VICTIMS if r.resolvable else NOT_HELPFUL for r in rejections.values())
    helped = sorted(f"{count} {reason}" for reason, count in preemption.items())
    return f"{header} {', '.join(reasons)}. preemption: {header} {', '.join(helped)}."
