"""What Pod Security `restricted` refuses in a pod spec, for unit tests of rendered manifests and deploy/: the
stand-in's own rules (devcluster.podsecurity), so these tests and the stand-in judge a pod the same way."""

from __future__ import annotations

from typing import Any

from devcluster.podsecurity import violations


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Each broken rule as `reason (detail)`, the form of kube-apiserver's refusal; empty when
    `restricted` admits the pod."""
    return [f"{reason} ({detail})" for reason, detail in violations(pod, "restricted")]
