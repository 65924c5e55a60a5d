"""`tesk serve`: run the API server (and, with the local backend, the tasks) in one process.

The configuration is read once, here: `TeskConfig.read` takes the environment, and the flags given on
the command line override their fields (never written back to `os.environ`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from tesk.config import ServerSettings, StoreSettings, describe_environment, environment_variable


def _environment_help() -> str:
    """Every variable with its description and default (in parentheses: typer's rich help would take
    `[default: x]` for markup and print nothing)."""
    rows = "\n\n".join(
        f"{var}  {desc}" + (f" (default: {default})" if default else "") for var, default, desc in describe_environment()
    )
    return "Serve the TES API.\n\nEvery setting is also read from the environment:\n\n" + rows


def _flag_help(section: type[ServerSettings | StoreSettings], name: str) -> str:
    """A flag's help: the description of the field it overrides, and the variable it stands for."""
    return f"{section.model_fields[name].description} Overrides {environment_variable(section, name)}."


def serve(
    host: Annotated[str | None, typer.Option(help=_flag_help(ServerSettings, "host"))] = None,
    port: Annotated[int | None, typer.Option(help=_flag_help(ServerSettings, "port"))] = None,
    backend: Annotated[str | None, typer.Option(help=_flag_help(ServerSettings, "backend"))] = None,
    data_dir: Annotated[Path | None, typer.Option(help=_flag_help(ServerSettings, "data_dir"))] = None,
    database_url: Annotated[str | None, typer.Option(help=_flag_help(StoreSettings, "database_url"))] = None,
) -> None:
    """Serve the TES API (see `tesk serve --help` for every environment variable)."""
    import uvicorn

    from tesk.api.app import create_app
    from tesk.api.compose import compose
    from tesk.api.connections import guarded_protocol
    from tesk.config import TeskConfig
    from tesk.logs import configure_logging

    server: dict[str, Any] = {"host": host, "port": port, "backend": backend, "data_dir": data_dir}
    try:
        config = TeskConfig.read(
            server={k: v for k, v in server.items() if v is not None},
            store={} if database_url is None else {"database_url": database_url},
        )
        configure_logging(config.server.log_level, config.server.log_json)
        app = create_app(compose(config))
    except ValueError as exc:
        typer.echo(f"tesk serve: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = config.server
    logging.getLogger("tesk").info(
        "tesk %s: %s backend, store %s, listening on http://%s:%d",
        settings.backend, settings.backend, _redact(config.database_url), settings.host, settings.port,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
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
