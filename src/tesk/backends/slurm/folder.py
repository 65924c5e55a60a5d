"""A task's folder on the shared file system: what the API and the worker on the node exchange.

- `task.json`: the task as the API stored it (written by the API before sbatch);
- `job.sh`, `job_id`, `slurm.out`: the batch script, the job's id (written after sbatch accepted it)
  and the job's own output (the worker's log lines);
- `report.json`: the worker's latest report: state, this run's task log, whether it is final, and
  which run of the job wrote it (Slurm's restart count: a requeued job runs the worker again).
  Written to a temporary name and renamed, so a reader never sees half a report;
- `work/`: the local runtime's task area on the node (removed by the worker when the task ends).
Reports through files need no network path from the nodes to the API and no credentials, and a
report written while the API is down is read when it is back: nothing the worker reports is lost.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tesk.backends.local.folder import TaskFolder
from tesk.models import State, Task, TaskLog


@dataclass(frozen=True)
class Report:
    state: State
    log: TaskLog
    final: bool
    run: int = 0
    """The job's restart count when the worker wrote it (`SLURM_RESTART_COUNT`, unset on the first run)."""


class JobFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.task_file = root / "task.json"
        self.script = root / "job.sh"
        self.job_id_file = root / "job_id"
        self.output = root / "slurm.out"
        self.report_file = root / "report.json"
        self.work = TaskFolder(root / "work")

    def write_task(self, task: Task) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._write(self.task_file, task.model_dump_json(exclude_none=True))

    def read_task(self) -> Task:
        return Task.model_validate_json(self.task_file.read_text())

    def write_job_id(self, job_id: str) -> None:
        self._write(self.job_id_file, job_id)

    def job_id(self) -> str | None:
        try:
            return self.job_id_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def write_report(self, report: Report) -> None:
        body = {"state": report.state.value, "final": report.final, "run": report.run,
                "log": report.log.model_dump(mode="json")}
        self._write(self.report_file, json.dumps(body))

    def read_report(self) -> Report | None:
        try:
            body = json.loads(self.report_file.read_text())
        except FileNotFoundError:
            return None
        return Report(State(body["state"]), TaskLog.model_validate(body["log"]), bool(body["final"]),
                      int(body.get("run", 0)))

    def report_changed(self) -> float | None:
        """The report's modification time (None: no report yet), to notice a new one without reading it."""
        try:
            return self.report_file.stat().st_mtime
        except FileNotFoundError:
            return None

    def output_tail(self, limit: int = 2000) -> str:
        """The end of the job's output file (the worker's own messages), for a system log line."""
        try:
            with self.output.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - limit))
                return handle.read().decode("utf-8", errors="replace").strip()
        except FileNotFoundError:
            return ""

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _write(path: Path, text: str) -> None:
        """Write whole or not at all (temporary file, fsync, rename), as a shared file system allows."""
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
