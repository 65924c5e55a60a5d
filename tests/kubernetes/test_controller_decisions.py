"""Controller decisions that hinge on what the cache has not seen yet, driven with a small fake API.

Kubernetes gives no order between the watches of different kinds, so the controller must not end a
task on a Job event alone (W2), and must clean up a Job a half-failed submit left behind (R10).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.controller import Controller
from tesk.backends.kubernetes.kube import Obj
from tesk.config.kubernetes import KubernetesSettings
from tesk.backends.kubernetes.state import encode_result
from tesk.models import State, Task, TaskLog
from tesk.store import new_task_id
from tesk.store.sql import SqlTaskStore


class FakeKube:
    """Answers GETs from `objects` and records deletes; nothing else is expected."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.calls: list[tuple[str, str, str]] = []

    def get(self, kind: str, name: str) -> Obj | None:
        self.calls.append(("get", kind, name))
        return self.objects.get((kind, name))

    def delete(self, kind: str, name: str, propagation: str = "Background", grace_seconds: int | None = None) -> bool:
        self.calls.append(("delete", kind, name))
        return self.objects.pop((kind, name), None) is not None


def job(task_id: str, *conditions: str) -> Obj:
    return {"kind": "Job", "metadata": {"name": task_id, "uid": "u1", "resourceVersion": "7",
                                        "labels": lb.task_labels(task_id, lb.Role.TASKMASTER),
                                        "creationTimestamp": datetime.now(UTC).isoformat()},
            "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]}}


def result(task_id: str, state: State) -> Obj:
    return {"kind": "ConfigMap", "metadata": {"name": lb.child_name(task_id, lb.Role.RESULT), "resourceVersion": "9",
                                              "labels": lb.task_labels(task_id, lb.Role.RESULT)},
            "data": encode_result(state, TaskLog(system_logs=["done"]))}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlTaskStore]:
    store = SqlTaskStore(f"sqlite+aiosqlite:///{tmp_path / 'tesk.db'}")
    await store.open()
    yield store
    await store.close()


async def stored_task(store: SqlTaskStore, state: State) -> str:
    task = Task.model_validate({"executors": [{"image": "alpine", "command": ["true"]}]})
    task.id, task.state, task.creation_time = new_task_id(), state, datetime.now(UTC)
    await store.create(task, "someone", None)
    return task.id


def controller(kube: FakeKube, store: SqlTaskStore) -> Controller:
    return Controller(KubernetesSettings(), kube, store, elect=False)  # type: ignore[arg-type]


async def test_a_complete_job_seen_before_its_result_ends_the_task_complete(store: SqlTaskStore) -> None:
    kube = FakeKube()
    task_id = await stored_task(store, State.RUNNING)
    ctl = controller(kube, store)
    ctl.cache.put("Job", job(task_id, "SuccessCriteriaMet", "Complete"), from_watch=True)
    kube.objects[("ConfigMap", lb.child_name(task_id, lb.Role.RESULT))] = result(task_id, State.COMPLETE)
    await ctl.reconcile(task_id)  # the ConfigMap watch has not delivered the result yet
    stored = await store.get(task_id)
    assert stored is not None and stored.state is State.COMPLETE
    assert stored.task.logs and stored.task.logs[0].system_logs == ["done"]
    assert not [c for c in kube.calls if c[0] == "delete"]  # the result (owned by the Job) was kept


async def test_a_complete_job_with_no_result_anywhere_is_a_system_error(store: SqlTaskStore) -> None:
    kube = FakeKube()
    task_id = await stored_task(store, State.RUNNING)
    ctl = controller(kube, store)
    ctl.cache.put("Job", job(task_id, "Complete"), from_watch=True)
    await ctl.reconcile(task_id)
    stored = await store.get(task_id)
    assert stored is not None and stored.state is State.SYSTEM_ERROR
    assert ("get", "ConfigMap", lb.child_name(task_id, lb.Role.RESULT)) in kube.calls


