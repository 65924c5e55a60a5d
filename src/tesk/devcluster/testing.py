"""Pytest helpers: a running stand-in cluster with short back-offs and a kubeconfig.

Import the fixture in a conftest (`from tesk.devcluster.testing import devcluster  # noqa: F401`);
the test gets a `DevCluster` whose `kubeconfig_path` attribute points at a kubeconfig for the
`admin` user. Back-offs are shortened (Job retries 0.2 s, image pulls 0.5 s, restarts 0.5 s) so
that failure paths run in seconds; everything else keeps Kubernetes' semantics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tesk.devcluster.cluster import DevCluster, DevClusterConfig

T = TypeVar("T")


def fast_config(**overrides: object) -> DevClusterConfig:
    """A configuration for tests: Kubernetes semantics with back-offs measured in fractions of seconds."""
    values: dict[str, object] = {"job_backoff_base": 0.2, "image_backoff_base": 0.5, "restart_backoff_base": 0.5,
                                 "bookmark_interval": 1.0}
    values.update(overrides)
    return DevClusterConfig(**values)  # type: ignore[arg-type]


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1,
             what: str = "the condition") -> T:
    """Poll `probe` until it returns something truthy; fail the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def devcluster(tmp_path: Path) -> Iterator[DevCluster]:
    """A fresh stand-in cluster per test, with `kubeconfig_path` set."""
    cluster = DevCluster(fast_config(state_dir=tmp_path / "devcluster"))
    with cluster:
        cluster.write_kubeconfig(tmp_path / "kubeconfig")
        yield cluster
