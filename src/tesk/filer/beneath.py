"""Open a path beneath a task area's root without ever leaving it: the one walk every host-side
access to a task's files goes through (the filer's inputs and outputs, the local backend's
stdin/stdout/stderr, workdir and mount folders), on the local host and in the Kubernetes filer pod.

User code runs in the area, so any entry in it may be a symlink to a host file, a device node or a
FIFO. The walk therefore opens one component at a time relative to its parent's file descriptor
with `O_NOFOLLOW`, never handing a multi-component path to the kernel: what is checked is what is
opened, whatever changes in the area meanwhile. A symlink is either refused (`follow=False`, for
everything tesk creates or writes) or resolved the way the container sees it (`follow=True`, for
reading): an absolute target starts again at the area's root, like a chroot, and a `..` above the
root is refused. Only regular files and folders are ever opened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tesk.filer.errors import NotFoundError, RefusedError

_MAX_SYMLINKS = 40
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC


@dataclass(frozen=True)
class Opened:
    """An open file or folder beneath the area: its descriptor (the caller closes it) and the
    resolved container path segments (no symlink among them)."""

    fd: int
    parts: tuple[str, ...]

    @property
    def container_path(self) -> str:
        return "/" + "/".join(self.parts)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file or folder"


def open_beneath(
    root: Path,
    parts: Sequence[str],
    original: str,
    *,
    flags: int = os.O_RDONLY,
    mode: int = 0o644,
    follow: bool = True,
    create_folders: bool = False,
) -> Opened:
    """Open container path `parts` (already checked segments) beneath `root` with `flags`.

    The leaf may be a regular file or a folder; `os.O_DIRECTORY` in `flags` asks for a folder,
    `os.O_CREAT` creates a missing file, `create_folders` creates missing folders on the way (and
    the leaf too when `O_DIRECTORY` is given). `original` is the path named in messages.
    Raises NotFoundError for a missing path and RefusedError for anything that would leave the area
    (a `..` above the root, a link whose target is not in the area), a symlink when `follow` is
    False, or a leaf that is not a regular file or folder.
    """
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)]
    names: list[str] = []
    pending = list(parts)
    hops = 0
    link_note = ""
    want_folder = bool(flags & os.O_DIRECTORY)
    try:
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not names:
                    raise RefusedError(f"{original}: a symlink climbs above the task area; it was not followed")
                os.close(stack.pop())
                names.pop()
                continue
            here = "/" + "/".join([*names, part])
            last = not pending
            try:
                info: os.stat_result | None = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None and stat.S_ISLNK(info.st_mode):
                if not follow:
                    raise RefusedError(
                        f"{original}: {here} is a symlink in the task area; tesk does not create or write "
                        "anything through a link, so it was not followed"
                    )
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise RefusedError(f"{original}: too many levels of symlinks")
                target = os.readlink(part, dir_fd=stack[-1])
                link_note = f"the symlink {here} points to {target}"
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names = []
                pending = [p for p in target.split("/") if p] + pending
                continue
            if info is None:
                if not (create_folders and (not last or want_folder)) and not (last and flags & os.O_CREAT):
                    if link_note:
                        raise RefusedError(f"{original}: {link_note}, which does not exist in the task area; links "
                                           "are resolved inside the task area, as the container sees them, "
                                           "never on the host")
                    raise NotFoundError(f"{original} does not exist in the task area")
                if not last or want_folder:
                    # 0o777 less the umask, as mkdir -p: `tesk filer` sets umask 002 so that executors
                    # sharing only the pod's group (fsGroup) can write in the folders it makes.
                    with contextlib.suppress(FileExistsError):  # made meanwhile: the open below checks it
                        os.mkdir(part, 0o777, dir_fd=stack[-1])
            elif not (stat.S_ISDIR(info.st_mode) or (last and not want_folder and stat.S_ISREG(info.st_mode))):
                what = "not a folder" if not last or want_folder else _kind(info.st_mode)
                raise RefusedError(f"{original}: {here} is {what} in the task area; it was not opened")
            if not last:
                stack.append(os.open(part, _FOLDER_FLAGS, dir_fd=stack[-1]))
                names.append(part)
                continue
            fd = os.open(part, flags | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, mode, dir_fd=stack[-1])
            opened = os.fstat(fd)
            if not (stat.S_ISREG(opened.st_mode) or stat.S_ISDIR(opened.st_mode)) or (
                info is not None and (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino)
            ):
                os.close(fd)
                raise RefusedError(f"{original}: {here} changed while it was opened; it was not used")
            os.set_blocking(fd, True)
            return Opened(fd, (*names, part))
        # The path ended on a folder reached through `..` or a link (`/x -> /data`): that folder.
        if not names:
            raise RefusedError(f"{original}: it leads to the task area's root, which is no file or folder of the task")
        if not want_folder and flags & (os.O_WRONLY | os.O_RDWR):
            raise RefusedError(f"{original}: {'/' + '/'.join(names)} is a folder; it cannot be written as a file")
        return Opened(os.dup(stack[-1]), tuple(names))
    except OSError as exc:  # e.g. a folder opened for writing, a full disk, no permission
        raise RefusedError(f"{original}: cannot open it in the task area: {exc.strerror or exc}") from None
    finally:
        for fd in stack:
            os.close(fd)


@contextlib.contextmanager
def opened_beneath(root: Path, parts: Sequence[str], original: str, **options: object) -> Iterator[Opened]:
    """`open_beneath` as a context manager that closes the descriptor."""
    found = open_beneath(root, parts, original, **options)  # type: ignore[arg-type]
    try:
        yield found
    finally:
        os.close(found.fd)
