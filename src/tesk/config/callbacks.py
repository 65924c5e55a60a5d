"""The callbacks section (`TESK_CALLBACK_*`): where tesk may POST a task's state changes, and how hard it tries."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tesk.config.values import comma_list


class CallbackSettings(BaseSettings):
    """Callbacks (`TESK_CALLBACK_*`)."""

    model_config = SettingsConfigDict(env_prefix="TESK_CALLBACK_", extra="ignore")

    allowed_hosts: str = Field(
        "",
        description="Comma-separated hosts callbacks may be sent to (`name`, `*.domain`, `name:port`). "
        "Empty: callbacks are off and tasks asking for one are refused.",
    )
    attempts: int = Field(6, ge=1, description="POST attempts per state change before giving up.")
    backoff_seconds: float = Field(1.0, gt=0, description="Wait before the first retry; doubles each time.")
    max_backoff_seconds: float = Field(60.0, gt=0, description="Longest wait between two attempts.")
    timeout_seconds: float = Field(10.0, gt=0, description="Time limit of one POST.")
    max_concurrent: int = Field(32, ge=1, description="Callback POSTs in flight at once, over all tasks.")

    def host_patterns(self) -> list[str]:
        return [h.lower() for h in comma_list(self.allowed_hosts)]
