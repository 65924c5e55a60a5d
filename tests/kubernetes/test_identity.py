"""Tasks on block storage whose fresh volume root is `root:root 0755` (B1): the filers (uid 10001, fsGroup)
stage into it, and executors write into it whether they run as the image's root or as a non-root uid the
operator set (the executor securityContext settings), on the stand-in's strict kubelet."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kubernetes.conftest import Cluster, staged_task

pytestmark = pytest.mark.kubernetes


def sort_task(host: str) -> dict[str, Any]:
    """The executors write into the volume, into an output folder the filer made and into one they make."""
    return staged_task(host, [
        {"image": "alpine", "command": ["sort", "/data/in/numbers.txt"], "stdout": "/scratch/sorted.txt"},
        {"image": "alpine", "command": ["sh", "-c", "cp /scratch/sorted.txt /data/out/sorted.txt && "
                                        "mkdir -p /data/out/made && cat /data/in/inline.txt > /data/out/made/x && "
                                        "id -u"]},
    ])


@pytest.mark.parametrize("storage_class", ["standard", "local-path"])
def test_a_non_root_executor_reads_the_staged_inputs_and_writes_the_outputs(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]], storage_class: str) -> None:
    cluster.require_standin()  # the file server is on this machine's loopback
    host, stored = files
    api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host},
                      storage_class=storage_class, executor_run_as_user=1000, executor_run_as_group=1000)
    task = api.wait(api.submit(sort_task(host)), timeout=120)
    assert task["state"] == "COMPLETE", task["logs"]
    assert task["logs"][0]["logs"][1]["stdout"] == "1000\n"
    assert stored["/out/sorted.txt"] == stored["/out/all/sorted.txt"] == b"1\n2\n3\n"
    assert stored["/out/all/made/x"] == b"inline\n"


def test_a_root_executor_writes_into_the_filers_folders_on_block_storage(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]]) -> None:
    cluster.require_standin()
    host, stored = files
    api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host}, storage_class="standard")
    task = api.wait(api.submit(sort_task(host)), timeout=120)
    assert task["state"] == "COMPLETE", task["logs"]
    assert task["logs"][0]["logs"][1]["stdout"] == "0\n"
    assert stored["/out/all/made/x"] == b"inline\n"


def test_without_an_fs_group_the_filer_cannot_stage_into_a_fresh_block_volume(
        api_factory: Any, cluster: Cluster, files: tuple[str, dict[str, bytes]]) -> None:
    """B1 as a cloud cluster shows it: what `TESK_K8S_FS_GROUP=` (empty) gives where no SCC injects a group."""
    cluster.require_standin()
    host, _ = files
    api = api_factory(TESK_API_TASKMASTER_ENVIRONMENT_={"TESK_FILER_HTTP_PUT_HOSTS": host, "FILER_BACKOFF_LIMIT": "0"},
                      storage_class="standard", fs_group=None)
    task = api.wait(api.submit(sort_task(host)), timeout=120)
    assert task["state"] == "SYSTEM_ERROR", task["logs"]
    assert "Permission denied" in str(task["logs"]), task["logs"]
