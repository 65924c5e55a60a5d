"""http(s): streaming GET for inputs, PUT for outputs to hosts the operator allows.

aiohttp rather than httpx: on this project's loopback benchmark httpx's async streaming reached
115-240 MB/s where curl reaches ~1 GB/s, and aiohttp ~0.7-1.4 GB/s (bench/filer_http.py); the
files staged here are often many GB. Bodies are kept byte for byte (no transparent decompression),
written in 1 MiB blocks by a worker thread so the event loop (the API server's, in the local
backend) never waits on the disk. Credentials for a host come from the URL or ~/.netrc.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tesk.filer.base import CHUNK, Progress, read_blocks, write_chunks
from tesk.filer.errors import FilerError, NotFoundError, RefusedError, TransientError, redact
from tesk.filer.settings import FilerSettings
from tesk.models import FileType

_MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT_STATUS = frozenset({408, 425, 429})


def is_local_address(address: str) -> bool:
    """Loopback, link-local (e.g. the 169.254.169.254 cloud metadata service) or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


class _GuardedResolver(AbstractResolver):
    """Resolves like the default resolver but refuses names that lead to local addresses.

    The check runs when a connection is made, so redirects and DNS answers that change between a
    check and the connection (rebinding) are covered too.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if is_local_address(result["host"]):
                raise RefusedError(
                    f"{host} resolves to {result['host']}, a loopback or link-local address; "
                    "this server refuses those (TESK_FILER_DENY_LOCAL_HTTP)"
                )
        return results

    async def close(self) -> None:
        await self._inner.close()


class HttpScheme:
    """GET and PUT over one aiohttp session per staging run."""

    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver() if self.settings.deny_local_http else None,
                limit=max(4, self.settings.parallel * 2),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.settings.timeout, sock_read=self.settings.timeout
                ),
                trust_env=True,
                auto_decompress=False,
                headers={"Accept-Encoding": "identity", "User-Agent": "tesk-filer"},
            )
        return self._session

    def _check_target(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        if not host:
            raise RefusedError(f"{redact(url)}: the URL has no host")
        if self.settings.deny_local_http:
            try:
                local = is_local_address(host)
            except ValueError:
                return
            if local:
                raise RefusedError(
                    f"{redact(url)}: {host} is a loopback or link-local address; "
                    "this server refuses those (TESK_FILER_DENY_LOCAL_HTTP)"
                )

    async def kind(self, url: str) -> FileType:
        return FileType.FILE

    async def list_files(self, url: str) -> list[str]:
        raise RefusedError(
            f"{redact(url)}: http(s) has no folder listing; give each file as its own input of type FILE"
        )

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_target(current)
            async with (
                _translate(url, self.settings.timeout),
                self._client().get(current, allow_redirects=False) as resp,
            ):
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    current = urljoin(current, resp.headers["Location"])
                    continue
                await _raise_for_status(resp, url, "download")
                progress.restart(resp.content_length)
                await write_chunks(resp.content.iter_chunked(CHUNK), dest, progress)
                if resp.content_length is not None and progress.done != resp.content_length:
                    raise TransientError(
                        f"{redact(url)}: the connection ended after {progress.done} of "
                        f"{resp.content_length} bytes"
                    )
                return
        raise FilerError(f"{redact(url)}: more than {_MAX_REDIRECTS} redirects; check the URL")

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        parts = urlsplit(url)
        allowed = self.settings.put_hosts
        if not ({"*", (parts.hostname or "").lower(), parts.netloc.rpartition("@")[2].lower()} & allowed):
            raise RefusedError(
                f"{redact(url)}: HTTP PUT of outputs to {parts.hostname} is not enabled on this server "
                "(operators list allowed hosts in TESK_FILER_HTTP_PUT_HOSTS)"
            )
        self._check_target(url)
        size = src.stat().st_size
        progress.restart(size)
        async with (
            _translate(url, self.settings.timeout),
            self._client().put(
                url,
                data=read_blocks(src, progress),
                headers={"Content-Length": str(size)},
                allow_redirects=False,
            ) as resp,
        ):
            await _raise_for_status(resp, url, "upload")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _raise_for_status(resp: aiohttp.ClientResponse, url: str, action: str) -> None:
    """Turn a non-2xx answer into an error that quotes the server (first 200 characters of its body)."""
    if 200 <= resp.status < 300:
        return
    said = f"{resp.status} {resp.reason or ''}".strip()
    try:
        body = (await resp.content.read(2048)).decode("utf-8", "replace").strip()
    except (TimeoutError, aiohttp.ClientError):
        body = ""
    content_type = resp.headers.get("Content-Type", "text/plain")
    if body and ("text" in content_type or "json" in content_type or "xml" in content_type):
        said += f": {' '.join(body.split())[:200]}"
    where = f"{redact(url)}: {action} failed, the server answered {said}"
    if resp.status in (404, 410):
        raise NotFoundError(f"{where}; check the URL")
    if resp.status in (401, 403):
        raise FilerError(
            f"{where}; the server wants credentials (a user in the URL, ~/.netrc) or a signed URL"
        )
    if resp.status >= 500 or resp.status in _TRANSIENT_STATUS:
        raise TransientError(where)
    raise FilerError(where)


class _translate:
    """Async context manager mapping aiohttp's exceptions to filer errors for one URL."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None or isinstance(exc, FilerError):
            return False
        where = redact(self.url)
        refused = exc.__cause__ or getattr(exc, "os_error", None)
        if isinstance(refused, RefusedError):
            raise RefusedError(f"{where}: {refused}") from None
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            raise TransientError(
                f"{where}: no answer or data from the server for {self.timeout:g} s (TESK_FILER_TIMEOUT)"
            ) from None
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise TransientError(
                f"{where}: cannot connect: {exc.os_error.strerror or exc.os_error}"
            ) from None
        if isinstance(exc, aiohttp.ClientPayloadError):
            raise TransientError(
                f"{where}: the connection ended before the whole body arrived ({exc})"
            ) from None
        if isinstance(exc, aiohttp.InvalidURL):
            raise FilerError(f"{where}: not a valid URL") from None
        if isinstance(exc, aiohttp.ClientError):
            raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from None
        if isinstance(exc, OSError):
            raise FilerError(f"{where}: local file error: {exc.strerror or exc}") from None
        return False
