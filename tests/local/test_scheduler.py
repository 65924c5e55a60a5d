"""The capacity-aware FIFO queue: pure bookkeeping, tested with a fake clock."""

from __future__ import annotations

from tesk.backends.local.scheduler import Request, Scheduler
from tesk.models import Task


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(cpu: float = 4, ram: float = 8, max_tasks: int | None = None, backfill: float = 60) -> tuple[Scheduler, Clock]:
    clock = Clock()
    return Scheduler(cpu, ram, max_tasks, default_cpu_cores=1, backfill_seconds=backfill, clock=clock), clock


def test_fifo_within_capacity_and_release_on_done() -> None:
    sched, _ = make(cpu=2)
    for name in "abc":
        sched.add(name, Request(1, 0))
    assert sched.admit() == ["a", "b"]
    assert sched.admit() == []
    sched.done("a")
    assert sched.admit() == ["c"]


def test_small_tasks_pass_a_blocked_large_one_until_it_has_waited_too_long() -> None:
    sched, clock = make(cpu=4, backfill=60)
    sched.add("running", Request(3, 0))
    assert sched.admit() == ["running"]
    sched.add("large", Request(4, 0))
    sched.add("small1", Request(1, 0))
    assert sched.admit() == ["small1"], "a small task may pass the large one that does not fit yet"
    sched.done("small1")
    clock.now = 61
    sched.add("small2", Request(1, 0))
    assert sched.admit() == [], "after backfill_seconds the queue waits for the large task"
    sched.done("running")
    assert sched.admit() == ["large"]


def test_memory_counts_too() -> None:
    sched, _ = make(cpu=8, ram=4)
    sched.add("a", Request(1, 3))
    sched.add("b", Request(1, 2))
    sched.add("c", Request(1, 1))
    assert sched.admit() == ["a", "c"]


def test_max_tasks_and_drain_mode() -> None:
    sched, _ = make(cpu=100, max_tasks=2)
    for name in "abc":
        sched.add(name, Request(1, 0))
    assert sched.admit() == ["a", "b"]
    drained, _ = make(max_tasks=0)
    drained.add("a", Request(0, 0))
    assert drained.admit() == [], "TESK_LOCAL_MAX_TASKS=0 starts nothing"
    assert drained.remove("a") and not drained.remove("a")


def test_requests_default_and_never_fitting_tasks() -> None:
    sched, _ = make(cpu=2, ram=4)
    plain = Task.model_validate({"executors": [{"image": "alpine", "command": ["true"]}]})
    assert sched.request(plain) == Request(1, 0)
    big = Task.model_validate({"resources": {"cpu_cores": 1, "ram_gb": 16}, "executors": [{"image": "a", "command": ["x"]}]})
    reason = sched.never_fits(sched.request(big))
    assert reason is not None and "16 GB" in reason and "TESK_LOCAL_RAM_GB" in reason
    assert sched.never_fits(Request(2, 4)) is None


def test_a_task_handed_in_twice_is_queued_and_run_once() -> None:
    sched, _ = make(cpu=4)
    sched.add("a", Request(1, 0))
    sched.add("a", Request(1, 0))
    assert sched.admit() == ["a"]
    sched.add("a", Request(1, 0))  # while it runs
    assert sched.admit() == [] and len(sched.queue) == 0
