"""http(s): streaming GET for inputs, PUT for outputs to hosts the operator allows.

Transfers run in a worker thread on the standard library's http.client (through a urllib opener
for proxies and redirects): the body is read with `readinto` into one reused 1 MiB buffer and
written from the same thread. On loopback this keeps pace with curl writing the same file, where
the asyncio clients tried first fell behind (httpx's async streaming: 115-240 MB/s against curl's
~1 GB/s to /dev/null; aiohttp plus a writer thread: ~0.6-0.8x of this; see bench/filer_http.py).
The event loop only waits; a cancelled transfer has its socket shut down so the thread stops at
once, even on a stalled server.

Bodies are kept byte for byte (no transparent decompression). Credentials come from the URL or
~/.netrc and are sent as basic auth, never to another host after a redirect. With
TESK_FILER_DENY_LOCAL_HTTP every connection (redirects included) is checked after name resolution
and made to the checked address, so DNS answers cannot change in between.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import http.client
import ipaddress
import netrc
import os
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
from tesk.filer.settings import FilerSettings
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
                    buf = memoryview(bytearray(CHUNK))
                    while n := resp.readinto(buf):
                        try:
                            out.write(buf[:n])
                        except OSError as exc:
                            raise _local_error(url, exc) from None
                        progress.advance(n)
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
