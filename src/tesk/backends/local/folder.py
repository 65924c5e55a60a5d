"""A task's folder on this host: `files/` (the filer's `TaskArea`, mirroring the container paths every
executor shares) and `logs/` (streams captured by the host, container id files)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tesk.filer import Mount, TaskArea


def is_under(container_path: str, mounts: list[Mount]) -> bool:
    """True when a container path lies in (or is) one of the mounted paths."""
    return any(
        container_path == m.container_path or container_path.startswith(m.container_path.rstrip("/") + "/")
        for m in mounts
    )


class TaskFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.logs = root / "logs"

    def create(self) -> TaskArea:
        """A fresh, empty folder (what an earlier attempt left is removed first)."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.files.mkdir(parents=True)
        self.logs.mkdir()
        return TaskArea(self.files)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
