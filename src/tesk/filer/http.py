"""http(s): streaming GET for inputs, PUT for outputs to hosts the operator allows.

Transfers run in a worker thread on the standard library's http.client (through a urllib opener
for proxies and redirects). A plain-http body with a Content-Length goes from the socket to the
file with splice(2) on Linux, never passing through Python: 1.3-1.7 GB/s on loopback here, against
~1.2 GB/s for a `readinto` loop and 1.5-1.9 GB/s for `curl -o /dev/null` (bench/filer_http.py).
TLS and chunked bodies, and other systems, use the loop: `readinto` one reused 1 MiB buffer, write
it. The asyncio clients tried first fell behind (httpx's async streaming: 115-240 MB/s; aiohttp
plus a writer thread: ~0.6-0.8x of the loop). The event loop only waits; a cancelled transfer has
its socket shut down so the thread stops at once, even on a stalled server.

Bodies are kept byte for byte (no transparent decompression). Credentials come from the URL or
~/.netrc and are sent as basic auth, never to another host after a redirect. With
TESK_FILER_DENY_LOCAL_HTTP every connection (redirects included) is checked after name resolution
and made to the checked address, so DNS answers cannot change in between.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import errno
import fcntl
import http.client
import ipaddress
import netrc
import os
import select
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from tesk.filer.base import CHUNK, Progress
from tesk.filer.errors import FilerError, NotFoundError, RefusedError, TransientError, redact
from tesk.config.filer import FilerSettings
from tesk.models import FileType

T = TypeVar("T")

_MAX_REDIRECTS = 10
_TRANSIENT_STATUS = frozenset({408, 425, 429})


def is_local_address(address: str) -> bool:
    """Loopback, link-local (e.g. the 169.254.169.254 cloud metadata service) or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


class _Call:
    """The sockets of one transfer, so a cancelled transfer can be stopped from the event loop."""

    def __init__(self, deny_local: bool) -> None:
        self.deny_local = deny_local
        self.sockets: list[socket.socket] = []
        self.aborted = threading.Event()

    def abort(self) -> None:
        self.aborted.set()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("tesk_filer_http_call")


