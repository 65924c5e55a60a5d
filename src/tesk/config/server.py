"""The server section (`TESK_*`): where the API listens, which backend runs tasks, request limits, logs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tesk.config.values import default_data_dir


class ServerSettings(BaseSettings):
    """The API server itself (`TESK_*`)."""

    model_config = SettingsConfigDict(env_prefix="TESK_", extra="ignore", populate_by_name=True)

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8080, description="Port to listen on.")
    backend: str = Field("local", description="Where tasks run: `local` (this host), `kubernetes` or `slurm` (batch jobs on an HPC cluster).")
    data_dir: Path = Field(default_factory=default_data_dir, description="Folder for the SQLite store and task areas.")
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
    task_time_limit_seconds: int | None = Field(
        None, gt=0, description="Time limit of a task that sets no `tesk.time_limit` backend parameter, "
        "staging included; a task past it ends EXECUTOR_ERROR with the reason TimeLimitExceeded.",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_json: bool = Field(False, description="Write logs as JSON lines (one object per line).")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        return v.strip().lower()
