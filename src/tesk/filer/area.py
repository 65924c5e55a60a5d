"""The task area: one host folder per task that mirrors the container paths the task declares.

Container path `/data/in.txt` lives at `<base>/data/in.txt`. Both backends use this one layout:
the local backend bind-mounts `<base>/<mount>` at `/<mount>` for each entry of `mounts()`, and the
Kubernetes backend mounts the task PVC with `subPath: <mount>` at the same paths, while the filer Job
sees the whole PVC at its base. Inputs are written, and outputs read, through this class only.

Outputs are read after user code ran in the area, so nothing in it is trusted: symlinks are resolved
as the container would see them (absolute targets relative to the area's root, like a chroot) and a
link that climbs out of the area is refused instead of followed to the host's files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from tesk.filer.beneath import Opened, open_beneath, opened_beneath
from tesk.filer.errors import NotFoundError, RefusedError
from tesk.models import FileType, Input, Output, has_wildcards

@dataclass(frozen=True)
class Mount:
    """One folder (or, directly under `/`, one file) of the area to mount into executor containers."""

    container_path: str
    host_path: Path

    @property
    def sub_path(self) -> str:
        """The PVC subPath of this mount (the container path without its leading `/`)."""
        return self.container_path.lstrip("/")


def container_parts(container_path: str) -> list[str]:
    """The segments of an absolute, normalised container path; anything else is refused.

    The API validates paths at create time; this check repeats it because filer Jobs take their
    JSON from a file, and a path with `..` must never reach the host file system.
    """
    if not container_path.startswith("/"):
        raise RefusedError(f"container path {container_path!r} is not absolute; TES paths start with '/'")
    if "\x00" in container_path:
        raise RefusedError("container path contains a NUL character")
    parts = [p for p in container_path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise RefusedError(f"container path {container_path!r} contains '.' or '..'; write it without them")
    if not parts:
        raise RefusedError("container path '/' names the whole container; name a file or folder below it")
    return parts


class TaskArea:
    """Maps absolute container paths to host paths under one per-task base folder."""

    def __init__(self, base: Path) -> None:
        self.base = Path(os.path.realpath(base))

    def host_path(self, container_path: str) -> Path:
        """Where a container path lives on the host (lexically; see `resolve` for reading outputs)."""
        return self.base.joinpath(*container_parts(container_path))

    def container_path(self, host_path: Path) -> str:
        """The container path of a host path inside the area."""
        rel = host_path.relative_to(self.base)
        return "/" + rel.as_posix()

    def open(
        self, container_path: str, flags: int = os.O_RDONLY, *, follow: bool = True, create_folders: bool = False
    ) -> Opened:
        """Open a container path beneath the area (see `tesk.filer.beneath`); the caller closes the fd.

        Reading (`follow=True`) resolves symlinks as the container sees them; creating or writing
        (`follow=False`) refuses any symlink on the way.
        """
        return open_beneath(
            self.base, container_parts(container_path), container_path,
            flags=flags, follow=follow, create_folders=create_folders,
        )

    def make_folder(self, container_path: str) -> Path:
        """Create a folder and its parents in the area, never through a symlink; its host path."""
        found = self.open(container_path, os.O_DIRECTORY, follow=False, create_folders=True)
        os.close(found.fd)
        return self.base.joinpath(*found.parts)

    def prepare_parent(self, container_path: str) -> Path:
        """Create the folders above an input's host path, refusing symlinks among them; a symlink
        where the input goes is removed, so the write that follows (O_NOFOLLOW) creates a new file.

        The area is ours while inputs are staged, but a DIRECTORY input's listing could contain a
        link, and staging must never write through one to another place.
        """
        parts = container_parts(container_path)
        if len(parts) > 1:
            os.close(open_beneath(self.base, parts[:-1], container_path, flags=os.O_DIRECTORY, follow=False,
                                  create_folders=True).fd)
        parent = self.base.joinpath(*parts[:-1])
        target = parent / parts[-1]
        if target.is_symlink():
            target.unlink()
        return target

    def touch(self, container_path: str) -> Path:
        """Create an empty file (parents too) unless one exists, never through a symlink; its host path."""
        found = self.open(container_path, os.O_WRONLY | os.O_CREAT, follow=False, create_folders=True)
        os.close(found.fd)
        return self.base.joinpath(*found.parts)

    def resolve(self, container_path: str) -> Path:
        """The host path of an existing file or folder, following symlinks only inside the area.

        Raises NotFoundError when the path does not exist and RefusedError when a symlink on the way
        leaves the area or the path is neither a regular file nor a folder (a device, a FIFO).
        """
        found = self.open(container_path)
        os.close(found.fd)
        return self.base.joinpath(*found.parts)

    def walk_files(self, host_dir: Path, log_skip: Callable[[str], None]) -> Iterator[Path]:
        """Regular files below a resolved folder, recursively and in name order.

        File symlinks are followed when they stay in the area; folder symlinks are not descended
        (they could loop); anything else (sockets, dangling or escaping links) is skipped with a note.
        """
        with os.scandir(host_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                container = self.container_path(path)
                try:
                    target = self.resolve(container)
                except (NotFoundError, RefusedError) as exc:
                    log_skip(f"skipped {container}: {exc}")
                    continue
                if target.is_file():
                    yield path
                else:
                    log_skip(f"skipped {container}: a symlink to a folder is not followed")
            elif entry.is_dir(follow_symlinks=False):
                yield from self.walk_files(path, log_skip)
            elif entry.is_file(follow_symlinks=False):
                yield path

    def glob(self, pattern: str, log_skip: Callable[[str], None]) -> list[str]:
        """Container paths matching a POSIX pattern (`*`, `?`, `[...]`), one segment at a time.

        `*` never crosses `/`, and a leading `.` must be matched explicitly (POSIX 2.13.3). Matches
        may be files or folders; symlinks are resolved inside the area only, and a match that cannot
        be (a link out of the area, a device) is skipped with a note.
        """
        found: list[list[str]] = [[]]
        for segment in container_parts(pattern):
            following: list[list[str]] = []
            for prefix in found:
                if not has_wildcards(segment):
                    following.append([*prefix, segment])
                    continue
                try:
                    names = sorted(self._list(prefix))
                except (NotFoundError, RefusedError):
                    continue
                for name in names:
                    if name.startswith(".") and not segment.startswith("."):
                        continue
                    if fnmatchcase(name, segment):
                        following.append([*prefix, name])
            found = following
        matches: list[str] = []
        for parts in found:
            path = "/" + "/".join(parts)
            try:
                self.resolve(path)
            except NotFoundError:
                continue
            except RefusedError as exc:
                log_skip(f"skipped {path}: {exc}")
                continue
            matches.append(path)
        return matches

    def _list(self, parts: list[str]) -> list[str]:
        """Names in a folder of the area (the root when `parts` is empty), reached beneath it."""
        if not parts:
            return os.listdir(self.base)
        with opened_beneath(self.base, parts, "/" + "/".join(parts), flags=os.O_DIRECTORY) as folder:
            return os.listdir(folder.fd)

    def mounts(
        self, inputs: Iterable[Input], outputs: Iterable[Output], volumes: Iterable[str] = ()
    ) -> list[Mount]:
        """The folders executors need, with nested ones folded into their parents; host folders created.

        A file input or output is covered by its parent folder, a DIRECTORY by itself, a wildcard
        output by the folder above its first wildcard, a task volume by itself. Mounting these rather
        than whole top-level folders keeps the image's own `/usr`, `/tmp`, ... visible (TES schemas
        issue 238). A file directly under `/` is mounted on its own and created empty if missing.
        """
        wanted: set[tuple[str, ...]] = set()
        files: set[tuple[str, ...]] = set()

        def cover(parts: list[str], is_dir: bool) -> None:
            if is_dir:
                wanted.add(tuple(parts))
            elif len(parts) > 1:
                wanted.add(tuple(parts[:-1]))
            else:
                files.add(tuple(parts))

        for item in inputs:
            cover(container_parts(item.path), item.type == FileType.DIRECTORY)
        for out in outputs:
            parts = container_parts(out.path)
            if has_wildcards(out.path):
                static = []
                for part in parts:
                    if has_wildcards(part):
                        break
                    static.append(part)
                if not static:
                    raise RefusedError(f"output {out.path}: a wildcard directly under '/' cannot be mounted")
                wanted.add(tuple(static))
            else:
                cover(parts, out.type == FileType.DIRECTORY)
        for volume in volumes:
            wanted.add(tuple(container_parts(volume)))

        kept = [p for p in wanted if not any(p[: len(q)] == q and p != q for q in wanted)]
        result: list[Mount] = []
        for folder in sorted(kept):
            path = "/" + "/".join(folder)
            result.append(Mount(path, self.make_folder(path)))
        for single in sorted(files):
            if any(single[: len(q)] == q for q in kept):
                continue
            path = "/" + "/".join(single)
            result.append(Mount(path, self.touch(path)))
        return result


def is_inside(path: Path, root: Path) -> bool:
    """True when `path` is `root` or below it (both already resolved)."""
    return path == root or root in path.parents