def _connect(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None, **_: Any
) -> socket.socket:
    """socket.create_connection, checking the resolved address when local targets are refused."""
    call = _CALL.get()
    if call.aborted.is_set():
        raise RefusedError("the transfer was cancelled")
    host, port = address
    target = host
    if call.deny_local:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for info in infos:
            if is_local_address(str(info[4][0])):
                raise RefusedError(
                    f"{host} resolves to {info[4][0]}, a loopback or link-local address; "
                    "this server refuses those (TESK_FILER_DENY_LOCAL_HTTP)"
                )
        target = str(infos[0][4][0])
    sock = socket.create_connection((target, port), timeout, source_address)
    call.sockets.append(sock)
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", CHUNK)
        super().__init__(*args, **kwargs)
        self._create_connection = _connect


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", CHUNK)
        super().__init__(*args, **kwargs)
        self._create_connection = _connect


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """Makes one TLS context, on the first https request (loading the CA store takes ~0.3 s)."""

    _context: ssl.SSLContext | None  # set by HTTPSHandler.__init__ (the `context` argument)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self.do_open(_HTTPSConnection, req, context=self._context)


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects between http and https only, dropping credentials when the host changes."""

    max_redirections = _MAX_REDIRECTS

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise RefusedError(f"a redirect to {redact(newurl)} was refused: only http(s) is followed")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc.lower() != urlsplit(req.full_url).netloc.lower():
            new.remove_header("Authorization")
        return new


class HttpScheme:
    """GET and PUT through one urllib opener, each transfer in a worker thread."""

    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings
        self._opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(),
            urllib.request.UnknownHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            _RedirectHandler(),
            urllib.request.HTTPErrorProcessor(),
            _HTTPHandler(),
            _HTTPSHandler(),
        ):
            self._opener.add_handler(handler)

    async def kind(self, url: str) -> FileType:
        return FileType.FILE

    async def list_files(self, url: str) -> list[str]:
        raise RefusedError(
            f"{redact(url)}: http(s) has no folder listing; give each file as its own input of type FILE"
        )

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        def work() -> None:
            with self._open(self._request(url, "GET"), url, "download") as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                progress.restart(total)
                try:
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
                except OSError as exc:
                    raise _local_error(url, exc) from None
                with os.fdopen(fd, "wb", buffering=0) as out:
                    if _can_splice(resp):
                        _splice_body(resp, out, url, progress, self.settings.timeout)
                    else:
                        _copy_body(resp, out, url, progress)
                if total is not None and progress.done != total:
                    raise http.client.IncompleteRead(b"", total - progress.done)

        await self._run(url, work)

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        parts = urlsplit(url)
        allowed = self.settings.put_hosts
        if not ({"*", (parts.hostname or "").lower(), parts.netloc.rpartition("@")[2].lower()} & allowed):
            raise RefusedError(
                f"{redact(url)}: HTTP PUT of outputs to {parts.hostname} is not enabled on this server "
                "(operators list allowed hosts in TESK_FILER_HTTP_PUT_HOSTS)"
            )

        def work() -> None:
            size = src.stat().st_size
            progress.restart(size)
            with open(src, "rb") as f:
                request = self._request(url, "PUT", _Counting(f, progress))
                request.add_header("Content-Length", str(size))
                request.add_header("Content-Type", "application/octet-stream")
                with self._open(request, url, "upload"):
                    return

        await self._run(url, work)

    async def close(self) -> None:
        return None

    def _request(self, url: str, method: str, data: Any = None) -> urllib.request.Request:
        """A request without userinfo in the URL; credentials (URL, then ~/.netrc) as basic auth."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise FilerError(f"{redact(url)}: not a valid http(s) URL")
        netloc = parts.netloc.rpartition("@")[2]
        request = urllib.request.Request(
            urlunsplit(parts._replace(netloc=netloc)),
            data=data,
            method=method,
            headers={"User-Agent": "tesk-filer", "Accept-Encoding": "identity"},
        )
        user, password = (
            (unquote(parts.username), unquote(parts.password or ""))
            if parts.username
            else _netrc(parts.hostname)
        )
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        if self.settings.deny_local_http:
            try:
                local = is_local_address(parts.hostname)
            except ValueError:
                local = False
            if local:
                raise RefusedError(
                    f"{redact(url)}: {parts.hostname} is a loopback or link-local address; "
                    "this server refuses those (TESK_FILER_DENY_LOCAL_HTTP)"
                )
        return request

    def _open(self, request: urllib.request.Request, url: str, action: str) -> http.client.HTTPResponse:
        try:
            return self._opener.open(request, timeout=self.settings.timeout)
        except urllib.error.HTTPError as exc:
            raise _status_error(exc, url, action) from None

    async def _run(self, url: str, work: Callable[[], None]) -> None:
        """Run `work` in a thread with its own call state; map errors; stop it on cancellation."""
        call = _Call(self.settings.deny_local_http)

        def guarded() -> None:
            _CALL.set(call)
            try:
                work()
            except FilerError:
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise _network_error(exc, url, self.settings.timeout) from None

        try:
            await asyncio.to_thread(guarded)
        except asyncio.CancelledError:
            call.abort()
            raise


class _Counting:
    """A file object for http.client's body loop that reports progress (and enforces its limits)."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self._f = f
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        block = self._f.read(size)
        self._progress.advance(len(block))
        return block


def _copy_body(resp: http.client.HTTPResponse, out: BinaryIO, url: str, progress: Progress) -> None:
    """The portable body loop: `readinto` one reused buffer, write it."""
    buf = memoryview(bytearray(CHUNK))
    while n := resp.readinto(buf):
        _write(out, buf[:n], url)
        progress.advance(n)


def _write(out: BinaryIO, data: bytes | memoryview, url: str) -> None:
    try:
        out.write(data)
    except OSError as exc:
        raise _local_error(url, exc) from None


def _can_splice(resp: http.client.HTTPResponse) -> bool:
    """Whether the body can go socket -> file inside the kernel: Linux, plain TCP (an http URL, so
    not TLS, even through a proxy), and a Content-Length body (not chunked)."""
    return (
        hasattr(os, "splice")
        and urlsplit(resp.geturl()).scheme == "http"
        and not resp.chunked
        and resp.length is not None
    )


def _splice_body(
    resp: http.client.HTTPResponse, out: BinaryIO, url: str, progress: Progress, timeout: float | None
) -> None:
    """Move the body from the socket to the file through a pipe with splice(2), never through Python.

    On loopback this is what lets the filer keep pace with `curl -o /dev/null` (bench/filer_http.py):
    the read-and-write loop copies every byte twice through user space. What http.client has
    already buffered is written first. The socket is non-blocking under its timeout, so each splice
    waits on poll() with the same per-read timeout; a cancel shuts the socket down, which ends it.
    """
    buffered = resp.peek()[: resp.length or 0]
    if buffered:
        resp.read(len(buffered))
        _write(out, buffered, url)
        progress.advance(len(buffered))
    left = resp.length or 0
    if left == 0:
        return  # all of it was buffered (http.client has closed the response)
    sock = resp.fileno()
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a smaller pipe only means more calls
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, CHUNK)
        to_file = _PipeToFile(read_end, out, url)
        while left > 0:
            if not poller.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError("timed out")
            try:
                n = os.splice(sock, write_end, min(left, CHUNK), flags=_SPLICE_F_MOVE)
            except BlockingIOError:
                continue
            if n == 0:
                break  # the server closed early (or the transfer was cancelled): IncompleteRead follows
            to_file.move(n)
            left -= n
            progress.advance(n)
    finally:
        os.close(read_end)
        os.close(write_end)


_SPLICE_F_MOVE = 1


class _PipeToFile:
    """Empties the pipe into the file: splice(2), or read and write where the file system has no
    splice support (the first refusal switches for good)."""

    def __init__(self, pipe: int, out: BinaryIO, url: str) -> None:
        self.pipe, self.out, self.url = pipe, out, url
        self.splice = True

    def move(self, n: int) -> None:
        while n > 0:
            if self.splice:
                try:
                    moved = os.splice(self.pipe, self.out.fileno(), n, flags=_SPLICE_F_MOVE)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise _local_error(self.url, exc) from None
                    moved = 0
                if moved:
                    n -= moved
                    continue
                self.splice = False
            data = os.read(self.pipe, n)
            _write(self.out, data, self.url)
            n -= len(data)


def _local_error(url: str, exc: OSError) -> FilerError:
    """Writing the task area failed (disk full, quota): not the server's fault, not worth a retry."""
    return FilerError(f"{redact(url)}: cannot write the file into the task area: {exc.strerror or exc}")