async def test_a_job_left_by_a_half_failed_submit_is_deleted(store: SqlTaskStore) -> None:
    kube = FakeKube()
    task_id = await stored_task(store, State.SYSTEM_ERROR)  # the submit failed; its Job delete failed too
    kube.objects[("Job", task_id)] = job(task_id)
    ctl = controller(kube, store)
    ctl.cache.put("Job", job(task_id), from_watch=True)
    await ctl.reconcile(task_id)
    assert ("delete", "Job", task_id) in kube.calls
    stored = await store.get(task_id)
    assert stored is not None and stored.state is State.SYSTEM_ERROR


@pytest.mark.parametrize("case", ["finished", "reported"])
async def test_an_ended_task_whose_job_is_done_or_reported_is_left_alone(store: SqlTaskStore, case: str) -> None:
    kube = FakeKube()
    task_id = await stored_task(store, State.COMPLETE)
    ctl = controller(kube, store)
    ctl.cache.put("Job", job(task_id, "Complete") if case == "finished" else job(task_id), from_watch=True)
    if case == "reported":  # another replica ended it; this cache has not seen the result yet
        kube.objects[("ConfigMap", lb.child_name(task_id, lb.Role.RESULT))] = result(task_id, State.COMPLETE)
    await ctl.reconcile(task_id)
    assert not [c for c in kube.calls if c[0] == "delete"]


def test_cache_keeps_our_own_write_over_older_watch_events() -> None:
    from tesk.backends.kubernetes.informer import Cache

    cache = Cache()
    labelled: dict[str, Any] = job("t1")
    labelled["metadata"] = labelled["metadata"] | {"resourceVersion": "b", "labels": {
        **labelled["metadata"]["labels"], lb.CANCEL: lb.CANCEL_REQUESTED}}
    cache.put("Job", labelled)  # our cancel patch answered with version "b"
    cache.put("Job", job("t1"), from_watch=True)  # the watch still delivers version "7" from before it
    assert ((cache.job("t1") or {})["metadata"]["labels"]).get(lb.CANCEL) == lb.CANCEL_REQUESTED
    cache.put("Job", labelled, from_watch=True)  # the watch caught up
    later = job("t1", "Complete")
    later["metadata"]["resourceVersion"] = "a"  # opaque: "a" < "b" as strings, yet it is newer
    cache.put("Job", later, from_watch=True)
    assert (cache.job("t1") or {})["status"]["conditions"][0]["type"] == "Complete"


class CountingStore:
    """The real store, counting reads."""

    def __init__(self, store: SqlTaskStore) -> None:
        self.store, self.gets = store, 0

    async def get(self, task_id: str) -> Any:
        self.gets += 1
        return await self.store.get(task_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_queued_task_is_not_read_from_the_store_on_every_tick(store: SqlTaskStore) -> None:
    """R3: with thousands of QUEUED tasks, a store read per task every tick is a steady load."""
    import asyncio

    kube = FakeKube()
    task_id = await stored_task(store, State.QUEUED)
    counting = CountingStore(store)
    ctl = Controller(KubernetesSettings(), kube, counting, elect=False, tick_seconds=0.05)  # type: ignore[arg-type]
    ctl.cache.put("Job", job(task_id), from_watch=True)  # no pod yet: QUEUED, looked at on each tick
    ctl._loop = asyncio.get_running_loop()
    ctl._mark({task_id})
    worker = asyncio.create_task(ctl._run())
    await asyncio.sleep(1.0)  # about 20 ticks
    worker.cancel()
    assert task_id in ctl._watching
    assert counting.gets <= 2, f"{counting.gets} store reads in 20 ticks"
    before = counting.gets
    ctl.notify({task_id})  # an event about the task reads it afresh
    worker = asyncio.create_task(ctl._run())
    await asyncio.sleep(0.2)
    worker.cancel()
    assert counting.gets == before + 1
