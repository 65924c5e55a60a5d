"""ftp against pyftpdlib on 127.0.0.1: files and folders both ways, credentials, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tesk.filer import FilerError, NotFoundError, StagingError, TaskArea, stage_inputs, stage_outputs
from tesk.models import FileType, Input, Output

from .conftest import FtpPeer, Log, make_settings


async def test_download_file_and_inferred_folder(ftp_peer: FtpPeer, area: TaskArea, log: Log) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 3)
    (ftp_peer.root / "in.bin").write_bytes(payload)
    (ftp_peer.root / "ref" / "sub").mkdir(parents=True)
    (ftp_peer.root / "ref" / "a.txt").write_text("a")
    (ftp_peer.root / "ref" / "sub" / "b.txt").write_text("b")
    await stage_inputs(
        [
            Input(path="/data/in.bin", url=ftp_peer.url("in.bin")),
            Input(path="/data/ref", url=ftp_peer.url("ref")),  # no type: found to be a folder
        ],
        area,
        make_settings(),
        log,
    )
    assert area.host_path("/data/in.bin").read_bytes() == payload
    assert area.host_path("/data/ref/sub/b.txt").read_text() == "b"
    assert "folder of 2 files" in log.text()
    assert ftp_peer.password not in log.text()


async def test_upload_file_and_folder_creating_remote_folders(ftp_peer: FtpPeer, area: TaskArea) -> None:
    payload = os.urandom(1024 * 1024 + 1)
    (area.base / "out" / "deep").mkdir(parents=True)
    (area.base / "out" / "r.bin").write_bytes(payload)
    (area.base / "out" / "deep" / "x.txt").write_text("x")
    logs = await stage_outputs(
        [
            Output(path="/out/r.bin", url=ftp_peer.url("results/run1/r.bin")),
            Output(path="/out", url=ftp_peer.url("results/all"), type=FileType.DIRECTORY),
        ],
        area,
        make_settings(),
        Log(),
    )
    assert (ftp_peer.root / "results" / "run1" / "r.bin").read_bytes() == payload
    assert (ftp_peer.root / "results" / "all" / "deep" / "x.txt").read_text() == "x"
    assert [(o.path, o.size_bytes) for o in logs] == [
        ("/out/r.bin", str(len(payload))),
        ("/out/deep/x.txt", "1"),
        ("/out/r.bin", str(len(payload))),
    ]
    # The task's outputs log shows where each file went, never the password that was in the URL.
    assert logs[0].url == f"ftp://{ftp_peer.host}:{ftp_peer.port}/results/run1/r.bin"
    assert all(ftp_peer.password not in o.url for o in logs)


async def test_credentials_from_the_seed_environment_and_netrc(
    ftp_peer: FtpPeer, area: TaskArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ftp_peer.root / "a.txt").write_text("a")
    settings = make_settings(ftp_username=ftp_peer.user, ftp_password=ftp_peer.password)
    await stage_inputs(
        [Input(path="/data/a.txt", url=ftp_peer.url("a.txt", creds=False))], area, settings, Log()
    )
    assert area.host_path("/data/a.txt").read_text() == "a"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {ftp_peer.host} login {ftp_peer.user} password {ftp_peer.password}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    await stage_inputs(
        [Input(path="/data/b.txt", url=ftp_peer.url("a.txt", creds=False))], area, make_settings(), Log()
    )
    assert area.host_path("/data/b.txt").read_text() == "a"


async def test_bad_password_is_clear_and_secret_free(ftp_peer: FtpPeer, area: TaskArea) -> None:
    url = ftp_peer.url("a.txt").replace(ftp_peer.password, "wrong-pw-123")
    with pytest.raises(FilerError) as caught:
        await stage_inputs([Input(path="/data/a", url=url, type=FileType.FILE)], area, make_settings(), Log())
    message = str(caught.value)
    assert "login as 'alice' refused: 530" in message and "TESK_FTP_USERNAME" in message
    assert "wrong-pw-123" not in message
    assert message.startswith(f"ftp://{ftp_peer.host}:{ftp_peer.port}/a.txt:")


async def test_missing_file_and_unwritable_target(ftp_peer: FtpPeer, area: TaskArea) -> None:
    with pytest.raises(NotFoundError, match="550"):
        await stage_inputs(
            [Input(path="/data/x", url=ftp_peer.url("nope.txt"))], area, make_settings(), Log()
        )
    (area.base / "o.txt").write_text("o")
    (ftp_peer.root / "file-not-folder").write_text("blocks mkdir")
    with pytest.raises(StagingError, match="answered 550"):
        await stage_outputs(
            [Output(path="/o.txt", url=ftp_peer.url("file-not-folder/o.txt"))], area, make_settings(), Log()
        )


async def test_server_down_is_transient_and_retried(area: TaskArea, log: Log) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FilerError, match=rf"cannot talk to 127.0.0.1:{port}.*gave up after 3 attempts"):
        await stage_inputs(
            [Input(path="/data/x", url=f"ftp://127.0.0.1:{port}/x")], area, make_settings(), log
        )
    assert sum("retrying" in line for line in log) == 2


async def test_folder_listing_without_mlsd(
    ftp_peer: FtpPeer, area: TaskArea, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers such as vsftpd have no MLSD: the listing falls back to NLST and a CWD per entry."""
    import ftplib

    from pyftpdlib.handlers import FTPHandler

    commands = {k: v for k, v in FTPHandler.proto_cmds.items() if k != "MLSD"}
    monkeypatch.setattr(ftp_peer.handler, "proto_cmds", commands)
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_peer.host, ftp_peer.port)
        ftp.login(ftp_peer.user, ftp_peer.password)
        with pytest.raises(ftplib.error_perm, match="500"):
            list(ftp.mlsd("/"))
    (ftp_peer.root / "d" / "e").mkdir(parents=True)
    (ftp_peer.root / "d" / "one.txt").write_text("1")
    (ftp_peer.root / "d" / "e" / "two.txt").write_text("2")
    await stage_inputs([Input(path="/data/d", url=ftp_peer.url("d"))], area, make_settings(), Log())
    assert area.host_path("/data/d/e/two.txt").read_text() == "2"
    assert area.host_path("/data/d/one.txt").read_text() == "1"


async def test_local_write_failure_is_not_blamed_on_the_server(
    ftp_peer: FtpPeer, area: TaskArea, log: Log
) -> None:
    (ftp_peer.root / "a.txt").write_text("a")
    area.host_path("/data/a.txt").mkdir(parents=True)  # a folder where the file should go
    with pytest.raises(FilerError, match="local file error: Is a directory") as caught:
        item = Input(path="/data/a.txt", url=ftp_peer.url("a.txt"), type=FileType.FILE)
        await stage_inputs([item], area, make_settings(), log)
    assert "retrying" not in log.text() and "cannot talk" not in str(caught.value)
