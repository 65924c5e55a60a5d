"""Kubernetes requests are counted by verb and resource where the client sends them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, watch

from tesk.backends.kubernetes.accounting import count_requests, request_kind
from tesk.backends.kubernetes.kube import load_api_client
from tests.kubernetes.conftest import Cluster

BASE = "https://k8s.example:6443"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/apis/batch/v1/namespaces/tes/jobs", ("create", "jobs")),
        ("GET", "/apis/batch/v1/namespaces/tes/jobs?labelSelector=a%3Db", ("list", "jobs")),
        ("GET", "/apis/batch/v1/namespaces/tes/jobs?watch=true&resourceVersion=5", ("watch", "jobs")),
        ("GET", "/api/v1/namespaces/tes/pods/p1", ("get", "pods")),
        ("GET", "/api/v1/namespaces/tes/pods/p1/log?container=main", ("get", "pods/log")),
        ("PATCH", "/apis/batch/v1/namespaces/tes/jobs/j1", ("patch", "jobs")),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/tes/leases/l1", ("update", "leases")),
        ("DELETE", "/api/v1/namespaces/tes/configmaps/c1", ("delete", "configmaps")),
        ("DELETE", "/api/v1/namespaces/tes/pods?labelSelector=x", ("deletecollection", "pods")),
    ],
)
def test_request_kind(method: str, path: str, expected: tuple[str, str]) -> None:
    assert request_kind(method, BASE + path) == expected


def test_every_request_of_the_client_is_observed(cluster: Cluster) -> None:
    seen: list[tuple[str, str, int]] = []
    api_client = load_api_client(cluster.kubeconfig)
    count_requests(api_client, lambda verb, resource, code: seen.append((verb, resource, code)))
    core = client.CoreV1Api(api_client)
    body: Any = {"metadata": {"name": "accounting-probe"}, "data": {"a": "1"}}  # the client accepts a dict
    core.create_namespaced_config_map(cluster.namespace, body)
    core.read_namespaced_config_map("accounting-probe", cluster.namespace)
    core.list_namespaced_config_map(cluster.namespace, label_selector="nothing=here")
    for _ in watch.Watch().stream(core.list_namespaced_config_map, cluster.namespace, timeout_seconds=1):
        break
    core.delete_namespaced_config_map("accounting-probe", cluster.namespace)
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("accounting-probe", cluster.namespace)
    assert seen == [
        ("create", "configmaps", 201),
        ("get", "configmaps", 200),
        ("list", "configmaps", 200),
        ("watch", "configmaps", 200),
        ("delete", "configmaps", 200),
        ("get", "configmaps", 404),
    ]
