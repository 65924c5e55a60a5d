"""file:// (and bare absolute paths, as Cromwell sends them): only inside the allowed host folders.

Allowed folders are `TESK_FILE_ROOTS`, plus, in the seed's shared-filesystem mode, `HOST_BASE_PATH`:
a URL under it is read at the same place below `CONTAINER_BASE_PATH`, where the filer Job sees that
folder mounted. Every path is checked after resolving symlinks, so a link inside an allowed folder
cannot lead the filer elsewhere on the host.
"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tesk.filer.area import is_inside
from tesk.filer.base import Progress
from tesk.filer.errors import FilerError, NotFoundError, RefusedError, redact
from tesk.config.filer import FilerSettings
from tesk.models import FileType

_COPY_BLOCK = 8 * 1024 * 1024


class FileScheme:
    """Copies between the task area and allowed host folders (kernel-side copies via sendfile)."""

    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings
        self.roots = settings.allowed_roots

    def local_path(self, url: str) -> Path:
        """The checked host path of a file URL or bare path; RefusedError outside the allowed roots."""
        if url.startswith("/"):
            raw = url
        else:
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise RefusedError(f"{redact(url)}: file URLs must not name a host ({parts.netloc!r})")
            raw = unquote(parts.path)
        if not raw.startswith("/") or "\x00" in raw:
            raise RefusedError(f"{redact(url)}: a file URL needs an absolute path")
        host_base, container_base = self.settings.host_base_path, self.settings.container_base_path
        if host_base and container_base:
            base = host_base.rstrip("/") or "/"
            if raw == base or raw.startswith(base.rstrip("/") + "/"):
                raw = container_base.rstrip("/") + "/" + raw[len(base) :].lstrip("/")
        real = Path(os.path.realpath(raw))
        if not any(is_inside(real, root) for root in self.roots):
            allowed = ":".join(str(r) for r in self.roots) or "none"
            raise RefusedError(
                f"{redact(url)}: {raw} is outside the host folders this server may use "
                f"(TESK_FILE_ROOTS: {allowed}); ask the operator or use another URL scheme"
            )
        return real

    async def kind(self, url: str) -> FileType:
        path = self.local_path(url)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise NotFoundError(f"{redact(url)}: no such file or folder") from None
        return FileType.DIRECTORY if stat.S_ISDIR(mode) else FileType.FILE

    async def list_files(self, url: str) -> list[str]:
        top = self.local_path(url)
        if not top.is_dir():
            raise NotFoundError(f"{redact(url)}: no such folder")
        return await asyncio.to_thread(self._walk, top)

    def _walk(self, top: Path) -> list[str]:
        """Files below `top` whose real path stays inside the allowed roots."""
        found: list[str] = []
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                real = Path(os.path.realpath(path))
                if real.is_file() and any(is_inside(real, root) for root in self.roots):
                    found.append(path.relative_to(top).as_posix())
        return found

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        src = self.local_path(url)
        if not src.is_file():
            raise NotFoundError(f"{redact(url)}: no such file")
        progress.restart(src.stat().st_size)
        await asyncio.to_thread(_copy, src, dest, progress, url)

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        dest = self.local_path(url)
        progress.restart(src.stat().st_size)
        await asyncio.to_thread(_copy_into_place, src, dest, progress, url)

    async def close(self) -> None:
        return None


def _copy(src: Path, dest: Path, progress: Progress, url: str) -> None:
    """Copy with os.sendfile in blocks, reporting progress (dest is created, never followed)."""
    try:
        with open(src, "rb") as fin:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fout:
                offset = 0
                while sent := os.sendfile(fout.fileno(), fin.fileno(), offset, _COPY_BLOCK):
                    offset += sent
                    progress.advance(sent)
    except OSError as exc:
        raise FilerError(f"{redact(url)}: copy failed: {exc.strerror or exc}") from None


def _copy_into_place(src: Path, dest: Path, progress: Progress, url: str) -> None:
    """Copy to a temporary name next to `dest`, then rename: readers never see half a file."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise FilerError(f"{redact(url)}: cannot write there: {exc.strerror or exc}") from None
    try:
        _copy(src, Path(tmp), progress, url)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
