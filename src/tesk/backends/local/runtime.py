"""The local `Runtime`: a task area on this host's disk plus a container engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from tesk.backends.local.engines import LABEL_EXECUTOR, LABEL_INSTANCE, LABEL_TASK, ContainerSpec, Engine
from tesk.backends.local.engines.cli import tail_text
from tesk.backends.local.folder import TaskFolder, is_under
from tesk.config.local import LocalSettings
from tesk.filer import FilerError, FilerSettings, Mount, TaskArea, stage_inputs, stage_outputs
from tesk.models import OutputFileLog, State, Task
from tesk.runner import ExecutorOutcome, Note, TaskFailure, describe_executor
from tesk.telemetry import count_staged_bytes

log = logging.getLogger(__name__)

_STREAM_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC


def tree_size(path: Path) -> int:
    """Bytes in a file, or in every file under a folder (links are not followed)."""
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def container_name(instance: str, task_id: str, index: int) -> str:
    return f"tesk-{instance}-{task_id}-{index}"


class LocalRuntime:
    """Runs one task's steps on this host (see `tesk.runner.Runtime` for the contract)."""

    def __init__(
        self, folder: TaskFolder, engine: Engine, settings: LocalSettings, filer: FilerSettings, instance: str
    ) -> None:
        self.folder = folder
        self.engine = engine
        self.settings = settings
        self.filer = filer
        self.instance = instance
        self.area = TaskArea(folder.files)
        self.mounts: list[Mount] = []

    async def prepare(self, task: Task, note: Note) -> None:
        self.area = await asyncio.to_thread(self.folder.create)
        try:
            self.mounts = await asyncio.to_thread(
                self.area.mounts, task.inputs or [], task.outputs or [], task.volumes or []
            )
        except FilerError as exc:
            raise TaskFailure(str(exc)) from exc
        self.mounts += await asyncio.to_thread(self._stream_mounts, task)

    def _stream_mounts(self, task: Task) -> list[Mount]:
        """stdout/stderr paths outside every shared folder get a file of their own, mounted in every
        executor, so a later executor can read what an earlier one wrote (as on the PVC)."""
        mounts: list[Mount] = []
        for executor in task.executors:
            for path in (executor.stdout, executor.stderr):
                if path and not is_under(path, self.mounts) and path not in [m.container_path for m in mounts]:
                    mounts.append(Mount(path, self.area.touch(path)))
        return mounts

    async def stage_inputs(self, task: Task, note: Note) -> None:
        if task.inputs:
            try:
                await stage_inputs(task.inputs, self.area, self.filer, note)
            except FilerError as exc:
                raise TaskFailure(str(exc)) from exc
            await asyncio.to_thread(self._count_inputs, task)

    def _count_inputs(self, task: Task) -> None:
        """Bytes staged in, by scheme, for /metrics (inline content counts as `content`)."""
        for item in task.inputs or []:
            scheme = "content" if item.content else (urlsplit(item.url or "").scheme or "file")
            count_staged_bytes(scheme, "in", tree_size(self.area.host_path(item.path)))

    async def stage_outputs(self, task: Task, note: Note) -> list[OutputFileLog]:
        if not task.outputs:
            return []
        try:
            uploaded = await stage_outputs(task.outputs, self.area, self.filer, note)
        except FilerError as exc:
            raise TaskFailure(str(exc)) from exc
        for item in uploaded:
            count_staged_bytes(urlsplit(item.url).scheme or "file", "out", int(item.size_bytes))
        return uploaded

    def _stream_file(self, index: int, path: str | None, stream: str) -> int:
        """Open an executor's stdout/stderr for writing (and reading its tail): at its container path
        when one is given, never through a symlink, else in the task's log folder (only the host reads
        it then)."""
        if path is None:
            return os.open(self.folder.logs / f"{index}.{stream}", _STREAM_FLAGS | os.O_CLOEXEC, 0o644)
        return self.area.open(path, _STREAM_FLAGS, follow=False, create_folders=True).fd

    def _stdin(self, task: Task, index: int, path: str) -> int:
        """Open an executor's stdin for reading, resolving symlinks inside the area only."""
        if not is_under(path, self.mounts):
            raise TaskFailure(
                f"{describe_executor(task, index)}: stdin {path} is not in an input, output "
                "folder or volume of the task, so there is nothing to read it from"
            )
        fd = self.area.open(path).fd
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise TaskFailure(f"{describe_executor(task, index)}: stdin {path} is a folder, not a file")
        return fd

    def _workdir_folder(self, task: Task, index: int) -> Callable[[], Path] | None:
        """How an engine creates a missing workdir in the area (never through a symlink)."""
        workdir = task.executors[index].workdir
        if workdir in (None, "/"):
            return None

        def create() -> Path:
            try:
                return self.area.make_folder(workdir)
            except FilerError as exc:
                raise TaskFailure(f"workdir {exc}") from exc

        return create

    def _spec(self, task: Task, index: int, files: contextlib.ExitStack) -> ContainerSpec:
        """The executor's container; every stream it opens is closed by `files`."""
        assert task.id is not None
        executor = task.executors[index]

        def opened(what: str, open_fd: Callable[[], int]) -> int:
            try:
                fd = open_fd()
            except FilerError as exc:
                raise TaskFailure(f"{describe_executor(task, index)}: {what} {exc}") from exc
            files.callback(os.close, fd)
            return fd

        stdout = opened("stdout", lambda: self._stream_file(index, executor.stdout, "stdout"))
        stderr = stdout if executor.stderr is not None and executor.stderr == executor.stdout else opened(
            "stderr", lambda: self._stream_file(index, executor.stderr, "stderr"))
        stdin = opened("stdin", lambda: self._stdin(task, index, executor.stdin)) if executor.stdin else None
        resources = task.resources
        return ContainerSpec(
            name=container_name(self.instance, task.id, index),
            image=executor.image,
            command=list(executor.command),
            stdout=stdout,
            stderr=stderr,
            scratch=self.folder.logs,
            stdin=stdin,
            workdir=executor.workdir,
            workdir_folder=self._workdir_folder(task, index),
            env=dict(executor.env or {}),
            mounts=self.mounts,
            labels={LABEL_INSTANCE: self.instance, LABEL_TASK: task.id, LABEL_EXECUTOR: str(index)},
            cpu_cores=float(resources.cpu_cores) if resources and resources.cpu_cores else None,
            ram_bytes=int(resources.ram_gb * 2**30) if resources and resources.ram_gb else None,
            network=self.settings.network,
        )

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        with contextlib.ExitStack() as files:
            spec = self._spec(task, index, files)
            spec.time_limit = time_limit
            try:
                result = await self.engine.run(spec, note)
            except TaskFailure as exc:
                what = describe_executor(task, index)
                raise TaskFailure(f"{what} could not run: {exc}", exc.reason) from exc
            limit = self.settings.log_tail_bytes
            return ExecutorOutcome(
                exit_code=result.exit_code,
                start_time=result.start_time,
                end_time=result.end_time,
                stdout=tail_text(spec.stdout, limit),
                stderr=tail_text(spec.stderr, limit),
                oom_killed=result.oom_killed,
                timed_out=result.timed_out,
                peak_memory_bytes=result.peak_memory_bytes,
                cpu_seconds=result.cpu_seconds,
            )

    async def release(self, task: Task, final_state: State) -> None:
        if self.settings.keeps_area(final_state):
            log.info("task %s: kept its files in %s", task.id, self.folder.root, extra={"task_id": task.id})
            return
        await asyncio.to_thread(self.folder.remove)
