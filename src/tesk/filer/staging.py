"""Stage a task's inputs into its area and its outputs out of it: the part common to all schemes.

Here live type inference, folder recursion, TES 1.1 wildcards with `path_prefix`, inline content,
parallelism (`TESK_FILER_PARALLEL` file transfers at once), retries and the outputs log; schemes
only move single files (`tesk.filer.base.Scheme`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from tesk.filer.area import TaskArea
from tesk.filer.base import Log, Progress, Scheme, SchemeRegistry, human, join_url, with_retries
from tesk.filer.errors import FilerError, NotFoundError, RefusedError, StagingError, redact
from tesk.config.filer import FilerSettings
from tesk.models import FileType, Input, Output, OutputFileLog, has_wildcards

T = TypeVar("T")


def as_url(url: str) -> str:
    """Bare absolute paths (Cromwell sends them) are file URLs."""
    return "file://" + quote(url) if url.startswith("/") else url


class _Stopped(Exception):
    """A transfer that was not started because another one of the same run had failed."""


class _Run:
    """Shared state of one staging run: schemes, the parallelism limit, and the stop flag."""

    def __init__(self, area: TaskArea, settings: FilerSettings, log: Log) -> None:
        self.area = area
        self.settings = settings
        self.log = log
        self.registry = SchemeRegistry(settings)
        self.limit = asyncio.Semaphore(max(1, settings.parallel))
        self.stopped = False

    async def limited(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op` under the parallelism limit, with retries; nothing new starts after a stop."""
        async with self.limit:
            if self.stopped:
                raise _Stopped
            return await with_retries(op, self.settings, self.log)

    async def move(self, label: str, op: Callable[[Progress], Awaitable[None]]) -> Progress:
        """One file transfer under the limit, retried, with progress and the transfer timeout."""
        async with self.limit:
            if self.stopped:
                raise _Stopped
            progress = Progress(label, None, self.settings, self.log)
            await with_retries(lambda: op(progress), self.settings, self.log, progress)
            return progress


async def _gather(jobs: list[Awaitable[T]], run: _Run) -> list[T]:
    """Run jobs together; after the first failure start nothing new, then raise that failure."""

    async def guarded(job: Awaitable[T]) -> T:
        try:
            return await job
        except FilerError:
            run.stopped = True
            raise

    results = await asyncio.gather(*(guarded(j) for j in jobs), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, _Stopped)]
    if errors:
        raise errors[0]
    if any(isinstance(r, _Stopped) for r in results):
        raise _Stopped
    return results  # type: ignore[return-value]


async def stage_inputs(inputs: list[Input], area: TaskArea, settings: FilerSettings, log: Log) -> None:
    """Download every input (or write its inline content) to the host path of its container path.

    Raises a FilerError whose message is the task's system_logs line for the first failure; the
    other transfers already running are finished, and none is started after it.
    """
    run = _Run(area, settings, log)
    try:
        await _gather([_stage_input(item, run) for item in inputs], run)
    finally:
        await run.registry.close()


async def _stage_input(item: Input, run: _Run) -> None:
    if item.content:
        dest = run.area.prepare_parent(item.path)
        data = item.content.encode("utf-8")
        await asyncio.to_thread(_write_new, dest, data)
        run.log(f"input {item.path}: wrote {human(len(data))} of inline content")
        return
    if not item.url:
        raise RefusedError(f"input {item.path}: needs a url or a content")
    url = as_url(item.url)
    scheme = run.registry.for_url(url)
    kind = item.type or await run.limited(lambda: scheme.kind(url))
    start = time.monotonic()
    if kind == FileType.FILE:
        progress = await _download(scheme, url, item.path, run)
        run.log(f"input {item.path}: {redact(item.url)}, {human(progress.done)} in {progress.elapsed:.1f} s")
        return
    rels = await run.limited(lambda: scheme.list_files(url))
    _make_folder(run.area, item.path)
    done = await _gather(
        [_download(scheme, join_url(url, rel), f"{item.path}/{rel}", run) for rel in rels], run
    )
    total = sum(p.done for p in done)
    run.log(
        f"input {item.path}: {redact(item.url)}, folder of {len(rels)} files, {human(total)} "
        f"in {time.monotonic() - start:.1f} s"
    )


def _make_folder(area: TaskArea, container_path: str) -> None:
    """Create the folder of a DIRECTORY input (an empty remote folder stays an empty folder)."""
    area.prepare_parent(container_path).mkdir(exist_ok=True)


async def _download(scheme: Scheme, url: str, container_path: str, run: _Run) -> Progress:
    dest = run.area.prepare_parent(container_path)
    return await run.move(f"download {redact(url)}", lambda progress: scheme.download(url, dest, progress))


def _write_new(dest: Path, data: bytes) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class _Upload:
    container_path: str
    host_path: Path
    url: str


