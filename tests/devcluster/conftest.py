"""Fixtures for the stand-in cluster's own tests: the cluster and official-client APIs bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import kubernetes
import pytest

from devcluster import DevCluster


@dataclass
class Clients:
    """The official client's APIs, configured from the stand-in's kubeconfig."""

    api: kubernetes.client.ApiClient
    core: kubernetes.client.CoreV1Api
    batch: kubernetes.client.BatchV1Api


@pytest.fixture
def k8s(devcluster: DevCluster) -> Iterator[Clients]:  # the devcluster plugin's fixture
    """Clients talking to the stand-in through a generated kubeconfig, as they would to a cluster."""
    api = kubernetes.config.new_client_from_config(str(devcluster.kubeconfig_path))
    yield Clients(api, kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api))
    api.close()
