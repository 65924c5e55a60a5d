"""The pytest plugin of the stand-in cluster (registered through the `pytest11` entry point).

Installing the `devcluster` distribution makes the `devcluster` fixture available to every test:
a running `DevCluster` with short back-offs (`devcluster.cluster.fast_config`) whose
`kubeconfig_path` attribute points at a kubeconfig for the `admin` user. `wait_for` polls a probe
and fails the test with a clear message on timeout.

The server stack is imported inside the fixture, so loading the plugin costs nothing for test
runs that never use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

T = TypeVar("T")


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
    from devcluster.cluster import DevCluster, fast_config

    cluster = DevCluster(fast_config(state_dir=tmp_path / "devcluster"))
    with cluster:
        cluster.write_kubeconfig(tmp_path / "kubeconfig")
        yield cluster
