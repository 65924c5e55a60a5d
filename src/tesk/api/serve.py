"""`tesk serve`: run the API server (and, with the local backend, the tasks) in one process."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from tesk.config import describe_environment


def _environment_help() -> str:
    rows = "\n\n".join(
        f"{var}  {desc}" + (f" [default: {default}]" if default else "") for var, default, desc in describe_environment()
    )
    return "Serve the TES API.\n\nEvery setting is also read from the environment:\n\n" + rows


def serve(
    host: Annotated[str, typer.Option(envvar="TESK_HOST", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="TESK_PORT", help="Port to listen on.")] = 8080,
    backend: Annotated[
        str, typer.Option(envvar="TESK_BACKEND", help="Where tasks run: local or kubernetes.")
    ] = "local",
    data_dir: Annotated[
        Path | None, typer.Option(envvar="TESK_DATA_DIR", help="Folder for the SQLite store and task areas.")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="TESK_DATABASE_URL", help="Task store URL (default: SQLite in the data dir)."),
    ] = None,
) -> None:
    """Serve the TES API (see `tesk serve --help` for every environment variable)."""
    import uvicorn

    from tesk.api.app import create_app
    from tesk.api.connections import guarded_protocol
    from tesk.config import Settings
    from tesk.logs import configure_logging

    os.environ.update({"TESK_HOST": host, "TESK_PORT": str(port), "TESK_BACKEND": backend})
    if data_dir is not None:
        os.environ["TESK_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        os.environ["TESK_DATABASE_URL"] = database_url
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        app = create_app(settings)
    except ValueError as exc:
        typer.echo(f"tesk serve: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.getLogger("tesk").info(
        "tesk %s: %s backend, store %s, listening on http://%s:%d",
        settings.backend, settings.backend, _redact(settings.effective_database_url), host, port,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=guarded_protocol(settings),
    )


def _redact(url: str) -> str:
    """Never print a database password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


serve.__doc__ = _environment_help()
