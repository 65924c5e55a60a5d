"""s3 against moto_server on 127.0.0.1 (credentials enforced): files, prefixes, multipart, errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tesk.filer import FilerError, NotFoundError, StagingError, TaskArea, stage_inputs, stage_outputs
from tesk.models import FileType, Input, Output

from .conftest import Log, S3Peer, files_below, make_settings


def _put(peer: S3Peer, bucket: str, key: str, body: bytes) -> None:
    peer.client().put_object(Bucket=bucket, Key=key, Body=body)


async def test_file_and_prefix_inputs(s3_peer: S3Peer, bucket: str, area: TaskArea, log: Log) -> None:
    payload = os.urandom(300_000)
    _put(s3_peer, bucket, "in/a.bin", payload)
    _put(s3_peer, bucket, "ref/x.txt", b"x")
    _put(s3_peer, bucket, "ref/deep/y.txt", b"y")
    _put(s3_peer, bucket, "ref/folder-marker/", b"")
    _put(s3_peer, bucket, "reference-not-in-prefix.txt", b"no")
    settings = make_settings(s3_endpoints=[s3_peer.endpoint_entry(bucket)])
    await stage_inputs(
        [
            Input(path="/data/a.bin", url=f"s3://{bucket}/in/a.bin"),
            Input(path="/data/ref", url=f"s3://{bucket}/ref"),  # a prefix, found to be a folder
        ],
        area,
        settings,
        log,
    )
    assert area.host_path("/data/a.bin").read_bytes() == payload
    assert sorted(files_below(area.host_path("/data/ref"))) == ["deep/y.txt", "x.txt"]
    assert s3_peer.secret_key not in log.text()


async def test_multipart_upload_and_download_round_trip(
    s3_peer: S3Peer, bucket: str, area: TaskArea, tmp_path: Path
) -> None:
    size = 32 * 1024 * 1024 + 123  # three parts of at most 16 MiB
    src = area.host_path("/out/big.bin")
    src.parent.mkdir(parents=True)
    src.write_bytes(os.urandom(size))
    settings = make_settings(s3_endpoints=[s3_peer.endpoint_entry(bucket)])
    logs = await stage_outputs(
        [Output(path="/out/big.bin", url=f"s3://{bucket}/run/big.bin")], area, settings, Log()
    )
    assert logs[0].size_bytes == str(size)
    head = s3_peer.client().head_object(Bucket=bucket, Key="run/big.bin")
    assert head["ContentLength"] == size and "-3" in head["ETag"]  # a 3-part multipart upload
    await stage_inputs([Input(path="/back/big.bin", url=f"s3://{bucket}/run/big.bin")], area, settings, Log())
    digest = hashlib.sha256
    assert digest(area.host_path("/back/big.bin").read_bytes()).digest() == digest(src.read_bytes()).digest()


async def test_folder_and_wildcard_outputs(s3_peer: S3Peer, bucket: str, area: TaskArea) -> None:
    for name in ("/work/a.vcf", "/work/b.vcf", "/work/logs/run.log"):
        host = area.host_path(name)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(name)
    settings = make_settings(s3_endpoints=[s3_peer.endpoint_entry(bucket)])
    logs = await stage_outputs(
        [
            Output(path="/work/*.vcf", path_prefix="/work", url=f"s3://{bucket}/calls/"),
            Output(path="/work/logs", url=f"s3://{bucket}/logs", type=FileType.DIRECTORY),
        ],
        area,
        settings,
        Log(),
    )
    assert [o.url for o in logs] == [
        f"s3://{bucket}/calls/a.vcf",
        f"s3://{bucket}/calls/b.vcf",
        f"s3://{bucket}/logs/run.log",
    ]
    keys = [o["Key"] for o in s3_peer.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["calls/a.vcf", "calls/b.vcf", "logs/run.log"]


async def test_wrong_key_is_refused_with_advice_and_no_secret(
    s3_peer: S3Peer, bucket: str, area: TaskArea
) -> None:
    _put(s3_peer, bucket, "a.txt", b"a")
    entry = s3_peer.endpoint_entry(bucket, secret_access_key="definitely-wrong-secret")
    with pytest.raises(FilerError) as caught:
        await stage_inputs(
            [Input(path="/data/a", url=f"s3://{bucket}/a.txt")],
            area,
            make_settings(s3_endpoints=[entry]),
            Log(),
        )
    message = str(caught.value)
    assert message.startswith(f"s3://{bucket}/a.txt: S3 answered 403")
    assert "check the S3 credentials" in message and "definitely-wrong-secret" not in message
    out = area.host_path("/out.txt")
    out.write_text("o")
    with pytest.raises(
        StagingError, match=rf"s3://{bucket}/o.txt: S3 answered 403 .*check the S3 credentials"
    ):
        await stage_outputs(
            [Output(path="/out.txt", url=f"s3://{bucket}/o.txt")],
            area,
            make_settings(s3_endpoints=[entry]),
            Log(),
        )


async def test_missing_key_and_empty_prefix(s3_peer: S3Peer, bucket: str, area: TaskArea) -> None:
    settings = make_settings(s3_endpoints=[s3_peer.endpoint_entry(bucket)])
    with pytest.raises(NotFoundError, match="no object or prefix by that name"):
        await stage_inputs([Input(path="/data/a", url=f"s3://{bucket}/nope.txt")], area, settings, Log())
    with pytest.raises(NotFoundError, match="S3 answered 404"):
        await stage_inputs(
            [Input(path="/data/a", url=f"s3://{bucket}/nope.txt", type=FileType.FILE)], area, settings, Log()
        )
    with pytest.raises(NotFoundError, match="no objects below this prefix"):
        await stage_inputs(
            [Input(path="/data/d", url=f"s3://{bucket}/empty/", type=FileType.DIRECTORY)],
            area,
            settings,
            Log(),
        )


async def test_per_host_entry_takes_the_bucket_from_the_path(
    s3_peer: S3Peer, bucket: str, area: TaskArea
) -> None:
    _put(s3_peer, bucket, "k/a.txt", b"per-host")
    netloc = s3_peer.endpoint.removeprefix("http://")
    entry = s3_peer.endpoint_entry(None, host=netloc)
    settings = make_settings(s3_endpoints=[entry])
    await stage_inputs([Input(path="/data/a", url=f"s3://{netloc}/{bucket}/k/a.txt")], area, settings, Log())
    assert area.host_path("/data/a").read_bytes() == b"per-host"


async def test_config_file_and_standard_aws_environment(
    s3_peer: S3Peer, bucket: str, area: TaskArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(s3_peer, bucket, "a.txt", b"from config")
    config = tmp_path / "s3.yaml"
    config.write_text(
        "endpoints:\n"
        f"  - bucket: {bucket}\n    endpoint_url: {s3_peer.endpoint}\n    region: us-east-1\n"
        f"    access_key_id: {s3_peer.access_key}\n    secret_access_key: {s3_peer.secret_key}\n"
    )
    await stage_inputs(
        [Input(path="/data/a", url=f"s3://{bucket}/a.txt")], area, make_settings(s3_config=config), Log()
    )
    assert area.host_path("/data/a").read_bytes() == b"from config"
    # No entry at all: boto3's standard chain (AWS_* variables) decides.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_peer.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_peer.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_peer.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    await stage_inputs([Input(path="/data/b", url=f"s3://{bucket}/a.txt")], area, make_settings(), Log())
    assert area.host_path("/data/b").read_bytes() == b"from config"


async def test_unreachable_endpoint_is_transient(area: TaskArea, log: Log) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from tesk.filer import S3Endpoint

    entry = S3Endpoint(
        bucket="bkt", endpoint_url=f"http://127.0.0.1:{port}", access_key_id="a", secret_access_key="b"
    )
    settings = make_settings(s3_endpoints=[entry], retries=1)
    with pytest.raises(
        StagingError, match=rf"cannot connect to http://127.0.0.1:{port}.*gave up after 2 attempts"
    ):
        out = area.host_path("/o.txt")
        out.write_text("o")
        await stage_outputs([Output(path="/o.txt", url="s3://bkt/o.txt")], area, settings, log)


async def test_local_write_failure_is_not_blamed_on_s3(s3_peer: S3Peer, bucket: str, area: TaskArea) -> None:
    _put(s3_peer, bucket, "a.txt", b"a")
    area.host_path("/data/a.txt").mkdir(parents=True)
    settings = make_settings(s3_endpoints=[s3_peer.endpoint_entry(bucket)])
    with pytest.raises(FilerError, match="local file error"):
        await stage_inputs(
            [Input(path="/data/a.txt", url=f"s3://{bucket}/a.txt", type=FileType.FILE)], area, settings, Log()
        )