async def stage_outputs(
    outputs: list[Output], area: TaskArea, settings: FilerSettings, log: Log
) -> list[OutputFileLog]:
    """Upload every output; return one OutputFileLog per uploaded file (folders flattened).

    Every output is attempted even when another fails; failures are logged one line each and then
    raised together as a StagingError that still carries the files that did upload. A wildcard that
    matches nothing is not an error (workflow engines use globs for optional files).
    """
    run = _Run(area, settings, log)
    failures: list[str] = []
    logs: list[OutputFileLog] = []
    try:
        results = await asyncio.gather(*(_stage_output(out, run) for out in outputs), return_exceptions=True)
        for out, result in zip(outputs, results, strict=True):
            if isinstance(result, FilerError):
                failures.append(str(result))
                if isinstance(result, StagingError):
                    logs.extend(result.outputs)
            elif isinstance(result, BaseException):
                raise result
            else:
                logs.extend(result)
    finally:
        await run.registry.close()
    if failures:
        count = f"{len(failures)} of {len(outputs)} outputs failed" if len(outputs) > 1 else "output failed"
        raise StagingError(f"{count}: " + " | ".join(failures), logs)
    return logs


async def _stage_output(out: Output, run: _Run) -> list[OutputFileLog]:
    loop = asyncio.get_running_loop()

    def note(line: str) -> None:
        loop.call_soon_threadsafe(run.log, line)

    # Walking the area is file-system work: a thread, so the event loop (the API's) stays free.
    uploads = await asyncio.to_thread(_plan_output, out, run.area, note)
    if not uploads:
        return []
    scheme = run.registry.for_url(uploads[0].url)
    start = time.monotonic()
    logs: list[OutputFileLog] = []
    errors: list[str] = []
    results = await asyncio.gather(*(_upload(scheme, u, run) for u in uploads), return_exceptions=True)
    for upload, result in zip(uploads, results, strict=True):
        if isinstance(result, FilerError):
            errors.append(str(result))
            run.log(str(result))
        elif isinstance(result, BaseException):
            raise result
        else:
            logs.append(result)
    if errors:
        raise StagingError(
            errors[0] if len(errors) == 1 else f"{errors[0]} (and {len(errors) - 1} more)", logs
        )
    total = sum(int(entry.size_bytes) for entry in logs)
    what = f"{len(logs)} files" if len(logs) != 1 else "1 file"
    run.log(
        f"output {out.path}: {what}, {human(total)} to {redact(out.url)} in {time.monotonic() - start:.1f} s"
    )
    return logs


def _plan_output(out: Output, area: TaskArea, note: Log) -> list[_Upload]:
    """The files one output stands for: a file, a folder's files, or every wildcard match."""
    url = as_url(out.url)
    if not has_wildcards(out.path):
        try:
            host = area.resolve(out.path)
        except NotFoundError:
            raise NotFoundError(
                f"output {out.path}: the executors did not create it, so nothing was uploaded to {redact(out.url)}"
            ) from None
        except RefusedError as exc:
            raise RefusedError(f"output {exc}; nothing was uploaded to {redact(out.url)}") from None
        return _expand(out.path, host, url, out.type, area, note)
    prefix = (out.path_prefix or "").rstrip("/")
    matches = area.glob(out.path, note)
    if not matches:
        note(f"output {out.path}: no file matched the pattern; nothing to upload")
        return []
    uploads: list[_Upload] = []
    for match in matches:
        if not match.startswith(prefix + "/"):
            raise RefusedError(
                f"output {out.path}: path_prefix {out.path_prefix!r} is not a prefix of the match {match}; "
                "path_prefix must be the leading part of the path that is left out of the URL"
            )
        target = join_url(url, match[len(prefix) + 1 :])
        uploads.extend(_expand(match, area.resolve(match), target, None, area, note))
    return uploads


def _expand(
    container_path: str, host: Path, url: str, declared: FileType | None, area: TaskArea, note: Log
) -> list[_Upload]:
    if not host.is_dir():
        if declared == FileType.DIRECTORY:
            note(f"output {container_path}: declared a DIRECTORY but is a file; uploaded as a file")
        return [_Upload(container_path, host, url)]
    if declared == FileType.FILE:
        note(f"output {container_path}: declared a FILE but is a folder; uploaded its files")
    uploads = []
    for path in area.walk_files(host, note):
        rel = path.relative_to(host).as_posix()
        real = area.resolve(area.container_path(path))
        uploads.append(_Upload(f"{container_path.rstrip('/')}/{rel}", real, join_url(url, rel)))
    if not uploads:
        note(f"output {container_path}: the folder is empty; nothing to upload")
    return uploads


async def _upload(scheme: Scheme, upload: _Upload, run: _Run) -> OutputFileLog:
    await run.move(
        f"upload {redact(upload.url)}", lambda progress: scheme.upload(upload.host_path, upload.url, progress)
    )
    size = upload.host_path.stat().st_size
    return OutputFileLog(url=redact(upload.url), path=upload.container_path, size_bytes=str(size))
