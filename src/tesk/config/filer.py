"""Filer settings: which storage the server may touch, with which credentials, and how patiently.

Read from the environment (`TESK_FILER_*`, plus the seed's names `TESK_FILE_ROOTS`,
`HOST_BASE_PATH`, `CONTAINER_BASE_PATH`, `TESK_FTP_USERNAME`, `TESK_FTP_PASSWORD`), so the API server
and a filer Job configured with the same variables stage files the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tesk.config.values import comma_list


class S3Endpoint(BaseModel):
    """Where one bucket (or every bucket behind one host name) lives, and how to sign requests there.

    `bucket` matches `s3://<bucket>/key`; `host` matches `s3://<host>/<bucket>/key` (the URL names
    the server, as with MinIO or Ceph). Credentials are either given here, or taken from an AWS
    `profile` of the standard config files, or (neither) from the standard AWS_* chain.
    """

    model_config = ConfigDict(extra="forbid")

    bucket: str | None = None
    host: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    addressing_style: str | None = Field(None, description="`path` or `virtual` (default: boto3's choice)")

    @model_validator(mode="after")
    def _one_selector(self) -> S3Endpoint:
        if bool(self.bucket) == bool(self.host):
            raise ValueError("each S3 endpoint entry needs exactly one of 'bucket' or 'host'")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError(
                f"S3 endpoint for {self.bucket or self.host!r}: give both access_key_id and secret_access_key"
            )
        return self


class FilerSettings(BaseSettings):
    """Settings of the transfer library (`tesk filer` and the local backend's staging)."""

    model_config = SettingsConfigDict(env_prefix="TESK_FILER_", extra="ignore", populate_by_name=True)

    file_roots: str = Field(
        "",
        alias="TESK_FILE_ROOTS",
        description="`:`-separated host folders that file:// inputs and outputs may touch (none by default).",
    )
    host_base_path: str | None = Field(
        None,
        alias="HOST_BASE_PATH",
        description="Seed shared-filesystem mode: file:// URLs under this host folder are allowed, and "
        "read or written below CONTAINER_BASE_PATH.",
    )
    container_base_path: str | None = Field(
        None,
        alias="CONTAINER_BASE_PATH",
        description="Where the filer sees HOST_BASE_PATH mounted (seed shared-filesystem mode).",
    )
    ftp_username: str | None = Field(
        None, alias="TESK_FTP_USERNAME", description="FTP user when the URL and ~/.netrc name none."
    )
    ftp_password: SecretStr | None = Field(
        None, alias="TESK_FTP_PASSWORD", description="Password of that FTP user."
    )
    s3_config: Path | None = Field(
        None,
        description="YAML/JSON file with per-bucket / per-host S3 endpoints and credentials "
        "(a list under `endpoints:`, see docs/architecture.md).",
    )
    s3_endpoints: list[S3Endpoint] = Field(
        default_factory=list, description="The same list as JSON in the environment (added to the file's)."
    )
    gs_endpoint: str | None = Field(
        None,
        description="Base URL of the GCS API instead of Google's, e.g. a private endpoint or an emulator "
        "(fake-gcs-server). An http:// URL is allowed because the operator named it.",
    )
    az_endpoint: str | None = Field(
        None,
        description="Blob service URL instead of https://<account>.blob.core.windows.net, e.g. Azurite's "
        "http://127.0.0.1:10000/devstoreaccount1. An http:// URL is allowed because the operator named it.",
    )
    http_put_hosts: str = Field(
        "",
        description="Comma-separated hosts (`host` or `host:port`, `*` for any) where outputs may be "
        "uploaded with HTTP PUT. None by default: http(s) outputs are refused.",
    )
    deny_local_http: bool = Field(
        False,
        description="Refuse http(s) transfers to loopback, link-local (cloud metadata) and unspecified "
        "addresses, checked on every connection including redirects.",
    )
    schemes: str = Field(
        "http,https,ftp,s3,gs,az",
        description="Comma-separated network schemes this server stages. `file` is added when file roots "
        "are set; `az` needs AZURE_STORAGE_ACCOUNT_NAME.",
    )
    timeout: float = Field(60.0, description="Seconds to wait for a connection or for the next bytes.")
    transfer_timeout: float = Field(
        0.0, description="Longest time one file transfer may take (0 = no limit)."
    )
    retries: int = Field(3, description="Retries of a transfer after a transient failure (5xx, timeout).")
    retry_backoff: float = Field(1.0, description="Seconds before the first retry; doubled each time.")
    parallel: int = Field(4, description="File transfers run at the same time for one task.")
    progress_interval: float = Field(30.0, description="Seconds between progress lines of a large transfer.")
    progress_min_bytes: int = Field(
        64 * 1024 * 1024, description="Transfers at least this large report progress in the task's logs."
    )

    @property
    def root_entries(self) -> list[str]:
        """The absolute entries of TESK_FILE_ROOTS as written (relative entries are ignored)."""
        return [p for p in self.file_roots.split(":") if p.strip().startswith("/")]

    @property
    def allowed_roots(self) -> list[Path]:
        """The file:// roots as absolute, symlink-free paths (relative entries are ignored)."""
        roots = [Path(os.path.realpath(p)) for p in self.root_entries]
        if self.host_base_path and self.container_base_path:
            roots.append(Path(os.path.realpath(self.container_base_path)))
        return roots

    @property
    def put_hosts(self) -> set[str]:
        return {h.lower() for h in comma_list(self.http_put_hosts)}

    @property
    def enabled_schemes(self) -> set[str]:
        enabled = {s.lower() for s in comma_list(self.schemes)}
        if not (os.environ.get("AZURE_STORAGE_ACCOUNT_NAME") or os.environ.get("AZURE_STORAGE_ACCOUNT")):
            enabled.discard("az")
        if self.allowed_roots:
            enabled.add("file")
        return enabled

    def s3_endpoint_entries(self) -> list[S3Endpoint]:
        """The configured endpoints: the config file's first, then the environment's."""
        entries: list[S3Endpoint] = []
        if self.s3_config:
            loaded = yaml.safe_load(self.s3_config.read_text()) or {}
            if not isinstance(loaded, dict) or not isinstance(loaded.get("endpoints", []), list):
                raise ValueError(f"{self.s3_config}: expected a mapping with a list under 'endpoints'")
            entries.extend(S3Endpoint.model_validate(e) for e in loaded.get("endpoints", []))
        return entries + list(self.s3_endpoints)


def supported_schemes(settings: FilerSettings) -> list[str]:
    """URL prefixes this server is configured to stage, for service-info's `storage`.

    Network schemes appear as `scheme://`; file access appears once per allowed folder
    (`file:///data/shared`), so clients learn exactly which local paths they may use.
    """
    enabled = settings.enabled_schemes
    found = [f"{s}://" for s in ("http", "https", "ftp", "s3", "gs", "az") if s in enabled]
    if "file" in enabled:
        roots = settings.root_entries
        if settings.host_base_path and settings.container_base_path:
            roots.append(settings.host_base_path)
        found.extend(f"file://{r.rstrip('/') or '/'}" for r in roots)
    return found
