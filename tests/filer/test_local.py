"""Inline content, file:// inside and outside the allowed roots, and outputs with wildcards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tesk.filer import (
    FilerSettings,
    RefusedError,
    StagingError,
    TaskArea,
    stage_inputs,
    stage_outputs,
    supported_schemes,
)
from tesk.models import FileType, Input, Output

from .conftest import Log, make_settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(root: Path) -> FilerSettings:
    return make_settings(file_roots=str(root))


async def test_inline_content_of_128_kib_is_written_byte_for_byte(area: TaskArea, log: Log) -> None:
    content = ("ünïcødé line\n" * 12000)[: 128 * 1024]
    assert len(content.encode()) >= 128 * 1024
    await stage_inputs([Input(path="/data/big.txt", content=content)], area, make_settings(), log)
    assert area.host_path("/data/big.txt").read_bytes() == content.encode("utf-8")
    assert "inline content" in log.text()


async def test_content_wins_over_url(area: TaskArea, log: Log) -> None:
    item = Input(path="/data/x", content="inline", url="ftp://unreachable.invalid/x")
    await stage_inputs([item], area, make_settings(), log)
    assert area.host_path("/data/x").read_text() == "inline"


async def test_file_inputs_inside_the_roots(
    area: TaskArea, root: Path, settings: FilerSettings, log: Log
) -> None:
    (root / "a.bin").write_bytes(bytes(range(256)) * 100)
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "one.txt").write_text("1")
    (root / "dir" / "sub" / "two.txt").write_text("2")
    await stage_inputs(
        [
            Input(path="/data/a.bin", url=(root / "a.bin").as_uri()),
            Input(path="/data/bare.bin", url=str(root / "a.bin")),  # Cromwell sends bare paths
            Input(path="/data/dir", url=(root / "dir").as_uri()),  # type inferred: a folder
        ],
        area,
        settings,
        log,
    )
    assert area.host_path("/data/a.bin").read_bytes() == (root / "a.bin").read_bytes()
    assert area.host_path("/data/bare.bin").read_bytes() == (root / "a.bin").read_bytes()
    assert area.host_path("/data/dir/sub/two.txt").read_text() == "2"
    assert "folder of 2 files" in log.text()


async def test_file_outside_the_roots_is_refused(
    area: TaskArea, tmp_path: Path, settings: FilerSettings
) -> None:
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not yours")
    with pytest.raises(RefusedError, match="outside the host folders this server may use"):
        await stage_inputs([Input(path="/data/x", url=secret.as_uri())], area, settings, Log())


async def test_symlink_inside_a_root_cannot_lead_outside(
    area: TaskArea, root: Path, tmp_path: Path, settings: FilerSettings
) -> None:
    (tmp_path / "private.txt").write_text("private")
    os.symlink(tmp_path / "private.txt", root / "innocent.txt")
    with pytest.raises(RefusedError, match="outside the host folders"):
        await stage_inputs(
            [Input(path="/data/x", url=(root / "innocent.txt").as_uri())], area, settings, Log()
        )


async def test_file_scheme_is_off_without_roots(area: TaskArea, root: Path) -> None:
    (root / "a").write_text("a")
    with pytest.raises(RefusedError, match="not enabled on this server.*TESK_FILE_ROOTS"):
        await stage_inputs([Input(path="/data/a", url=(root / "a").as_uri())], area, make_settings(), Log())
    assert "file" not in " ".join(supported_schemes(make_settings()))


async def test_seed_shared_filesystem_mode_maps_host_to_container_base(
    area: TaskArea, tmp_path: Path
) -> None:
    mounted = tmp_path / "transfer"  # where the filer Job sees the shared folder
    mounted.mkdir()
    (mounted / "in.txt").write_text("shared")
    settings = make_settings(host_base_path="/nfs/tesk", container_base_path=str(mounted))
    await stage_inputs([Input(path="/data/in.txt", url="file:///nfs/tesk/in.txt")], area, settings, Log())
    assert area.host_path("/data/in.txt").read_text() == "shared"
    assert "file:///nfs/tesk" in supported_schemes(settings)
    await _make(area, "/out/result.txt", "done")
    logs = await stage_outputs(
        [Output(path="/out/result.txt", url="file:///nfs/tesk/results/r.txt")], area, settings, Log()
    )
    assert (mounted / "results" / "r.txt").read_text() == "done"
    assert logs[0].url == "file:///nfs/tesk/results/r.txt"


async def _make(area: TaskArea, path: str, text: str) -> None:
    host = area.host_path(path)
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(text)


async def test_wildcards_with_path_prefix_and_nested_matches(
    area: TaskArea, root: Path, settings: FilerSettings, log: Log
) -> None:
    for name in ("/work/a.txt", "/work/b.txt", "/work/skip.log", "/work/s1/c.txt", "/work/s2/c.txt"):
        await _make(area, name, name)
    outputs = [
        Output(
            path="/work/*.txt", path_prefix="/work", url=(root / "run").as_uri() + "/", type=FileType.FILE
        ),
        Output(path="/work/*/c.txt", path_prefix="/work/", url=(root / "nested").as_uri()),
    ]
    logs = await stage_outputs(outputs, area, settings, log)
    assert [(o.path, o.url.removeprefix(root.as_uri()), o.size_bytes) for o in logs] == [
        ("/work/a.txt", "/run/a.txt", "11"),
        ("/work/b.txt", "/run/b.txt", "11"),
        ("/work/s1/c.txt", "/nested/s1/c.txt", "14"),
        ("/work/s2/c.txt", "/nested/s2/c.txt", "14"),
    ]
    assert (root / "nested" / "s2" / "c.txt").read_text() == "/work/s2/c.txt"
    assert all(isinstance(o.size_bytes, str) for o in logs)


async def test_wildcard_without_prefix_in_the_match_is_explained(
    area: TaskArea, root: Path, settings: FilerSettings
) -> None:
    await _make(area, "/work/a.txt", "a")
    out = Output(path="/work/*.txt", path_prefix="/other", url=root.as_uri())
    with pytest.raises(StagingError, match="path_prefix '/other' is not a prefix of the match /work/a.txt"):
        await stage_outputs([out], area, settings, Log())


async def test_wildcard_matching_nothing_is_not_an_error(
    area: TaskArea, root: Path, settings: FilerSettings, log: Log
) -> None:
    out = Output(path="/work/*.vcf", path_prefix="/work", url=root.as_uri())
    assert await stage_outputs([out], area, settings, log) == []
    assert "no file matched" in log.text()


async def test_wildcard_matching_a_folder_uploads_its_files(
    area: TaskArea, root: Path, settings: FilerSettings
) -> None:
    await _make(area, "/work/out_1/x/deep.txt", "deep")
    logs = await stage_outputs(
        [Output(path="/work/out_*", path_prefix="/work", url=root.as_uri())], area, settings, Log()
    )
    assert [(o.path, o.url) for o in logs] == [
        ("/work/out_1/x/deep.txt", (root / "out_1/x/deep.txt").as_uri())
    ]


async def test_directory_output_flattens_into_file_entries(
    area: TaskArea, root: Path, settings: FilerSettings
) -> None:
    await _make(area, "/results/a.txt", "a")
    await _make(area, "/results/deep/b.txt", "bb")
    logs = await stage_outputs([Output(path="/results", url=(root / "r").as_uri())], area, settings, Log())
    assert [(o.path, o.size_bytes) for o in logs] == [("/results/a.txt", "1"), ("/results/deep/b.txt", "2")]
    assert (root / "r" / "deep" / "b.txt").read_text() == "bb"


async def test_symlink_escape_in_outputs_is_refused_and_other_outputs_still_upload(
    area: TaskArea, root: Path, tmp_path: Path, settings: FilerSettings, log: Log
) -> None:
    (tmp_path / "host-secret").write_text("host data")
    await _make(area, "/out/good.txt", "good")
    os.symlink("../../../../../../" + str(tmp_path / "host-secret"), area.host_path("/out/evil"))
    os.symlink("/etc", area.host_path("/out/etc"))
    with pytest.raises(StagingError) as caught:
        await stage_outputs(
            [
                Output(path="/out/evil", url=(root / "evil").as_uri()),
                Output(path="/out/good.txt", url=(root / "good.txt").as_uri()),
                Output(path="/out", url=(root / "all").as_uri(), type=FileType.DIRECTORY),
            ],
            area,
            settings,
            log,
        )
    assert "climbs above the task area" in str(caught.value)
    assert not (root / "evil").exists()
    assert (root / "good.txt").read_text() == "good"
    # The folder output skipped both links with a note, and uploaded the real file.
    assert sorted(p.name for p in (root / "all").iterdir()) == ["good.txt"]
    assert "skipped /out/evil" in log.text() and "skipped /out/etc" in log.text()
    assert [o.path for o in caught.value.outputs] == ["/out/good.txt", "/out/good.txt"]


async def test_missing_output_fails_with_a_clear_line(
    area: TaskArea, root: Path, settings: FilerSettings
) -> None:
    with pytest.raises(StagingError, match="output /out/none.txt: the executors did not create it"):
        await stage_outputs([Output(path="/out/none.txt", url=(root / "n").as_uri())], area, settings, Log())


async def test_unknown_scheme_is_refused_with_the_list(area: TaskArea) -> None:
    with pytest.raises(RefusedError, match="unsupported URL scheme 'gopher'; use one of"):
        await stage_inputs([Input(path="/data/x", url="gopher://x/y")], area, make_settings(), Log())
