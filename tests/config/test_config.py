"""The one configuration object: read once from the environment, flags on top, `os.environ` untouched."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tesk.api.serve import serve
from tesk.config import TeskConfig, describe_environment

tesk_cli = typer.Typer()
tesk_cli.callback()(lambda: None)
tesk_cli.command(name="serve")(serve)


def test_every_section_reads_its_variables_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESK_PORT", "9123")
    monkeypatch.setenv("TESK_DATABASE_URL", "sqlite+aiosqlite:////tmp/elsewhere.db")
    monkeypatch.setenv("TESK_STORE_BUSY_SECONDS", "2.5")
    monkeypatch.setenv("SPRING_PROFILES_ACTIVE", "noauth")
    monkeypatch.setenv("TESK_CALLBACK_ATTEMPTS", "2")
    monkeypatch.setenv("TESK_FILER_RETRIES", "7")
    monkeypatch.setenv("TESK_LOCAL_MAX_TASKS", "3")
    monkeypatch.setenv("TESK_API_K8S_NAMESPACE", "tasks")
    monkeypatch.setenv("TESK_SLURM_PARTITION", "short")
    monkeypatch.setenv("TESK_SERVICE_INFO_CONTACT_URL", "mailto:ops@example.org")
    config = TeskConfig.read()
    assert config.server.port == 9123
    assert config.database_url == "sqlite+aiosqlite:////tmp/elsewhere.db" and config.store.busy_seconds == 2.5
    assert config.auth.profile == "noauth" and config.callbacks.attempts == 2 and config.filer.retries == 7
    assert config.local.max_tasks == 3 and config.kubernetes.namespace == "tasks" and config.slurm.partition == "short"
    assert config.service_info.overrides()["contactUrl"] == "mailto:ops@example.org"


def test_overrides_win_over_the_environment_and_leave_it_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TESK_PORT", "9123")
    monkeypatch.setenv("TESK_LOCAL_MAX_TASKS", "3")
    before = dict(os.environ)
    config = TeskConfig.read(server={"port": 9200, "data_dir": tmp_path}, local={"max_tasks": 1})
    assert config.server.port == 9200 and config.local.max_tasks == 1
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / 'tesk.db'}"
    assert dict(os.environ) == before
    with pytest.raises(TypeError, match="no configuration section servre"):
        TeskConfig.read(servre={"port": 1})


def test_serve_flags_override_the_environment_without_writing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`tesk serve --port ... --data-dir ...` reaches uvicorn and the store; the environment keeps its
    values (uvicorn.run is replaced by a recorder, so no server starts)."""
    import uvicorn

    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options, app=app))
    root = logging.getLogger()  # serve sets the root logger's handlers: give pytest's back afterwards
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("TESK_PORT", "9123")
    monkeypatch.setenv("TESK_LOCAL_MAX_TASKS", "0")  # no engine needed: the backend is never started
    monkeypatch.delenv("TESK_DATA_DIR", raising=False)
    before = dict(os.environ)
    result = CliRunner().invoke(tesk_cli, ["serve", "--port", "9200", "--host", "127.0.0.1",
                                           "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (ran["host"], ran["port"]) == ("127.0.0.1", 9200)
    assert dict(os.environ) == before


def test_serve_help_lists_every_variable_with_its_default() -> None:
    text = " ".join(CliRunner().invoke(tesk_cli, ["serve", "--help"], terminal_width=400).output.split())
    rows = describe_environment()
    assert {"TESK_HOST", "TESK_DATABASE_URL", "TESK_AUTH", "HOST_BASE_PATH",
            "TESK_API_TASKMASTER_IMAGE_NAME", "TESK_CALLBACK_ALLOWED_HOSTS", "TESK_SLURM_PARTITION",
            "TESK_SERVICE_INFO_FILE"} <= {variable for variable, _, _ in rows}
    for variable, default, _ in rows:
        assert variable in text
        if default:
            assert f"(default: {default})" in text, variable
