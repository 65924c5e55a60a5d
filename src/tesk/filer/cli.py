"""`tesk filer`: the entrypoint of Kubernetes filer Jobs, and a standalone transfer tool.

Input: a JSON document (from a file, gzip-compressed or not, or from stdin):

    {"direction": "inputs" | "outputs", "base": "/path/of/the/task/area",
     "inputs": [tesInput, ...] | "outputs": [tesOutput, ...]}

Progress and failures go to stderr as they happen. The last line on stdout is one JSON object,
`{"outputs": [tesOutputFileLog...], "system_logs": [...], "error": null | "..."}`, the report. With
`--termination-log PATH` (a Kubernetes container's terminationMessagePath) it is written there too
(`tesk.filer.report`). The exit status is 0 on success, 1 when a transfer failed, 2 when the JSON is
unusable.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ValidationError

from tesk.filer.area import TaskArea
from tesk.filer.errors import FilerError, StagingError
from tesk.filer.report import termination_message
from tesk.config.filer import FilerSettings
from tesk.filer.staging import stage_inputs, stage_outputs
from tesk.models import Input, Output, OutputFileLog


class FilerJob(BaseModel):
    """The JSON document `tesk filer` reads."""

    direction: Literal["inputs", "outputs"]
    base: Path
    inputs: list[Input] = []
    outputs: list[Output] = []


def read_job(source: str) -> FilerJob:
    """Parse the job document from a path or `-` (stdin); gzip is detected by its magic bytes."""
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return FilerJob.model_validate_json(raw)


async def run_job(job: FilerJob, settings: FilerSettings) -> dict[str, Any]:
    """Run the transfers of one job; the result document (never raises FilerError)."""
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr, flush=True)

    outputs: list[OutputFileLog] = []
    error: str | None = None
    area = TaskArea(job.base)
    try:
        if job.direction == "inputs":
            await stage_inputs(job.inputs, area, settings, log)
        else:
            outputs = await stage_outputs(job.outputs, area, settings, log)
    except StagingError as exc:
        outputs, error = exc.outputs, str(exc)
    except FilerError as exc:
        error = str(exc)
    if error:
        print(error, file=sys.stderr, flush=True)
        lines.append(error)
    return {
        "outputs": [o.model_dump() for o in outputs],
        "system_logs": lines,
        "error": error,
    }


def filer(
    job_file: Annotated[
        str, typer.Argument(help="JSON job document (gzip allowed), or '-' to read it from stdin.")
    ] = "-",
    termination_log: Annotated[
        Path | None, typer.Option(help="Also write the report here (a container's terminationMessagePath).")
    ] = None,
) -> None:
    """Stage a task's inputs into, or outputs out of, a task area (the filer Job entrypoint)."""
    try:
        job = read_job(job_file)
    except (OSError, ValueError, ValidationError) as exc:
        message = " ".join(str(exc).split())[:500]
        print(f"tesk filer: cannot read the job document {job_file!r}: {message}", file=sys.stderr)
        raise typer.Exit(2) from None
    if not job.base.is_dir():
        print(f"tesk filer: the task area {job.base} does not exist or is not a folder", file=sys.stderr)
        raise typer.Exit(2)
    try:
        settings = FilerSettings()
    except ValidationError as exc:
        message = " ".join(str(exc).split())[:500]
        print(f"tesk filer: the filer settings in the environment are invalid: {message}", file=sys.stderr)
        raise typer.Exit(2) from None
    # The task's other pods (executors, possibly as another uid) share the area through the pod's
    # group (fsGroup): folders the filer makes must be group-writable, whatever the image's umask.
    os.umask(0o002)
    result = asyncio.run(run_job(job, settings))
    report = json.dumps(result)
    print(report, flush=True)
    if termination_log is not None:
        try:
            termination_log.write_text(termination_message(report))
        except OSError as exc:
            print(f"tesk filer: cannot write the report to {termination_log}: {exc}", file=sys.stderr, flush=True)
    raise typer.Exit(1 if result["error"] else 0)
