"""Kubernetes requests are counted by verb and resource where `Kube` sends them, answers and failures alike."""

from __future__ import annotations

import threading

import pytest

from tesk.backends.kubernetes.kube import Kube, NotFound, load_api_client
from tests.kubernetes.conftest import Cluster


def test_every_request_is_observed_with_its_verb_resource_and_status(cluster: Cluster) -> None:
    seen: list[tuple[str, str, int]] = []
    # as the tests' observer: the API's own account may not patch or delete ConfigMaps
    kube = Kube(load_api_client(cluster.observer or cluster.kubeconfig), cluster.namespace,
                observe=lambda verb, resource, code: seen.append((verb, resource, code)))
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "accounting-probe"}, "data": {"a": "1"}})
    assert kube.get("ConfigMap", "accounting-probe") is not None
    kube.patch("ConfigMap", "accounting-probe", {"data": {"a": "2"}})
    kube.list("ConfigMap", "nothing=here")
    stop = threading.Event()
    assert {kind for kind, _ in kube.watch("ConfigMap", "nothing=here", None, 1, stop)} <= {"BOOKMARK"}
    assert kube.delete("ConfigMap", "accounting-probe")
    assert kube.get("ConfigMap", "accounting-probe") is None
    kube.delete_collection("Pod", "nothing=here")
    with pytest.raises(NotFound, match="accounting-probe"):
        kube.read_log("accounting-probe", "main", 1024)
    assert seen == [
        ("create", "configmaps", 201),
        ("get", "configmaps", 200),
        ("patch", "configmaps", 200),
        ("list", "configmaps", 200),
        ("watch", "configmaps", 200),
        ("delete", "configmaps", 200),
        ("get", "configmaps", 404),
        ("deletecollection", "pods", 200),
        ("get", "pods/log", 404),
    ]
