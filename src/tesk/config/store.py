"""The store section: which database holds the tasks, and how long a request waits for it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """The task store (`TESK_DATABASE_URL`, `TESK_STORE_*`)."""

    model_config = SettingsConfigDict(env_prefix="TESK_STORE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        None,
        alias="TESK_DATABASE_URL",
        description="SQLAlchemy URL of the task store, e.g. `postgresql+asyncpg://user:pw@host/db`. "
        "Default: SQLite file `tesk.db` in the data dir.",
    )
    busy_seconds: float = Field(
        5.0, gt=0, description="Longest a request waits for the task store (SQLite's write lock, a "
        "PostgreSQL connection); then it is answered 503 with Retry-After.",
    )

    def url(self, data_dir: Path) -> str:
        """The configured URL, or the SQLite file `tesk.db` in the server's data folder."""
        return self.database_url or f"sqlite+aiosqlite:///{data_dir / 'tesk.db'}"
