"""The `Scheme` plug-in protocol, the registry that picks one per URL, retries and progress.

A scheme moves single files and lists folders; everything common (folder recursion, wildcards,
type inference, retries, parallelism, the outputs log) lives in `tesk.filer.staging`, so adding a
storage system is one module with four methods and one registry entry.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from tesk.filer.errors import RefusedError, TransferTimeout, TransientError, redact
from tesk.config.filer import FilerSettings
from tesk.models import FileType

T = TypeVar("T")
Log = Callable[[str], None]

CHUNK = 1024 * 1024
"""Bytes read or written at a time: large enough for throughput, small enough to bound memory."""


class Scheme(Protocol):
    """One storage system. URLs passed in are full URLs of this scheme; folder URLs may end in `/`.

    Methods raise `NotFoundError` for a missing file or folder, `TransientError` when retrying may
    help, and `FilerError` otherwise, each with a message that names the URL via `redact`.
    """

    async def kind(self, url: str) -> FileType:
        """Whether the URL names a file or a folder (NotFoundError when neither)."""
        ...

    async def list_files(self, url: str) -> list[str]:
        """Relative `/`-separated paths of every file below a folder URL, recursively."""
        ...

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        """Write the file at `url` to `dest` (parents exist), reporting bytes to `progress`."""
        ...

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        """Store the local file `src` at `url`, creating remote folders as needed."""
        ...

    async def close(self) -> None:
        """Release connections and clients."""
        ...


SCHEMES: dict[str, str] = {
    "http": "tesk.filer.http:HttpScheme",
    "https": "tesk.filer.http:HttpScheme",
    "ftp": "tesk.filer.ftp:FtpScheme",
    "s3": "tesk.filer.s3:S3Scheme",
    "gs": "tesk.filer.objstore:ObjectStoreScheme",
    "az": "tesk.filer.objstore:ObjectStoreScheme",
    "file": "tesk.filer.file:FileScheme",
}
"""URL scheme -> `module:class`; modules are imported on first use so boto3 etc. load only if needed."""


class SchemeRegistry:
    """Creates one scheme instance per storage system for the length of one staging run."""

    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings
        self._instances: dict[str, Scheme] = {}

    def for_url(self, url: str) -> Scheme:
        name = urlsplit(url).scheme.lower()
        if name not in SCHEMES:
            known = ", ".join(sorted(SCHEMES))
            raise RefusedError(
                f"{redact(url)}: unsupported URL scheme {name or '(none)'!r}; use one of {known}"
            )
        if name not in self.settings.enabled_schemes:
            hint = "set TESK_FILE_ROOTS" if name == "file" else "see TESK_FILER_SCHEMES"
            raise RefusedError(f"{redact(url)}: {name}:// is not enabled on this server ({hint})")
        ref = SCHEMES[name]
        if ref not in self._instances:
            module, _, cls = ref.partition(":")
            self._instances[ref] = getattr(importlib.import_module(module), cls)(self.settings)
        return self._instances[ref]

    async def close(self) -> None:
        for scheme in self._instances.values():
            await scheme.close()
        self._instances.clear()


class Progress:
    """Counts the bytes of one transfer, logs progress for large ones, enforces the transfer timeout.

    `advance` may be called from worker threads (ftplib, boto3), so log lines are handed to the
    event loop; the timeout check raises inside the transfer's own loop, which aborts it.
    """

    def __init__(self, label: str, total: int | None, settings: FilerSettings, log: Log) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._settings = settings
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._start = time.monotonic()
        self._next_report = self._start + settings.progress_interval
        self._lock = threading.Lock()

    def restart(self, total: int | None = None) -> None:
        """Start counting again (a retry begins from zero)."""
        self.done = 0
        if total is not None:
            self.total = total
        self._start = time.monotonic()
        self._next_report = self._start + self._settings.progress_interval

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
        now = time.monotonic()
        limit = self._settings.transfer_timeout
        if limit and now - self._start > limit:
            raise TransferTimeout(
                f"{self.label}: not finished after {limit:g} s (TESK_FILER_TRANSFER_TIMEOUT); "
                f"{human(self.done)} transferred"
            )
        if now >= self._next_report and max(self.done, self.total or 0) >= self._settings.progress_min_bytes:
            self._next_report = now + self._settings.progress_interval
            of = f" of {human(self.total)} ({100 * self.done // self.total}%)" if self.total else ""
            line = f"{self.label}: {human(self.done)}{of} after {now - self._start:.0f} s"
            self._loop.call_soon_threadsafe(self._log, line)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start


def human(n: int | None) -> str:
    """Byte counts as people read them (binary units)."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


async def with_retries(
    op: Callable[[], Awaitable[T]], settings: FilerSettings, log: Log, progress: Progress | None = None
) -> T:
    """Run `op`, retrying `TransientError` with exponential backoff; other errors pass through.

    Each retry is logged (the task's owner sees a flaky server) and the last error says how many
    attempts were made.
    """
    attempts = settings.retries + 1
    delay = settings.retry_backoff
    attempt = 1
    while True:
        try:
            return await op()
        except TransientError as exc:
            if attempt >= attempts:
                if attempts == 1:
                    raise
                raise TransientError(f"{exc} (gave up after {attempts} attempts)") from exc
            attempt += 1
            log(f"{exc}; retrying in {delay:g} s (attempt {attempt} of {attempts})")
            await asyncio.sleep(delay)
            delay *= 2
            if progress is not None:
                progress.restart()


_ENCODED_PATHS = frozenset({"http", "https", "ftp", "file"})
"""Schemes whose URL paths are percent-encoded; object-store keys (s3, gs, az) are written raw."""


def join_url(base: str, rel: str) -> str:
    """`base` as a folder URL with `rel` (a `/`-separated relative path) appended."""
    parts = urlsplit(base)
    if parts.scheme.lower() in _ENCODED_PATHS:
        rel = quote(rel, safe="/")
    path = parts.path.rstrip("/") + "/" + rel.lstrip("/")
    return parts._replace(path=path).geturl()


async def write_chunks(chunks: AsyncIterator[bytes], dest: Path, progress: Progress) -> None:
    """Stream chunks to `dest` in CHUNK blocks written by a thread while the next block arrives.

    The event loop (the API server's, in the local backend) never waits on the disk, memory stays
    at about two blocks, and `dest` is created without following a symlink.
    """
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        pending: asyncio.Future[Any] | None = None
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
            progress.advance(len(chunk))
            if len(buf) >= CHUNK:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(f.write, buf))
                buf = bytearray()
        if pending is not None:
            await pending
        if buf:
            await asyncio.to_thread(f.write, buf)


async def read_blocks(src: Path, progress: Progress) -> AsyncIterator[bytes]:
    """The bytes of a local file in CHUNK blocks, each read by a worker thread."""
    f = await asyncio.to_thread(open, src, "rb")
    with f:
        while block := await asyncio.to_thread(f.read, CHUNK):
            progress.advance(len(block))
            yield block
