"""ftp: files and folders in both directions, with ftplib in worker threads.

Credentials, first match wins: the URL's user and password, the host's entry in ~/.netrc (the seed
mounts a netrc secret there), the seed's FTP secret as `TESK_FTP_USERNAME`/`TESK_FTP_PASSWORD`, and
finally anonymous. URL paths are relative to the login folder (RFC 1738); `%2F` at the start makes
them absolute. Each operation uses its own connection, so parallel transfers never share one.
"""

from __future__ import annotations

import asyncio
import ftplib
import netrc
import os
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from tesk.filer.base import CHUNK, Progress
from tesk.filer.errors import FilerError, NotFoundError, TransientError, redact
from tesk.config.filer import FilerSettings
from tesk.models import FileType

T = TypeVar("T")


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    user: str
    password: str
    path: str  # relative to the login folder unless it starts with "/"
    url: str


class FtpScheme:
    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings

    def _target(self, url: str) -> _Target:
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise FilerError(f"{redact(url)}: the URL has no host")
        user, password = (
            (unquote(parts.username), unquote(parts.password or "")) if parts.username else ("", "")
        )
        if not user:
            user, password = self._netrc(host) or self._configured() or ("anonymous", "anonymous@")
        raw = parts.path.removeprefix("/")
        return _Target(host, parts.port or 21, user, password, unquote(raw), url)

    @staticmethod
    def _netrc(host: str) -> tuple[str, str] | None:
        path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
        if not os.path.isfile(path):
            return None
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            return None
        return (entry[0], entry[2] or "") if entry and entry[0] else None

    def _configured(self) -> tuple[str, str] | None:
        if not self.settings.ftp_username:
            return None
        password = self.settings.ftp_password.get_secret_value() if self.settings.ftp_password else ""
        return self.settings.ftp_username, password

    @contextmanager
    def _session(self, target: _Target) -> Iterator[tuple[ftplib.FTP, str]]:
        """A logged-in connection and the absolute path of the target; errors become filer errors."""
        where = redact(target.url)
        try:
            ftp = ftplib.FTP(timeout=self.settings.timeout)
            try:
                ftp.connect(target.host, target.port)
                try:
                    ftp.login(target.user, target.password)
                except ftplib.error_perm as exc:
                    raise FilerError(
                        f"{where}: login as {target.user!r} refused: {_said(exc)}; check the FTP user and "
                        "password (in the URL, ~/.netrc, or TESK_FTP_USERNAME/TESK_FTP_PASSWORD)"
                    ) from None
                home = ftp.pwd()
                path = target.path if target.path.startswith("/") else posixpath.join(home, target.path)
                yield ftp, posixpath.normpath(path) if path.strip("/") else "/"
            finally:
                try:
                    if ftp.sock is not None:
                        ftp.quit()
                except (OSError, EOFError, ftplib.Error):
                    ftp.close()
        except FilerError:
            raise
        except ftplib.error_temp as exc:
            raise TransientError(f"{where}: the server answered {_said(exc)}") from None
        except ftplib.error_perm as exc:
            said = _said(exc)
            if said.startswith("550"):
                raise NotFoundError(f"{where}: the server answered {said}") from None
            raise FilerError(f"{where}: the server answered {said}") from None
        except TimeoutError:
            raise TransientError(
                f"{where}: no answer from {target.host} for {self.settings.timeout:g} s (TESK_FILER_TIMEOUT)"
            ) from None
        except (OSError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or "connection closed"
            raise TransientError(f"{where}: cannot talk to {target.host}:{target.port}: {reason}") from None
        except ftplib.Error as exc:
            raise FilerError(f"{where}: unexpected FTP answer: {_said(exc)}") from None

    async def _run(self, url: str, work: Callable[[ftplib.FTP, str], T]) -> T:
        target = self._target(url)

        def call() -> T:
            with self._session(target) as (ftp, path):
                return work(ftp, path)

        return await asyncio.to_thread(call)

    async def kind(self, url: str) -> FileType:
        def work(ftp: ftplib.FTP, path: str) -> FileType:
            if _is_dir(ftp, path):
                return FileType.DIRECTORY
            ftp.voidcmd("TYPE I")
            try:
                ftp.size(path)
            except ftplib.error_perm as exc:
                if not _said(exc).startswith(("500", "502")):
                    raise
                if path not in ftp.nlst(path):
                    raise
            return FileType.FILE

        return await self._run(url, work)

    async def list_files(self, url: str) -> list[str]:
        def work(ftp: ftplib.FTP, path: str) -> list[str]:
            if not _is_dir(ftp, path):
                raise ftplib.error_perm(f"550 {path} is not a folder")
            found: list[str] = []
            _walk(ftp, path, "", found)
            return sorted(found)

        return await self._run(url, work)

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        def work(ftp: ftplib.FTP, path: str) -> None:
            ftp.voidcmd("TYPE I")
            try:
                progress.restart(ftp.size(path))
            except ftplib.error_perm:
                progress.restart()
            try:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise _local_error(url, exc) from None
            with os.fdopen(fd, "wb") as f:

                def got(block: bytes) -> None:
                    try:
                        f.write(block)
                    except OSError as exc:
                        raise _local_error(url, exc) from None
                    progress.advance(len(block))

                ftp.retrbinary(f"RETR {path}", got, blocksize=CHUNK)

        await self._run(url, work)

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        def work(ftp: ftplib.FTP, path: str) -> None:
            progress.restart(src.stat().st_size)
            _make_dirs(ftp, posixpath.dirname(path))
            try:
                f = open(src, "rb")  # noqa: SIM115 (closed by the with below)
            except OSError as exc:
                raise _local_error(url, exc) from None
            with f:
                ftp.storbinary(
                    f"STOR {path}", f, blocksize=CHUNK, callback=lambda b: progress.advance(len(b))
                )

        await self._run(url, work)

    async def close(self) -> None:
        return None


def _local_error(url: str, exc: OSError) -> FilerError:
    """A local file could not be read or written: not the server's fault, not worth a retry."""
    return FilerError(f"{redact(url)}: local file error: {exc.strerror or exc}")


def _said(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_dir(ftp: ftplib.FTP, path: str) -> bool:
    try:
        ftp.cwd(path)
    except ftplib.error_perm:
        return False
    return True


def _walk(ftp: ftplib.FTP, folder: str, rel: str, found: list[str]) -> None:
    """Collect files below `folder`; MLSD when the server has it, else NLST plus a CWD per entry."""
    try:
        entries = [(name, facts.get("type", "file")) for name, facts in ftp.mlsd(folder, facts=["type"])]
    except ftplib.error_perm as exc:
        if not _said(exc).startswith(("500", "502", "504")):
            raise
        entries = []
        for name in ftp.nlst(folder):
            base = posixpath.basename(name.rstrip("/"))
            entries.append((base, "dir" if _is_dir(ftp, posixpath.join(folder, base)) else "file"))
    for name, kind in sorted(entries):
        if name in (".", "..") or kind in ("cdir", "pdir"):
            continue
        child_rel = f"{rel}/{name}" if rel else name
        if kind == "dir":
            _walk(ftp, posixpath.join(folder, name), child_rel, found)
        elif kind == "file":
            found.append(child_rel)


def _make_dirs(ftp: ftplib.FTP, folder: str) -> None:
    """Create `folder` and its parents where missing (MKD of an existing folder is not an error)."""
    current = "/"
    for part in [p for p in folder.split("/") if p]:
        current = posixpath.join(current, part)
        if not _is_dir(ftp, current):
            try:
                ftp.mkd(current)
            except ftplib.error_perm:
                if not _is_dir(ftp, current):  # another transfer may have made it meanwhile
                    raise
