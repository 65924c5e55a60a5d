"""A task's area on this host: one folder that mirrors the container paths every executor shares.

Container path `/data/in.txt` lives at `<area>/files/data/in.txt`. Because every shared path mirrors
the container's tree under one folder, a path nested in another shared path needs no mount of its own,
and two executors see the same files exactly as they would on the Kubernetes PVC.
"""

from __future__ import annotations

import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from tesk.models import FileType, Task, has_wildcards
from tesk.runner import TaskFailure


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted read-write at a container path."""

    host: Path
    container: str


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _output_folder(path: str) -> str:
    """The folder an output will be written in: the parent of a file, or the fixed part before a wildcard."""
    if has_wildcards(path):
        fixed: list[str] = []
        for part in path.split("/")[1:]:
            if has_wildcards(part):
                break
            fixed.append(part)
        return "/" + "/".join(fixed)
    return posixpath.dirname(path.rstrip("/"))


class TaskArea:
    """The per-task folder: `files/` (the shared container paths) and `logs/` (captured streams)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.logs = root / "logs"

    def host_path(self, container_path: str) -> Path:
        """Where a container path of this task lives on the host (paths were validated at create)."""
        return self.files / container_path.lstrip("/")

    def create(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.files.mkdir(parents=True)
        self.logs.mkdir()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def shared_paths(self, task: Task) -> list[str]:
        """Container paths shared by the executors: inputs, output folders, volumes (outermost only)."""
        wanted: list[tuple[str, str]] = []
        for item in task.inputs or []:
            wanted.append((item.path.rstrip("/") or "/", f"input {item.path}"))
        for out in task.outputs or []:
            folder = out.path.rstrip("/") if out.type is FileType.DIRECTORY else _output_folder(out.path)
            wanted.append((folder or "/", f"output {out.path}"))
        for volume in task.volumes or []:
            wanted.append((volume.rstrip("/") or "/", f"volume {volume}"))
        kept: list[str] = []
        for path, what in sorted(wanted, key=lambda item: item[0].count("/")):
            if path == "/":
                raise TaskFailure(
                    f"{what} would share the container's root folder, which would hide the image; "
                    "put it in a folder such as /data"
                )
            if not any(_is_under(path, parent) for parent in kept):
                kept.append(path)
        return sorted(kept)

    def covered(self, container_path: str, shared: list[str]) -> bool:
        return any(_is_under(container_path, parent) for parent in shared)

    def prepare(self, task: Task) -> list[Mount]:
        """Create the folders executors share (volumes and output folders start empty) and return
        the mounts; input files are put in place later by staging."""
        shared = self.shared_paths(task)
        input_files = {i.path for i in task.inputs or [] if i.type is not FileType.DIRECTORY}
        for path in shared:
            if path not in input_files:
                self.host_path(path).mkdir(parents=True, exist_ok=True)
        for out in task.outputs or []:
            folder = out.path.rstrip("/") if out.type is FileType.DIRECTORY else _output_folder(out.path)
            self.host_path(folder).mkdir(parents=True, exist_ok=True)
        return [Mount(self.host_path(path), path) for path in shared]
