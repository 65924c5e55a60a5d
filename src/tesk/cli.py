"""The `tesk` command: the server, the in-cluster entrypoints and the client commands.

Each sub-command lives with the code it drives; this module only wires them into one typer app so
that one container image serves every role.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="tesk",
    help="A GA4GH Task Execution Service: run TES tasks as Kubernetes Jobs or on this host.",
    no_args_is_help=True,
    add_completion=False,
)


# No docstring on purpose: the app's help stays the one above. The callback keeps `tesk` a command
# group even when a fast path registers a single sub-command (see `_register`).
@app.callback()
def _group() -> None:
    pass


def _register() -> None:
    """Import the sub-command modules (kept lazy so `tesk --help` stays fast).

    A task pod or batch job (`filer`, `worker`, `taskmaster`) registers only its own command: every
    other module would cost its start, and a taskmaster's start is on every task's critical path."""
    role = sys.argv[1:2]
    every = role not in (["filer"], ["worker"], ["taskmaster"])
    if every or role == ["filer"]:
        from tesk.filer.cli import filer

        app.command(name="filer")(filer)
    if every or role == ["worker"]:
        from tesk.backends.slurm.worker import worker

        app.command(name="worker")(worker)
    if every or role == ["taskmaster"]:
        from tesk.backends.kubernetes.cli import taskmaster

        app.command(name="taskmaster")(taskmaster)
    if not every:
        return
    from tesk.client.commands import run, task_app

    app.add_typer(task_app, name="task")
    app.command(name="run", context_settings={"allow_interspersed_args": False})(run)
    if role in (["task"], ["run"]):
        return  # a client command: the server's modules would only cost time and memory
    from tesk.api.serve import serve

    app.command(name="serve")(serve)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
