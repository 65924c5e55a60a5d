"""The Kubernetes backend: a taskmaster Job per task, a watch-fed controller that keeps the store true.

Modules: `settings` (environment), `labels` (names, labels, checks), `manifests` (pure builders),
`state` (objects -> TES state), `kube` (the client layer), `backend` (submit/cancel), `controller`
(informers, leader election, store writes), `taskmaster` (the in-cluster runtime and reporter).
"""

from __future__ import annotations

from typing import Any

__all__ = ["KubernetesBackend"]


def __getattr__(name: str) -> Any:
    # Lazy, so reading settings (tesk serve --help) does not import the Kubernetes client.
    if name == "KubernetesBackend":
        from tesk.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend
    raise AttributeError(name)
