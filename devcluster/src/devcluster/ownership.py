"""Who owns a volume's files and with which mode, as a node's kubelet and provisioners leave them.

Why: a backend that writes into a claim as a non-root uid works on kind and k3s (local-path
hands out `0777` folders) and fails on every cloud's block storage, whose fresh ext4/xfs root is
`root:root 0755`, unless the pod asks for `fsGroup`. The stand-in makes these files the same way, so
that difference shows in tests:

* `make_volume_root`: a new claim's folder as its provisioner leaves it (`root:root`, mode and an
  ext4 `lost+found` from `storage.fresh_root`), and an emptyDir as the kubelet's `setupDir` makes it
  (`0777`).
* `set_volume_ownership`: the kubelet's `SetVolumeOwnership` (pkg/volume/volume_linux.go) for
  `fsGroup`: every entry, children before their folder, gets group fsGroup (`lchown`, so a symlink
  itself, never its target) and, symlinks excepted, `|0660` (`|0440` read-only), folders also
  `|0110` and setgid. `fsGroupChangePolicy: OnRootMismatch` skips the walk when the root already
  has that group, at least those bits and setgid (`requiresPermissionChange`); `Always` or no
  policy walks on every mount. emptyDir and the API-data volumes (configMap, secret, downwardAPI,
  projected) pass no policy, so they are always walked, the latter after every write. Like the kubelet, a failed chown or chmod is logged, not fatal.
* `make_sub_path`: a missing subPath folder as the kubelet's `SafeMakeDir` makes it (kubelet_pods.go
  makeMounts, subpath_linux.go doSafeMakeDir): each missing level is made, without following a
  symlink, with the volume root's mode (setgid included); as the kubelet runs as root, the folder is
  root's, with the group the kernel gives it (the parent's when the parent is setgid).

The stand-in is meant to run as root (CI does, with rootful podman), so these ownerships are real.
Run as another user, it cannot give folders to root or groups to fsGroup: they stay this user's
(writable by it, so kinder than a cluster), and the failed chowns are logged at debug level.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from devcluster.storage import FreshRoot

log = logging.getLogger(__name__)

EMPTY_DIR = FreshRoot(0o777, lost_found=False)
"""The kubelet's emptyDir `setupDir` permission (pkg/volume/emptydir/empty_dir.go `perm`)."""
LOST_FOUND_MODE = 0o700
RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110
ON_ROOT_MISMATCH = "OnRootMismatch"


def make_volume_root(folder: Path, root: FreshRoot) -> None:
    """Make a volume's root folder owned by root with exactly its mode (no umask), and the `lost+found`
    of a fresh ext4 file system where it has one; an existing root is left as it is."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    folder.chmod(root.mode)
    _chown(folder, 0, 0)
    if root.lost_found:
        lost_found = folder / "lost+found"
        lost_found.mkdir()
        lost_found.chmod(LOST_FOUND_MODE)
        _chown(lost_found, 0, 0)


def requires_permission_change(root: Path, fs_group: int, read_only: bool) -> bool:
    """The kubelet's `requiresPermissionChange`: the root lacks fsGroup, the bits, or setgid."""
    try:
        info = root.stat()
    except OSError:
        return True
    if info.st_gid != fs_group or not stat.S_ISDIR(info.st_mode):
        return True
    needed = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return info.st_mode & needed != needed or not info.st_mode & stat.S_ISGID


def set_volume_ownership(root: Path, fs_group: int | None, policy: str | None, read_only: bool = False) -> bool:
    """Apply `fsGroup` to a mounted volume; returns whether the recursive walk ran."""
    if fs_group is None:
        return False
    if policy == ON_ROOT_MISMATCH and not requires_permission_change(root, fs_group, read_only):
        return False
    _walk(root, os.lstat(root), fs_group, RO_MASK if read_only else RW_MASK)
    return True


def _walk(path: Path, info: os.stat_result, fs_group: int, mask: int) -> None:
    """walkDeep: a folder's entries (lstat, so a symlink is never entered) before the folder itself."""
    if stat.S_ISDIR(info.st_mode):
        for name in os.listdir(path):
            child = path / name
            try:
                child_info = os.lstat(child)
            except FileNotFoundError:
                continue
            _walk(child, child_info, fs_group, mask)
    _change(path, info, fs_group, mask)


def _change(path: Path, info: os.stat_result, fs_group: int, mask: int) -> None:
    """changeFilePermission: the group of the entry itself; the mode of anything but a symlink."""
    try:
        os.lchown(path, -1, fs_group)
    except OSError as exc:
        log.debug("volume ownership: lchown %s to group %d failed: %s", path, fs_group, exc)
    if stat.S_ISLNK(info.st_mode):
        return
    bits = mask | (EXEC_MASK | stat.S_ISGID if stat.S_ISDIR(info.st_mode) else 0)
    try:
        os.chmod(path, stat.S_IMODE(info.st_mode) | bits)
    except OSError as exc:
        log.debug("volume ownership: chmod %s failed: %s", path, exc)


def make_sub_path(volume_root: Path, sub_path: str) -> Path:
    """Create the missing folders of `sub_path` beneath `volume_root` with the root's mode.

    `sub_path` is the subPath with the symlinks of its existing part resolved (and found inside the
    volume), as the kubelet resolves them before creating the rest. Every level is then opened
    without following a link, so a symlink swapped in meanwhile raises OSError (ELOOP) instead of
    leading out of the volume; a file in the way raises ENOTDIR.
    """
    mode = stat.S_IMODE(volume_root.stat().st_mode)
    fd = os.open(volume_root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in [p for p in sub_path.split("/") if p not in ("", ".")]:
            if part == "..":
                raise OSError(errno.EINVAL, f"subPath {sub_path!r} must not contain '..'")
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            if made:
                os.chmod(fd, mode)  # mkdirat is subject to the umask; the kubelet fchmods afterwards
    finally:
        os.close(fd)
    return volume_root / sub_path


def _chown(path: Path, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
        log.debug("not root: %s stays owned by uid %d", path, os.getuid())
