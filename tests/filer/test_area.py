"""TaskArea: the container-path -> host-path mapping, its refusals, globbing and mounts."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tesk.filer import NotFoundError, RefusedError, TaskArea
from tesk.models import FileType, Input, Output


def test_container_paths_map_under_the_base(area: TaskArea) -> None:
    assert area.host_path("/data/in.txt") == area.base / "data" / "in.txt"
    assert area.container_path(area.base / "data" / "in.txt") == "/data/in.txt"


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("data/in.txt", "not absolute"),
        ("/data/../etc/passwd", "'..'"),
        ("/data/./x", "'..'"),
        ("/", "whole container"),
        ("/data/\x00x", "NUL"),
    ],
)
def test_bad_container_paths_are_refused(area: TaskArea, path: str, says: str) -> None:
    with pytest.raises(RefusedError, match=says):
        area.host_path(path)


def test_resolve_follows_links_inside_the_area_as_the_container_would(area: TaskArea) -> None:
    (area.base / "data").mkdir()
    (area.base / "data" / "real.txt").write_text("x")
    # An absolute target is a container path: it resolves inside the area, not on the host.
    os.symlink("/data/real.txt", area.base / "data" / "abs-link")
    os.symlink("real.txt", area.base / "data" / "rel-link")
    assert area.resolve("/data/abs-link") == area.base / "data" / "real.txt"
    assert area.resolve("/data/rel-link") == area.base / "data" / "real.txt"


def test_resolve_refuses_links_that_climb_out(area: TaskArea) -> None:
    (area.base / "data").mkdir()
    os.symlink("../../../../../etc/passwd", area.base / "data" / "escape")
    with pytest.raises(RefusedError, match="climbs above the task area"):
        area.resolve("/data/escape")


def test_absolute_link_to_a_host_file_is_not_followed_to_the_host(area: TaskArea) -> None:
    (area.base / "data").mkdir()
    os.symlink("/etc/hostname", area.base / "data" / "host-file")
    with pytest.raises(RefusedError, match="the symlink /data/host-file points to /etc/hostname, which does not "
                                           "exist in the task area"):
        area.resolve("/data/host-file")
    with pytest.raises(NotFoundError, match="/data/none does not exist in the task area"):
        area.resolve("/data/none")


@pytest.mark.parametrize("make", [os.mkfifo, lambda path: socket.socket(socket.AF_UNIX).bind(str(path))])
def test_only_regular_files_and_folders_are_opened(area: TaskArea, make: Callable[[Path], None]) -> None:
    # A FIFO would hang a reader, a device node planted by a container would read the host's device.
    (area.base / "data").mkdir()
    make(area.base / "data" / "odd")
    os.symlink("odd", area.base / "data" / "link")
    for path in ("/data/odd", "/data/link"):
        with pytest.raises(RefusedError, match="/data/odd is a (FIFO|socket) in the task area; it was not opened"):
            area.resolve(path)


def test_nothing_is_created_or_written_through_a_link(area: TaskArea, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file.txt").write_text("host")
    (area.base / "data").mkdir()
    os.symlink(outside, area.base / "data" / "dir")
    os.symlink(outside / "file.txt", area.base / "data" / "file.txt")
    os.symlink("/data/real", area.base / "data" / "inside")  # even a link that stays inside
    for attempt in (
        lambda: area.make_folder("/data/dir/new"),
        lambda: area.touch("/data/dir/new.txt"),
        lambda: area.touch("/data/file.txt"),
        lambda: area.open("/data/file.txt", os.O_WRONLY | os.O_TRUNC, follow=False),
        lambda: area.make_folder("/data/inside"),
        lambda: area.mounts([], [Output(path="/data/dir/out/x.txt", url="s3://b/x")], ["/data/dir/vol"]),
    ):
        with pytest.raises(RefusedError, match="is a symlink in the task area; tesk does not create or write"):
            attempt()
    assert sorted(p.name for p in outside.iterdir()) == ["file.txt"]
    assert (outside / "file.txt").read_text() == "host"
    assert not (area.base / "data" / "real").exists()


def test_prepare_parent_never_writes_through_a_symlinked_folder(area: TaskArea, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, area.base / "data")
    with pytest.raises(RefusedError, match="/data/in.txt: /data is a symlink in the task area"):
        area.prepare_parent("/data/in.txt")
    assert list(outside.iterdir()) == []


def _tree(area: TaskArea, *files: str) -> None:
    for name in files:
        path = area.host_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_glob_star_does_not_cross_slashes_and_skips_dotfiles(area: TaskArea) -> None:
    _tree(area, "/work/a.txt", "/work/b.txt", "/work/.hidden.txt", "/work/sub/c.txt", "/work/a.log")
    assert area.glob("/work/*.txt", print) == ["/work/a.txt", "/work/b.txt"]
    assert area.glob("/work/*/*.txt", print) == ["/work/sub/c.txt"]
    assert area.glob("/work/.*.txt", print) == ["/work/.hidden.txt"]
    assert area.glob("/work/[ab].???", print) == ["/work/a.log", "/work/a.txt", "/work/b.txt"]
    assert area.glob("/nothing/*", print) == []


def test_mounts_fold_nested_folders_and_keep_image_folders_visible(area: TaskArea) -> None:
    mounts = area.mounts(
        inputs=[
            Input(path="/data/in/a.txt", content="x"),
            Input(path="/data/in/ref", url="s3://b/ref/", type=FileType.DIRECTORY),
            Input(path="/usr/local/share/tool.cfg", content="y"),
        ],
        outputs=[
            Output(path="/data/out/*.bam", path_prefix="/data/out", url="s3://b/run/"),
            Output(path="/results", url="s3://b/results/", type=FileType.DIRECTORY),
        ],
        volumes=["/data/in/scratch"],
    )
    assert [(m.container_path, m.sub_path) for m in mounts] == [
        ("/data/in", "data/in"),
        ("/data/out", "data/out"),
        ("/results", "results"),
        ("/usr/local/share", "usr/local/share"),
    ]
    assert all(m.host_path.is_dir() and m.host_path == area.host_path(m.container_path) for m in mounts)


def test_a_file_directly_under_root_is_mounted_alone(area: TaskArea) -> None:
    mounts = area.mounts(inputs=[Input(path="/config.json", content="{}")], outputs=[])
    assert [m.container_path for m in mounts] == ["/config.json"]
    assert mounts[0].host_path.is_file()
