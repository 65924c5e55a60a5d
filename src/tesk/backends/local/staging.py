"""Minimal staging until the filer (`tesk.filer`) is wired in: inline `content` and `file://` URLs.

Only what the local backend needs to be useful on its own: inline content inputs, and files or
folders under the host folders listed in `TESK_FILE_ROOTS` (nothing is allowed when it is unset).
The call shape is the filer's, so switching is a one-line change in the runtime.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from tesk.backends.local.area import TaskArea
from tesk.models import FileType, Input, Output, OutputFileLog, has_wildcards
from tesk.runner import Note, TaskFailure


def file_roots() -> list[Path]:
    """The host folders `file://` URLs may touch (`TESK_FILE_ROOTS`, `:`-separated)."""
    raw = os.environ.get("TESK_FILE_ROOTS", "")
    return [Path(p).resolve() for p in raw.split(":") if p.strip()]


def _host_file(url: str, what: str) -> Path:
    """The host path of a `file://` URL or bare absolute path, refused outside the allowed roots."""
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        raise TaskFailure(
            f"{what}: the URL scheme {parsed.scheme!r} of {url} is not supported by this server yet "
            "(only inline content and file:// are)"
        )
    path = Path(unquote(parsed.path)).resolve()
    roots = file_roots()
    if not any(path == root or root in path.parents for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none (TESK_FILE_ROOTS is not set)"
        raise TaskFailure(f"{what}: {url} is outside the folders file:// may use; allowed: {allowed}")
    return path


def stage_inputs(inputs: list[Input], area: TaskArea, log: Note) -> None:
    """Put every input at its container path in the area."""
    for item in inputs:
        target = area.host_path(item.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.content:
            target.write_text(item.content, encoding="utf-8")
            continue
        assert item.url is not None
        source = _host_file(item.url, f"input {item.path}")
        try:
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                # A stream copy, not copyfile: a named pipe (a producer on the host) is a valid input.
                with source.open("rb") as reader, target.open("wb") as writer:
                    shutil.copyfileobj(reader, writer, 1024 * 1024)
        except OSError as exc:
            raise TaskFailure(f"input {item.path}: could not copy {item.url}: {exc.strerror or exc}") from exc
    if inputs:
        log(f"staged {len(inputs)} input(s)")


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def stage_outputs(outputs: list[Output], area: TaskArea, log: Note) -> list[OutputFileLog]:
    """Copy every output from the area to its `file://` destination; one log entry per file."""
    done: list[OutputFileLog] = []
    for out in outputs:
        destination = _host_file(out.url, f"output {out.path}")
        pairs: list[tuple[str, Path]] = []
        if has_wildcards(out.path):
            prefix = (out.path_prefix or "/").rstrip("/") + "/"
            for match in sorted(glob.glob(str(area.host_path(out.path)))):
                sources = _files_under(Path(match)) if Path(match).is_dir() else [Path(match)]
                for src in sources:
                    path = "/" + str(src.relative_to(area.files))
                    pairs.append((path, destination / path.removeprefix(prefix)))
        else:
            source = area.host_path(out.path)
            if source.is_dir() and out.type is not FileType.FILE:
                for src in _files_under(source):
                    pairs.append(("/" + str(src.relative_to(area.files)), destination / src.relative_to(source)))
            elif source.is_file():
                pairs.append((out.path, destination))
            else:
                raise TaskFailure(f"output {out.path}: no such file or folder after the executors ran")
        for path, target in pairs:
            src = area.host_path(path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
            except OSError as exc:
                raise TaskFailure(f"output {path}: could not copy to {target}: {exc.strerror or exc}") from exc
            done.append(OutputFileLog(url=target.as_uri(), path=path, size_bytes=str(src.stat().st_size)))
    if outputs:
        log(f"uploaded {len(done)} output file(s)")
    return done
