"""The taskmaster finds its task spec whether or not the kubelet mounted the (optional) spec volume in time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tesk.backends.kubernetes import manifests
from tesk.config.kubernetes import KubernetesSettings
from tesk.backends.kubernetes.taskmaster import _read_spec
from tesk.models import Task
from tests.kubernetes.conftest import Cluster

TASK = Task.model_validate({"id": "task-specread", "executors": [{"image": "busybox", "command": ["true"]}]})


def test_the_taskmaster_pod_mounts_its_spec_volume_as_optional() -> None:
    job = manifests.taskmaster_job(KubernetesSettings(), TASK, "u", None)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["spec"]["configMap"]["optional"] is True  # so the pod never waits on a mount retry


def test_a_spec_file_not_mounted_yet_is_read_from_the_configmap(cluster: Cluster, tmp_path: Path) -> None:
    kube = cluster.kube()
    owner = manifests.Owner.of("task-specread", "00000000-0000-0000-0000-000000000001", {})
    configmap = manifests.spec_configmap(TASK, owner)
    configmap["metadata"].pop("ownerReferences")  # no such Job here: the garbage collector would take it
    kube.create(configmap)
    try:
        missing = tmp_path / "spec" / manifests.SPEC_KEY
        assert asyncio.run(_read_spec(kube, "task-specread", missing)) == TASK
        mounted = tmp_path / manifests.SPEC_KEY
        mounted.write_bytes(manifests.spec_documents(TASK.model_copy(update={"name": "from the file"}))[
            manifests.SPEC_KEY])
        assert asyncio.run(_read_spec(kube, "task-specread", mounted)).name == "from the file"
    finally:
        kube.delete("ConfigMap", configmap["metadata"]["name"])
    with pytest.raises(SystemExit, match="cannot read the task spec of task task-specread"):
        asyncio.run(_read_spec(kube, "task-specread", missing))
