"""s3: any S3-compatible store through boto3, with per-bucket or per-host endpoints and credentials.

By default boto3's standard chain applies (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
AWS_ENDPOINT_URL, the AWS config and credentials files, instance roles). Entries of
`TESK_FILER_S3_CONFIG` / `TESK_FILER_S3_ENDPOINTS` override that for one bucket (`s3://bucket/key`)
or for one server named in the URL (`s3://minio.example.org/bucket/key`), so different buckets can
live on different stores with different keys. Large files go through boto3's managed transfer
(multipart, parallel parts, bounded buffers) in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tesk.filer.base import Progress
from tesk.filer.errors import FilerError, NotFoundError, TransientError, redact
from tesk.config.filer import FilerSettings, S3Endpoint
from tesk.models import FileType

T = TypeVar("T")

TRANSFER = TransferConfig(
    multipart_threshold=16 * 1024 * 1024,
    multipart_chunksize=16 * 1024 * 1024,
    max_concurrency=8,
    use_threads=True,
)
"""16 MiB parts, 8 at a time: near boto3's best throughput here with about 150 MB of buffers at most."""

_NOT_FOUND = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
_DENIED = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)


_SESSIONS: dict[str | None, boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()
"""boto3 sessions per AWS profile, kept for the process: a new session reloads botocore's models
(~0.5 s here), a client from a warm session takes ~0.06 s. Creating clients is not thread-safe,
so it happens under the lock."""


@dataclass(frozen=True)
class _Object:
    bucket: str
    key: str
    endpoint: S3Endpoint | None


class S3Scheme:
    def __init__(self, settings: FilerSettings) -> None:
        self.settings = settings
        try:
            entries = settings.s3_endpoint_entries()
        except (OSError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise FilerError(
                f"the S3 endpoint configuration is unusable: {detail}; fix TESK_FILER_S3_CONFIG"
            ) from None
        self._by_bucket = {e.bucket: e for e in entries if e.bucket}
        self._by_host = {e.host.lower(): e for e in entries if e.host}
        self._clients: dict[int, Any] = {}

    def parse(self, url: str) -> _Object:
        """Bucket, key and endpoint entry of an s3 URL (per-host entries take the bucket from the path)."""
        rest = url.split("://", 1)[1]
        netloc, _, path = rest.partition("/")
        host = self._by_host.get(netloc.lower())
        if host is not None:
            bucket, _, key = path.partition("/")
            if not bucket:
                raise FilerError(f"{redact(url)}: the URL names the S3 server {netloc} but no bucket")
            return _Object(bucket, key, host)
        if not netloc:
            raise FilerError(f"{redact(url)}: an S3 URL looks like s3://bucket/key")
        return _Object(netloc, path, self._by_bucket.get(netloc))

    def _client(self, endpoint: S3Endpoint | None) -> Any:
        """One boto3 client per endpoint entry (clients are thread-safe; creating them is not)."""
        key = id(endpoint)
        with _SESSIONS_LOCK:
            if key not in self._clients:
                config = Config(
                    connect_timeout=self.settings.timeout,
                    read_timeout=self.settings.timeout,
                    retries={"total_max_attempts": 1},
                    max_pool_connections=max(10, TRANSFER.max_request_concurrency),
                    s3={"addressing_style": endpoint.addressing_style}
                    if endpoint and endpoint.addressing_style
                    else None,
                )
                profile = endpoint.profile if endpoint else None
                if profile not in _SESSIONS:
                    _SESSIONS[profile] = boto3.session.Session(profile_name=profile)
                session = _SESSIONS[profile]
                kwargs: dict[str, Any] = {"config": config}
                if endpoint is not None:
                    if endpoint.endpoint_url:
                        kwargs["endpoint_url"] = endpoint.endpoint_url
                    if endpoint.region:
                        kwargs["region_name"] = endpoint.region
                    if endpoint.access_key_id and endpoint.secret_access_key:
                        kwargs["aws_access_key_id"] = endpoint.access_key_id
                        kwargs["aws_secret_access_key"] = endpoint.secret_access_key.get_secret_value()
                        if endpoint.session_token:
                            kwargs["aws_session_token"] = endpoint.session_token.get_secret_value()
                self._clients[key] = session.client("s3", **kwargs)
            return self._clients[key]

    async def _run(self, url: str, work: Callable[[Any, _Object], T]) -> T:
        obj = self.parse(url)
        client = self._client(obj.endpoint)

        def call() -> T:
            try:
                return work(client, obj)
            except ClientError as exc:
                raise _translate(url, exc) from None
            except S3UploadFailedError as exc:  # upload_file wraps the ClientError of any part
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, ClientError):
                    raise _translate(url, cause) from None
                raise TransientError(f"{redact(url)}: upload failed: {exc}") from None
            except NoCredentialsError:
                raise FilerError(
                    f"{redact(url)}: no S3 credentials are configured for bucket {obj.bucket!r} "
                    "(AWS_* environment, AWS config files, or TESK_FILER_S3_CONFIG)"
                ) from None
            except (ConnectTimeoutError, ReadTimeoutError):
                raise TransientError(
                    f"{redact(url)}: no answer from the S3 endpoint for {self.settings.timeout:g} s "
                    "(TESK_FILER_TIMEOUT)"
                ) from None
            except EndpointConnectionError as exc:
                raise TransientError(
                    f"{redact(url)}: cannot connect to {exc.kwargs.get('endpoint_url')}"
                ) from None
            except BotoCoreError as exc:
                raise TransientError(f"{redact(url)}: {exc}") from None
            except OSError as exc:  # boto3 reads and writes the local file itself
                raise FilerError(f"{redact(url)}: local file error: {exc.strerror or exc}") from None

        return await asyncio.to_thread(call)

    async def kind(self, url: str) -> FileType:
        def work(client: Any, obj: _Object) -> FileType:
            if obj.key and not obj.key.endswith("/"):
                try:
                    client.head_object(Bucket=obj.bucket, Key=obj.key)
                    return FileType.FILE
                except ClientError as exc:
                    if _code(exc) not in _NOT_FOUND:
                        raise
            prefix = _folder(obj.key)
            listing = client.list_objects_v2(Bucket=obj.bucket, Prefix=prefix, MaxKeys=1)
            if listing.get("KeyCount", 0):
                return FileType.DIRECTORY
            raise NotFoundError(f"{redact(url)}: no object or prefix by that name in bucket {obj.bucket!r}")

        return await self._run(url, work)

    async def list_files(self, url: str) -> list[str]:
        def work(client: Any, obj: _Object) -> list[str]:
            prefix = _folder(obj.key)
            found: list[str] = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=obj.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    rel = item["Key"][len(prefix) :]
                    if rel and not rel.endswith("/"):
                        found.append(rel)
            if not found:
                raise NotFoundError(f"{redact(url)}: no objects below this prefix in bucket {obj.bucket!r}")
            return found

        return await self._run(url, work)

    async def download(self, url: str, dest: Path, progress: Progress) -> None:
        def work(client: Any, obj: _Object) -> None:
            progress.restart(client.head_object(Bucket=obj.bucket, Key=obj.key)["ContentLength"])
            client.download_file(obj.bucket, obj.key, str(dest), Callback=progress.advance, Config=TRANSFER)

        await self._run(url, work)

    async def upload(self, src: Path, url: str, progress: Progress) -> None:
        def work(client: Any, obj: _Object) -> None:
            if not obj.key or obj.key.endswith("/"):
                raise FilerError(f"{redact(url)}: an output file needs a key, not a bucket or prefix")
            progress.restart(src.stat().st_size)
            client.upload_file(str(src), obj.bucket, obj.key, Callback=progress.advance, Config=TRANSFER)

        await self._run(url, work)

    async def close(self) -> None:
        with _SESSIONS_LOCK:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _folder(key: str) -> str:
    return key.rstrip("/") + "/" if key.strip("/") else ""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(url: str, exc: ClientError) -> FilerError:
    code = _code(exc)
    message = exc.response.get("Error", {}).get("Message") or code
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    where = f"{redact(url)}: S3 answered {status} {code}: {message}"
    if code in _NOT_FOUND:
        return NotFoundError(f"{where}; check the bucket and key")
    if code in _DENIED or status == 403:
        return FilerError(
            f"{where}; check the S3 credentials for this bucket (AWS_* environment, AWS config files, "
            "TESK_FILER_S3_CONFIG)"
        )
    if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"):
        return TransientError(where)
    return FilerError(where)
