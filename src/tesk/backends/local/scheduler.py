"""Which queued task starts next on this host: first come, first served, within the capacity.

A task reserves its `cpu_cores` (or a default) and its `ram_gb` for as long as it runs. When the first
task in the queue does not fit yet, smaller tasks behind it may start (backfill), but only for a while:
once it has waited `backfill_seconds`, the queue waits for it, so a stream of small tasks cannot
starve a large one. A task larger than the whole capacity can never start and is refused at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tesk.models import Task


@dataclass(frozen=True)
class Request:
    cpu_cores: float
    ram_gb: float


@dataclass
class _Queued:
    task_id: str
    request: Request
    since: float


class Scheduler:
    """Pure bookkeeping (no I/O): the backend calls `admit()` whenever the queue or capacity changes."""

    def __init__(
        self,
        cpu_cores: float,
        ram_gb: float,
        max_tasks: int | None,
        default_cpu_cores: float,
        backfill_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpu_cores = cpu_cores
        self.ram_gb = ram_gb
        self.max_tasks = max_tasks
        self.default_cpu_cores = default_cpu_cores
        self.backfill_seconds = backfill_seconds
        self.clock = clock
        self.queue: list[_Queued] = []
        self.queued: set[str] = set()
        """Ids in `queue`, to refuse a second copy without scanning it."""
        self.running: dict[str, Request] = {}

    def request(self, task: Task) -> Request:
        resources = task.resources
        cpu = resources.cpu_cores if resources and resources.cpu_cores else self.default_cpu_cores
        ram = resources.ram_gb if resources and resources.ram_gb else 0.0
        return Request(float(cpu), float(ram))

    def never_fits(self, request: Request) -> str | None:
        """Why a task can never run here, or None."""
        if request.cpu_cores > self.cpu_cores:
            return (
                f"the task asks for {request.cpu_cores:g} cpu cores but this server offers at most "
                f"{self.cpu_cores:g} (TESK_LOCAL_CPU_CORES); ask for fewer cores"
            )
        if request.ram_gb > self.ram_gb:
            return (
                f"the task asks for {request.ram_gb:g} GB of memory but this server offers at most "
                f"{self.ram_gb:.1f} GB (TESK_LOCAL_RAM_GB); ask for less memory"
            )
        return None

    def add(self, task_id: str, request: Request) -> None:
        """Queue a task; one already queued or running stays as it is, so no task runs twice here
        (the API and a resumption after re-registering may both hand in the same task)."""
        if task_id in self.running or task_id in self.queued:
            return
        self.queued.add(task_id)
        self.queue.append(_Queued(task_id, request, self.clock()))

    def remove(self, task_id: str) -> bool:
        """Take a task out of the queue; False when it was not queued (running or unknown)."""
        for index, item in enumerate(self.queue):
            if item.task_id == task_id:
                del self.queue[index]
                self.queued.discard(task_id)
                return True
        return False

    def clear(self) -> None:
        """Forget every queued task (running ones stay counted until `done`)."""
        self.queue.clear()
        self.queued.clear()

    def done(self, task_id: str) -> None:
        self.running.pop(task_id, None)

    def _fits(self, request: Request) -> bool:
        used_cpu = sum(r.cpu_cores for r in self.running.values())
        used_ram = sum(r.ram_gb for r in self.running.values())
        # A small tolerance: fractions of cores added and removed must not leave a phantom shortage.
        return (used_cpu + request.cpu_cores <= self.cpu_cores + 1e-9
                and used_ram + request.ram_gb <= self.ram_gb + 1e-9)

    def admit(self) -> list[str]:
        """Move the tasks that may start now from the queue to `running`; return their ids in order."""
        started: list[str] = []
        now = self.clock()
        index = 0
        while index < len(self.queue):
            if self.max_tasks is not None and len(self.running) >= self.max_tasks:
                break
            item = self.queue[index]
            if self._fits(item.request):
                del self.queue[index]
                self.queued.discard(item.task_id)
                self.running[item.task_id] = item.request
                started.append(item.task_id)
                continue
            if now - item.since >= self.backfill_seconds:
                break
            index += 1
        return started
