"""The local `Runtime`: a task area on this host's disk plus a container engine."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tesk.backends.local import staging
from tesk.backends.local.area import Mount, TaskArea
from tesk.backends.local.engines import LABEL_EXECUTOR, LABEL_INSTANCE, LABEL_TASK, ContainerSpec, Engine
from tesk.backends.local.engines.cli import tail_text
from tesk.backends.local.settings import KeepAreas, LocalSettings
from tesk.models import OutputFileLog, State, Task
from tesk.runner import ExecutorOutcome, Note, TaskFailure, describe_executor

log = logging.getLogger(__name__)


def container_name(instance: str, task_id: str, index: int) -> str:
    return f"tesk-{instance}-{task_id}-{index}"


class LocalRuntime:
    """Runs one task's steps on this host (see `tesk.runner.Runtime` for the contract)."""

    def __init__(self, area: TaskArea, engine: Engine, settings: LocalSettings, instance: str) -> None:
        self.area = area
        self.engine = engine
        self.settings = settings
        self.instance = instance
        self.mounts: list[Mount] = []
        self.shared: list[str] = []

    async def prepare(self, task: Task, note: Note) -> None:
        await asyncio.to_thread(self.area.create)
        self.mounts = await asyncio.to_thread(self.area.prepare, task)
        self.shared = [m.container for m in self.mounts]
        self.mounts += await asyncio.to_thread(self._stream_mounts, task)

    def _stream_mounts(self, task: Task) -> list[Mount]:
        """stdout/stderr paths outside every shared folder get a file of their own, mounted in every
        executor, so a later executor can read what an earlier one wrote (as on the PVC)."""
        mounts: list[Mount] = []
        for executor in task.executors:
            for path in (executor.stdout, executor.stderr):
                if path and not self.area.covered(path, self.shared) and path not in [m.container for m in mounts]:
                    host = self.area.host_path(path)
                    host.parent.mkdir(parents=True, exist_ok=True)
                    host.touch()
                    mounts.append(Mount(host, path))
        return mounts

    async def stage_inputs(self, task: Task, note: Note) -> None:
        await asyncio.to_thread(staging.stage_inputs, task.inputs or [], self.area, note)

    async def stage_outputs(self, task: Task, note: Note) -> list[OutputFileLog]:
        return await asyncio.to_thread(staging.stage_outputs, task.outputs or [], self.area, note)

    def _stream_file(self, index: int, path: str | None, stream: str) -> Path:
        """Host file of an executor's stdout/stderr: at its container path when one is given, else in
        the area's log folder (only the host reads it then)."""
        if path is None:
            return self.area.logs / f"{index}.{stream}"
        return self.area.host_path(path)

    async def run_executor(self, task: Task, index: int, note: Note) -> ExecutorOutcome:
        assert task.id is not None
        executor = task.executors[index]
        stdin = None
        if executor.stdin:
            if not self.area.covered(executor.stdin, [m.container for m in self.mounts]):
                raise TaskFailure(
                    f"{describe_executor(task, index)}: stdin {executor.stdin} is not in an input, output "
                    "folder or volume of the task, so there is nothing to read it from"
                )
            stdin = self.area.host_path(executor.stdin)
            if not stdin.is_file():
                raise TaskFailure(f"{describe_executor(task, index)}: stdin {executor.stdin} does not exist")
        stdout = self._stream_file(index, executor.stdout, "stdout")
        stderr = self._stream_file(index, executor.stderr, "stderr")
        resources = task.resources
        spec = ContainerSpec(
            name=container_name(self.instance, task.id, index),
            image=executor.image,
            command=list(executor.command),
            stdout=stdout,
            stderr=stderr,
            stdin=stdin,
            workdir=executor.workdir,
            workdir_host=self.area.host_path(executor.workdir) if executor.workdir else None,
            env=dict(executor.env or {}),
            mounts=self.mounts,
            labels={LABEL_INSTANCE: self.instance, LABEL_TASK: task.id, LABEL_EXECUTOR: str(index)},
            cpu_cores=float(resources.cpu_cores) if resources and resources.cpu_cores else None,
            ram_bytes=int(resources.ram_gb * 2**30) if resources and resources.ram_gb else None,
            network=self.settings.network,
            scratch=self.area.logs,
        )
        try:
            result = await self.engine.run(spec, note)
        except TaskFailure as exc:
            raise TaskFailure(f"{describe_executor(task, index)} could not run: {exc}") from exc
        limit = self.settings.log_tail_bytes
        return ExecutorOutcome(
            exit_code=result.exit_code,
            start_time=result.start_time,
            end_time=result.end_time,
            stdout=tail_text(stdout, limit),
            stderr=tail_text(stderr, limit),
        )

    async def release(self, task: Task, final_state: State) -> None:
        keep = self.settings.keep_task_areas
        if keep is KeepAreas.ALWAYS or (keep is KeepAreas.FAILED and final_state is not State.COMPLETE):
            log.info("task %s: kept its files in %s", task.id, self.area.root, extra={"task_id": task.id})
            return
        await asyncio.to_thread(self.area.remove)
