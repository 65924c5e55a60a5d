"""`tesk task submit|list|get|cancel|wait|logs` and `tesk run`: a TES client for people and scripts.

Configured by `TESK_URL` (default http://localhost:8080) and `TESK_TOKEN` (a bearer token), or the
`--url` / `--token` options. Results go to stdout (ids, JSON, logs) and progress to stderr, so output
can be piped. A server error is printed as the server's own message, with exit code 2.

Exit codes of `wait`, `submit --wait` and `run --wait` mirror the task's outcome:
0 COMPLETE, 1 EXECUTOR_ERROR (`run --wait`: the failing executor's own exit code, as `docker run`),
3 SYSTEM_ERROR, 4 CANCELED, 5 PREEMPTED; 2 when the command itself failed (bad input, server error).
With several tasks, `wait` exits with the highest of their codes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tesk.client.http import ClientError, Connection, TesClient
from tesk.failures import EXECUTOR_KEY, REASON_KEY

OUTCOME_EXIT_CODES = {"COMPLETE": 0, "EXECUTOR_ERROR": 1, "SYSTEM_ERROR": 3, "CANCELED": 4, "PREEMPTED": 5}
FAILED_COMMAND = 2
STATE_STYLES = {
    "QUEUED": "yellow", "INITIALIZING": "cyan", "RUNNING": "blue", "PAUSED": "yellow",
    "COMPLETE": "green", "EXECUTOR_ERROR": "red", "SYSTEM_ERROR": "bold red",
    "CANCELING": "magenta", "CANCELED": "magenta", "PREEMPTED": "red", "UNKNOWN": "dim",
}

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
"""Results; when piped, lines are never cut to a terminal's width."""
err = Console(stderr=True, highlight=False, soft_wrap=True)

task_app = typer.Typer(
    help="Work with tasks on a TES server (TESK_URL, TESK_TOKEN).\n\n"
    "Exit codes of wait and --wait: 0 COMPLETE, 1 EXECUTOR_ERROR, 3 SYSTEM_ERROR, 4 CANCELED, "
    "5 PREEMPTED; 2 when the command failed (bad input, server error).",
    no_args_is_help=True,
    add_completion=False,
)

UrlOption = Annotated[
    str | None, typer.Option("--url", envvar="TESK_URL", help="TES server (default http://localhost:8080).")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="TESK_TOKEN", help="Bearer token.", show_default=False)
]


@contextmanager
def _session(url: str | None, token: str | None) -> Iterator[TesClient]:
    """A client whose errors end the command with the server's message and exit code 2."""
    try:
        with TesClient(Connection.from_env(url, token)) as client:
            yield client
    except ClientError as exc:
        err.print(f"[red]error:[/red] {exc.message}", markup=True, highlight=False)
        raise typer.Exit(FAILED_COMMAND) from None


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(FAILED_COMMAND)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """`KEY=VALUE` options into a dict (`KEY` alone gives "")."""
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            raise _fail(f"{what} {item!r} must look like KEY=VALUE")
        result[key] = value if sep else ""
    return result


def _state_text(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'white')}]{state}[/]"


# -- submit / run ---------------------------------------------------------------------------------


