"""Server settings, read from the environment (and `tesk serve` flags, which set the same names).

Each subsystem with its own knobs keeps a settings class next to its code (filer, auth, the local and
Kubernetes backends); `settings_classes()` lists them all so `tesk serve --help` and the README table
can document every variable in one place.
"""

from __future__ import annotations

import importlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """A per-user data folder, as XDG says: `$XDG_DATA_HOME/tesk` or `~/.local/share/tesk`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tesk"


def comma_list(text: str | None) -> list[str]:
    """The non-empty, stripped items of a comma-separated setting (`"a, b,,"` gives `["a", "b"]`).

    One parser for every list-valued environment variable, so all of them accept the same spacing.
    """
    return [part.strip() for part in (text or "").split(",") if part.strip()]


class Settings(BaseSettings):
    """Core settings of the API server (`TESK_*`)."""

    model_config = SettingsConfigDict(env_prefix="TESK_", extra="ignore", populate_by_name=True)

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8080, description="Port to listen on.")
    backend: str = Field("local", description="Where tasks run: `local` (this host), `kubernetes` or `slurm` (batch jobs on an HPC cluster).")
    data_dir: Path = Field(default_factory=default_data_dir, description="Folder for the SQLite store and task areas.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the task store, e.g. `postgresql+asyncpg://user:pw@host/db`. "
        "Default: SQLite file `tesk.db` in the data dir.",
    )
    service_info_file: Path | None = Field(
        None, description="YAML file with service-info fields (id, name, organization, ...)."
    )
    max_content_bytes: int = Field(
        1024 * 1024, description="Largest inline `content` of one input (the spec asks for at least 128 KiB)."
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, description="Largest request body accepted.")
    header_timeout_seconds: float = Field(
        15,
        gt=0,
        description="Time a client has to send a request's head (request line and headers), from the "
        "connection opening or the request's first byte; then 408 and the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        60,
        gt=0,
        description="Time a client has to send a request's whole body after its head (a 16 MiB body needs "
        "about 280 KB/s); then 408 and the connection is closed.",
    )
    max_connections_per_client: int = Field(
        128,
        ge=0,
        description="Connections one client address may hold at once; more get 429 and are closed (0: no "
        "cap). Behind a reverse proxy every connection comes from the proxy: raise it or set 0 there.",
    )
    store_busy_seconds: float = Field(
        5.0, gt=0, description="Longest a request waits for the task store (SQLite's write lock, a "
        "PostgreSQL connection); then it is answered 503 with Retry-After.",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_json: bool = Field(False, description="Write logs as JSON lines (one object per line).")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        return v.strip().lower()

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'tesk.db'}"

    def service_info_overrides(self) -> dict[str, Any]:
        """Service-info fields from the YAML file, then `TESK_SERVICE_INFO_*` variables on top."""
        values: dict[str, Any] = {}
        if self.service_info_file:
            loaded = yaml.safe_load(self.service_info_file.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{self.service_info_file} must hold a YAML mapping of service-info fields")
            values.update(loaded)
        return values | ServiceInfoSettings().model_dump(exclude_none=True)


class ServiceInfoSettings(BaseSettings):
    """Service-info fields an operator sets by environment (`TESK_SERVICE_INFO_*`)."""

    model_config = SettingsConfigDict(env_prefix="TESK_SERVICE_INFO_", extra="ignore")

    id: str | None = None
    name: str | None = None
    description: str | None = None
    environment: str | None = None
    contactUrl: str | None = Field(None, alias="TESK_SERVICE_INFO_CONTACT_URL")
    documentationUrl: str | None = Field(None, alias="TESK_SERVICE_INFO_DOCUMENTATION_URL")


SUBSYSTEM_SETTINGS = (
    "tesk.filer.settings:FilerSettings",
    "tesk.auth.settings:AuthSettings",
    "tesk.backends.local.settings:LocalSettings",
    "tesk.backends.kubernetes.settings:KubernetesSettings",
    "tesk.backends.slurm.settings:SlurmSettings",
    "tesk.api.callbacks:CallbackSettings",
)


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of the server, for documentation (imported only when asked for)."""
    found: list[type[BaseSettings]] = [Settings, ServiceInfoSettings]
    for ref in SUBSYSTEM_SETTINGS:
        module, _, name = ref.partition(":")
        found.append(getattr(importlib.import_module(module), name))
    return found


def describe_environment() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for every setting, for `--help` and the README."""
    rows: list[tuple[str, str, str]] = []
    for cls in settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            variable = field.alias if field.alias and field.alias.isupper() else f"{prefix}{name}".upper()
            default = "" if field.is_required() or field.default is None else str(field.default)
            if field.default_factory is not None:
                default = "(computed)"
            rows.append((variable, default, field.description or ""))
    return rows
