"""Replica leases in the store: who holds a task, exactly one taker of a dead replica's tasks."""

from __future__ import annotations

import asyncio

from tesk.models import State
from tesk.store import Replica
from tesk.store.sql import SqlTaskStore
from tests.store.conftest import make_task


async def held(store: SqlTaskStore, holder: str | None, state: State = State.RUNNING) -> str:
    task = make_task(state=state)
    await store.create(task, "alice", None, held_by=holder)
    assert task.id is not None
    return task.id


async def test_exactly_one_of_several_replicas_takes_a_dead_ones_tasks(database_url: str, store: SqlTaskStore) -> None:
    dead = Replica("dead", "host-a", "inst-a")
    generation = await store.register_replica(dead, lease_seconds=0.05)
    active = [await held(store, "dead"), await held(store, "dead", State.QUEUED), await held(store, "dead", State.CANCELING)]
    finished = await held(store, "dead", State.COMPLETE)
    await asyncio.sleep(0.1)
    takers = [SqlTaskStore(database_url) for _ in range(5)]
    for taker in takers:
        await taker.open()
    try:
        results = await asyncio.gather(*(t.take_over(f"taker-{i}") for i, t in enumerate(takers)))
    finally:
        for taker in takers:
            await taker.close()
    winners = [(i, taken) for i, taken in enumerate(results) if taken]
    assert len(winners) == 1, results
    index, [taken] = winners[0]
    assert taken.replica == dead and taken.task_ids == sorted(active)
    for task_id in active:
        assert (await store.get(task_id)).held_by == f"taker-{index}"  # type: ignore[union-attr]
    assert (await store.get(finished)).held_by == "dead"  # type: ignore[union-attr]
    assert await store.take_over("late") == [], "taken once; nothing left to take"
    assert not await store.renew_replica("dead", generation, 30), "the dead replica's lease is gone"
    # The old holder can no longer write; the new one can.
    assert await store.update(active[0], state=State.COMPLETE, held_by="dead") is None
    assert (await store.update(active[0], state=State.COMPLETE, held_by=f"taker-{index}")) is not None


async def test_a_live_lease_is_not_taken_and_a_released_one_is_at_once(store: SqlTaskStore) -> None:
    live = Replica("live", "host-b", "inst-b")
    generation = await store.register_replica(live, lease_seconds=60)
    task_id = await held(store, "live")
    assert await store.take_over("other") == []
    assert await store.renew_replica("live", generation, 60)
    await store.release_replica("live", generation)
    [taken] = await store.take_over("other")
    assert taken.task_ids == [task_id]
    assert await store.ids_in_states([State.RUNNING], held_by="other") == [task_id]
    assert await store.ids_in_states([State.RUNNING], held_by="live") == []


async def test_registering_adopts_unfinished_tasks_nobody_holds(store: SqlTaskStore) -> None:
    unheld = await held(store, None)
    done = await held(store, None, State.COMPLETE)
    first = await store.register_replica(Replica("r", "h", "i"), lease_seconds=30)
    assert (await store.get(unheld)).held_by == "r"  # type: ignore[union-attr]
    assert (await store.get(done)).held_by is None  # type: ignore[union-attr]
    assert await store.register_replica(Replica("r", "h", "i"), lease_seconds=30) == first + 1
    assert not await store.renew_replica("r", first, 30), "a restart ends the old generation's lease"