@task_app.command("submit")
def submit(
    file: Annotated[str, typer.Argument(help="Task file, JSON or YAML; '-' reads standard input.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the task; exit with its outcome.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Create a task from a file and print its id."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None
    try:
        body = yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        raise _fail(f"{file} is neither JSON nor YAML: {exc}") from None
    if not isinstance(body, dict):
        raise _fail(f"{file} must hold one task (a mapping with 'executors'), not {type(body).__name__}")
    with _session(url, token) as client:
        task_id = client.create(body)
        out.print(task_id)
        if wait:
            raise typer.Exit(_wait(client, [task_id]))


def run(
    image: Annotated[str, typer.Argument(help="Container image of the executor.")],
    command: Annotated[list[str], typer.Argument(help="Command and arguments (after `--`).")],
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the task, print its output, exit with its outcome.")] = False,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="PATH=URL to stage in (PATH ending in / = a directory).")] = None,
    outputs: Annotated[list[str] | None, typer.Option("--output", "-o", help="PATH=URL to stage out (PATH ending in / = a directory).")] = None,
    cpu: Annotated[int | None, typer.Option("--cpu", help="CPU cores.", min=1)] = None,
    ram: Annotated[float | None, typer.Option("--ram", help="RAM in GB.", min=0)] = None,
    disk: Annotated[float | None, typer.Option("--disk", help="Disk in GB.", min=0)] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE in the executor's environment.")] = None,
    workdir: Annotated[str | None, typer.Option("--workdir", help="Working directory in the container.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Task name.")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE tag (repeatable).")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Run one command in a container as a task: `tesk run [--wait] IMAGE -- CMD ...`. Prints the id."""
    body = run_task_body(image, command, inputs, outputs, cpu, ram, disk, env, workdir, name, tags)
    with _session(url, token) as client:
        task_id = client.create(body)
        if not wait:
            out.print(task_id)
            return
        err.print(f"{task_id} created", style="dim")
        _wait(client, [task_id])
        raise typer.Exit(_print_outputs(client.get(task_id, "FULL")))


def run_task_body(
    image: str,
    command: list[str],
    inputs: list[str] | None,
    outputs: list[str] | None,
    cpu: int | None,
    ram: float | None,
    disk: float | None,
    env: list[str] | None,
    workdir: str | None,
    name: str | None,
    tags: list[str] | None,
) -> dict[str, Any]:
    """The TES task `tesk run` sends: one executor, staged files, resources."""
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise _fail("give the command to run after the image: tesk run IMAGE -- CMD [ARG...]")
    executor: dict[str, Any] = {"image": image, "command": command}
    if env:
        executor["env"] = _pairs(env, "--env")
    if workdir:
        executor["workdir"] = workdir
    body: dict[str, Any] = {"name": name or f"{image.rsplit('/', 1)[-1]}: {' '.join(command)}"[:200], "executors": [executor]}
    if inputs:
        body["inputs"] = [_file(item, "--input") for item in inputs]
    if outputs:
        body["outputs"] = [_file(item, "--output") for item in outputs]
    resources = {k: v for k, v in (("cpu_cores", cpu), ("ram_gb", ram), ("disk_gb", disk)) if v is not None}
    if resources:
        body["resources"] = resources
    if tags:
        body["tags"] = _pairs(tags, "--tag")
    return body


def _file(item: str, option: str) -> dict[str, str]:
    path, sep, location = item.partition("=")
    if not sep or not path.startswith("/") or not location:
        raise _fail(f"{option} {item!r} must be PATH=URL with an absolute container PATH, e.g. /data/in.txt=s3://b/in.txt")
    entry = {"path": path.rstrip("/") or "/", "url": location}
    if path.endswith("/") and path != "/":
        entry["type"] = "DIRECTORY"
    return entry


def _print_outputs(task: dict[str, Any]) -> int:
    """What `docker run` would show: each executor's stdout and stderr, then the exit code to use."""
    state = task["state"]
    logs = (task.get("logs") or [{}])[-1]
    code = OUTCOME_EXIT_CODES.get(state, FAILED_COMMAND)
    for executor_log in logs.get("logs", []):
        if executor_log.get("stdout"):
            sys.stdout.write(executor_log["stdout"])
        if executor_log.get("stderr"):
            sys.stderr.write(executor_log["stderr"])
        if state == "EXECUTOR_ERROR" and executor_log.get("exit_code"):
            code = min(max(int(executor_log["exit_code"]), 1), 255)
    sys.stdout.flush()
    for line in logs.get("system_logs", []) if state == "SYSTEM_ERROR" else []:
        err.print(line, style="red", markup=False)
    _print_reason(task)
    return code


def _print_reason(task: dict[str, Any]) -> None:
    """`<id> <state>: <reason> (executor <i>)` on stderr for a task that says why it failed
    (docs/extensions.md, tesk.failure_reason): a line a person reads, the JSON stays clean."""
    metadata = (task.get("logs") or [{}])[-1].get("metadata") or {}
    reason = metadata.get(REASON_KEY)
    if reason:
        executor = metadata.get(EXECUTOR_KEY)
        err.print(f"{task.get('id', '')} {task.get('state', '')}: {reason}"
                  + (f" (executor {executor})" if executor is not None else ""), style="red", markup=False)


# -- list / get / cancel / logs ---------------------------------------------------------------------


@task_app.command("list")
def list_tasks(
    state: Annotated[str | None, typer.Option("--state", help="Only tasks in this state.")] = None,
    name_prefix: Annotated[str | None, typer.Option("--name-prefix", help="Only names starting with this.")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE, or KEY for any value (repeatable).")] = None,
    page_size: Annotated[int | None, typer.Option("--page-size", min=1, max=2047, help="Tasks per page.")] = None,
    page_token: Annotated[str | None, typer.Option("--page-token", help="Continue a listing.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (BASIC view): one ListTasks body, all pages' tasks with --all.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List tasks, newest first, as a table."""
    params: dict[str, Any] = {"view": "BASIC"}
    if state:
        params["state"] = state.upper()
    if name_prefix:
        params["name_prefix"] = name_prefix
    tag_pairs = _pairs(tags, "--tag")
    if tag_pairs:
        params["tag_key"] = list(tag_pairs)
        params["tag_value"] = list(tag_pairs.values())
    if page_size:
        params["page_size"] = page_size
    if page_token:
        params["page_token"] = page_token
    tasks: list[dict[str, Any]] = []
    with _session(url, token) as client:
        while True:
            page = client.list(params)
            tasks += page.get("tasks", [])
            params["page_token"] = page.get("next_page_token")
            if not all_pages or not params["page_token"]:
                break
    if as_json:
        body: dict[str, Any] = {"tasks": tasks}
        if params["page_token"]:
            body["next_page_token"] = params["page_token"]
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("NAME", no_wrap=True, overflow="ellipsis")
    table.add_column("CREATED", no_wrap=True)
    for task in tasks:
        created = task.get("creation_time", "")[:19].replace("T", " ")
        table.add_row(task["id"], _state_text(task["state"]), task.get("name", ""), created)
    out.print(table)
    if params["page_token"]:
        err.print(f"more tasks: add --page-token {params['page_token']} (or --all)", style="dim")


@task_app.command("get")
def get(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    view: Annotated[str, typer.Option("--view", help="MINIMAL, BASIC or FULL.")] = "BASIC",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print one task as JSON."""
    with _session(url, token) as client:
        task = client.get(task_id, view.upper())
    if out.is_terminal:
        out.print_json(data=task)
    else:
        sys.stdout.write(json.dumps(task, indent=2) + "\n")
    _print_reason(task)


@task_app.command("cancel")
def cancel(
    task_ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel tasks (a task that already finished is left as it is)."""
    with _session(url, token) as client:
        for task_id in task_ids:
            client.cancel(task_id)
            out.print(f"{task_id} {client.get(task_id)['state']}")


@task_app.command("logs")
def logs(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    executor: Annotated[int | None, typer.Option("--executor", "-n", min=0, help="Only executor N (from 0).")] = None,
    stderr: Annotated[bool, typer.Option("--stderr", help="Print stderr instead of stdout.")] = False,
    system: Annotated[bool, typer.Option("--system", help="Print the system logs instead.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print an executor's stdout (or stderr), from the task's latest attempt."""
    with _session(url, token) as client:
        task = client.get(task_id, "FULL")
    attempts = task.get("logs") or []
    if not attempts:
        err.print(f"{task_id} has no logs yet (it is {task['state']})", style="dim")
        return
    latest = attempts[-1]
    if system:
        for line in latest.get("system_logs", []):
            sys.stdout.write(line + "\n")
        return
    executor_logs = latest.get("logs", [])
    if executor is not None:
        if executor >= len(task.get("executors", [])):
            raise _fail(f"{task_id} has {len(task.get('executors', []))} executor(s); --executor counts from 0")
        if executor >= len(executor_logs):
            err.print(f"executor {executor} of {task_id} has not run (the task is {task['state']})", style="dim")
            return
        executor_logs = [executor_logs[executor]]
    for entry in executor_logs:
        sys.stdout.write(entry.get("stderr" if stderr else "stdout") or "")
    sys.stdout.flush()


# -- wait -------------------------------------------------------------------------------------------


@task_app.command("wait")
def wait(
    task_ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Follow tasks until they finish; the exit code mirrors the outcome (see `tesk task --help`)."""
    with _session(url, token) as client:
        code = _wait(client, task_ids)
    raise typer.Exit(code)


def _wait(client: TesClient, task_ids: list[str]) -> int:
    """Follow every task (one event stream each) with a live table on stderr; the worst exit code."""
    states = {task_id: "…" for task_id in task_ids}
    started = time.monotonic()
    changed = threading.Event()
    failures: list[ClientError] = []

    def follower(task_id: str) -> Callable[[], None]:
        def follow() -> None:
            def on_state(state: str) -> None:
                states[task_id] = state
                changed.set()
                if not err.is_terminal:
                    err.print(f"{task_id} {state}")

            try:
                client.follow(task_id, on_state)
            except ClientError as exc:
                failures.append(exc)
            finally:
                changed.set()

        return follow

    threads = [threading.Thread(target=follower(t), daemon=True) for t in task_ids]
    for thread in threads:
        thread.start()

    def running() -> bool:
        return any(thread.is_alive() for thread in threads) and not failures

    if err.is_terminal:
        with Live(_progress(states, started), console=err, auto_refresh=False) as live:
            while running():
                changed.wait(1.0)
                changed.clear()
                live.update(_progress(states, started), refresh=True)
    else:
        while running():
            changed.wait(1.0)
            changed.clear()
    if failures:
        raise failures[0]
    return max(OUTCOME_EXIT_CODES.get(s, FAILED_COMMAND) for s in states.values())


def _progress(states: dict[str, str], started: float) -> Table:
    table = Table("TASK", "STATE", box=None, pad_edge=False, caption=f"{time.monotonic() - started:.0f}s")
    for task_id, state in states.items():
        table.add_row(task_id, _state_text(state))
    return table
