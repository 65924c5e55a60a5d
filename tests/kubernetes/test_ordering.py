"""W2 on the strict profile: watches of different resources are not ordered, so a taskmaster Job's
Complete can reach the API's controller long before the result ConfigMap written before it. Here the
stand-in delivers ConfigMap events 30 s after they happen (Jobs at once), as a lagging watch cache or a
ConfigMap watch relisting after a 410 would: the task must still end COMPLETE with its logs, never
SYSTEM_ERROR "ended without reporting a result" (which would also delete the Job and the result with it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kubernetes.conftest import REAL_KUBECONFIG, Cluster, standin

pytestmark = [pytest.mark.kubernetes,
              pytest.mark.skipif(bool(REAL_KUBECONFIG), reason="needs the stand-in's watch delays")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standin(tmp_path_factory, "ordering", watch_delays={"jobs": 0.0, "configmaps": 30.0}) as deployed_cluster:
        yield deployed_cluster


def test_a_job_complete_seen_long_before_its_result_still_ends_the_task_complete(api_factory: Any) -> None:
    api = api_factory()
    task = api.wait(api.submit({"executors": [{"image": "alpine", "command": ["echo", "reported"]}]}))
    assert task["state"] == "COMPLETE", task["logs"]
    assert task["logs"][0]["logs"][0]["stdout"] == "reported\n"
