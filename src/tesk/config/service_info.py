"""The service_info section: the service-info fields an operator sets (a YAML file, `TESK_SERVICE_INFO_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceInfoSettings(BaseSettings):
    """Service-info fields an operator sets by environment (`TESK_SERVICE_INFO_*`)."""

    model_config = SettingsConfigDict(env_prefix="TESK_SERVICE_INFO_", extra="ignore", populate_by_name=True)

    file: Path | None = Field(None, description="YAML file with service-info fields (id, name, organization, ...).")
    id: str | None = None
    name: str | None = None
    description: str | None = None
    environment: str | None = None
    contactUrl: str | None = Field(None, alias="TESK_SERVICE_INFO_CONTACT_URL")
    documentationUrl: str | None = Field(None, alias="TESK_SERVICE_INFO_DOCUMENTATION_URL")

    def overrides(self) -> dict[str, Any]:
        """Service-info fields from the YAML file, then the `TESK_SERVICE_INFO_*` variables on top."""
        values: dict[str, Any] = {}
        if self.file:
            loaded = yaml.safe_load(self.file.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{self.file} must hold a YAML mapping of service-info fields")
            values.update(loaded)
        return values | self.model_dump(exclude_none=True, exclude={"file"})