def _netrc(host: str) -> tuple[str, str]:
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not os.path.isfile(path):
        return "", ""
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return "", ""
    return (entry[0], entry[2] or "") if entry and entry[0] else ("", "")


def _status_error(exc: urllib.error.HTTPError, url: str, action: str) -> FilerError:
    """A non-2xx answer as an error that quotes the server (first 200 characters of its body)."""
    if 300 <= exc.code < 400:
        return FilerError(
            f"{redact(url)}: {action} failed, more than {_MAX_REDIRECTS} redirects or a redirect "
            f"that cannot be followed ({exc.code} {exc.reason}); check the URL"
        )
    said = f"{exc.code} {exc.reason or ''}".strip()
    try:
        body = exc.read(2048).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        body = ""
    content_type = exc.headers.get("Content-Type", "text/plain") if exc.headers else "text/plain"
    if body and ("text" in content_type or "json" in content_type or "xml" in content_type):
        said += f": {' '.join(body.split())[:200]}"
    exc.close()
    where = f"{redact(url)}: {action} failed, the server answered {said}"
    if exc.code in (404, 410):
        return NotFoundError(f"{where}; check the URL")
    if exc.code in (401, 403):
        return FilerError(
            f"{where}; the server wants credentials (a user in the URL, ~/.netrc) or a signed URL"
        )
    if exc.code >= 500 or exc.code in _TRANSIENT_STATUS:
        return TransientError(where)
    return FilerError(where)


def _network_error(exc: Exception, url: str, timeout: float) -> FilerError:
    where = redact(url)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, RefusedError):
        return RefusedError(f"{where}: {reason}")
    if isinstance(reason, TimeoutError):
        return TransientError(
            f"{where}: no answer or data from the server for {timeout:g} s (TESK_FILER_TIMEOUT)"
        )
    if isinstance(reason, http.client.IncompleteRead):
        return TransientError(
            f"{where}: the connection ended before the whole body arrived ({reason.expected} bytes missing)"
        )
    if isinstance(reason, ssl.SSLCertVerificationError):
        return FilerError(
            f"{where}: the server's TLS certificate is not trusted ({reason.verify_message}); "
            "use a URL whose certificate a public CA signed, or ask the operator to add the CA (SSL_CERT_FILE)"
        )
    if isinstance(reason, socket.gaierror):
        return TransientError(f"{where}: cannot resolve the host name: {reason.strerror}")
    if isinstance(reason, (ConnectionError, http.client.HTTPException)):
        return TransientError(
            f"{where}: the connection failed: {reason.__class__.__name__} {reason}".rstrip()
        )
    if isinstance(reason, OSError):
        return TransientError(f"{where}: cannot connect: {reason.strerror or reason}")
    if isinstance(exc, ValueError):
        return FilerError(f"{where}: not a valid URL ({exc})")
    return FilerError(f"{where}: {exc.__class__.__name__}: {exc}")
