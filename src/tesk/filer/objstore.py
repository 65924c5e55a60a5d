"""gs and az (Azure Blob): object stores through obstore (Rust object_store), fully async.

`gs://bucket/key` and `az://container/key`. Credentials and endpoints come from obstore's standard
environment: GOOGLE_APPLICATION_CREDENTIALS / GOOGLE_SERVICE_ACCOUNT* (or the metadata server on
GCP), and AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, a SAS token, a service principal
or AZURE_STORAGE_USE_EMULATOR (Azurite). TESK_FILER_GS_ENDPOINT / TESK_FILER_AZ_ENDPOINT point a
scheme at another server (private endpoint, emulator). Downloads stream; uploads are multipart in
16 MiB parts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.exceptions import NotFoundError as StoreNotFound
from obstore.store import AzureStore, GCSStore

from tesk.filer.base import CHUNK, Progress, read_blocks, write_chunks
from tesk.filer.errors import FilerError, NotFoundError, TransientError, redact
from tesk.config.filer import FilerSettings
from tesk.models import FileType

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, RetryConfig

_PART = 16 * 1024 * 1024
_URL_IN_TEXT = re.compile(r"https?://[^\s\"')]+")


class ObjectStoreScheme:
    """One obstore store per bucket/container, made on first use."""

    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings
        self._stores: dict[tuple[str, str], Any] = {}

    def parse(self, url: str) -> tuple[str, str, str]:
        """(scheme, bucket or container, key) of a gs:// or az:// URL."""
        scheme, _, rest = url.partition("://")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise FilerError(f"{redact(url)}: expected {scheme}://<bucket>/<key>")
        return scheme.lower(), bucket, key

    def build_store(self, scheme: str, bucket: str) -> Any:
        """The obstore store of one bucket (tests replace this to point at a local peer)."""
        options: ClientConfig = {
            "connect_timeout": timedelta(seconds=self.settings.timeout),
            "timeout": timedelta(seconds=max(self.settings.timeout, self.settings.transfer_timeout)),
        }
        retry: RetryConfig = {"max_retries": 0}
        endpoint = self.settings.gs_endpoint if scheme == "gs" else self.settings.az_endpoint
        if endpoint:
            options["allow_http"] = endpoint.lower().startswith("http://")
        if scheme == "gs":
            gs_config: GCSConfig = {"base_url": endpoint} if endpoint else {}
            return GCSStore(bucket, config=gs_config, client_options=options, retry_config=retry)
        az_config: AzureConfig = {"endpoint": endpoint} if endpoint else {}
        return AzureStore(bucket, config=az_config, client_options=options, retry_config=retry)

    def _store(self, url: str) -> tuple[Any, str]:
        scheme, bucket, key = self.parse(url)
        if (scheme, bucket) not in self._stores:
            try:
                self._stores[(scheme, bucket)] = self.build_store(scheme, bucket)
            except BaseError as exc:
                raise FilerError(f"{redact(url)}: cannot configure {scheme} access: {_clean(exc)}") from None
        return self._stores[(scheme, bucket)], key

    async def kind(self, url: str) -> FileType:
        store, key = self._store(url)
        with _translated(url):
            if key and not key.endswith("/"):
                try:
                    await obstore.head_async(store, key)
                    return FileType.FILE
                except (StoreNotFound, FileNotFoundError):
                    pass
            async for batch in obstore.list(store, _folder(key), chunk_size=1):
                if batch:
                    return FileType.DIRECTORY
        raise NotFoundError(f"{redact(url)}: no object or prefix by that name")

    async def list_files(self, url: str) -> list[str]:
        store, key = self._store(url)
        prefix = _folder(key)
        found: list[str] = []
        with _translated(url):
            async for batch in obstore.list(store, prefix or None, chunk_size=1000):
                for meta in batch:
                    rel = meta["path"][len(prefix) :]
                    if rel and not rel.endswith("/"):
                        found.append(rel)
        if not found:
            raise NotFoundError(f"{redact(url)}: no objects below this prefix")
        return sorted(found)

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        store, key = self._store(url)
        with _translated(url):
            result = await obstore.get_async(store, key)
            progress.restart(result.meta["size"])
            await write_chunks(_stream(result), dest, progress)

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        store, key = self._store(url)
        if not key or key.endswith("/"):
            raise FilerError(f"{redact(url)}: an output file needs an object name, not a bucket or prefix")
        progress.restart(src.stat().st_size)
        with _translated(url):
            await obstore.put_async(
                store, key, read_blocks(src, progress), chunk_size=_PART, max_concurrency=8
            )

    async def close(self) -> None:
        self._stores.clear()


async def _stream(result: Any) -> AsyncIterator[bytes]:
    async for chunk in result.stream(min_chunk_size=CHUNK):
        yield bytes(chunk)


def _folder(key: str) -> str:
    return key.rstrip("/") + "/" if key.strip("/") else ""


def _clean(exc: BaseException) -> str:
    """obstore's message on one line, with any URL in it redacted (SAS tokens live in queries)."""
    text = " ".join(str(exc).split())
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)[:300]


class _translated:
    """Context manager mapping obstore errors of one URL to filer errors."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None or isinstance(exc, FilerError):
            return False
        where = redact(self.url)
        if isinstance(exc, (StoreNotFound, FileNotFoundError)):  # obstore raises the builtin now
            raise NotFoundError(f"{where}: not found; check the bucket and object name") from None
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
            raise FilerError(
                f"{where}: access refused ({_clean(exc)}); check the storage credentials of this server"
            ) from None
        if isinstance(exc, BaseError):
            raise TransientError(f"{where}: {_clean(exc)}") from None
        if isinstance(exc, OSError):
            raise FilerError(f"{where}: local file error: {exc.strerror or exc}") from None
        return False
