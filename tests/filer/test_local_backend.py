"""End to end through the local backend: inputs from http, ftp and s3, outputs to ftp and s3.

A real task (busybox in podman, or the process engine) reads the staged inputs and writes outputs;
the files that reach the FTP and S3 peers are compared byte for byte with what was sent.
"""

from __future__ import annotations

import os

import pytest

from tesk.models import State
from tests.local.conftest import ENGINES, IMAGE, MakeHarness, make_harness  # noqa: F401 (fixture)

from .conftest import FtpPeer, HttpPeer, S3Peer, make_settings

pytestmark = pytest.mark.containers


@pytest.mark.parametrize("engine", ENGINES)
async def test_task_with_mixed_storage(
    engine: str,
    make_harness: MakeHarness,  # noqa: F811
    http_peer: HttpPeer,
    ftp_peer: FtpPeer,
    s3_peer: S3Peer,
    bucket: str,
) -> None:
    from_http = os.urandom(1024 * 1024 + 1)
    from_s3 = os.urandom(700_000)
    http_peer.files["a.bin"] = from_http
    (ftp_peer.root / "ref" / "deep").mkdir(parents=True)
    (ftp_peer.root / "ref" / "deep" / "x.txt").write_bytes(b"ftp folder file\n")
    s3_peer.client().put_object(Bucket=bucket, Key="inputs/c.bin", Body=from_s3)

    harness = await make_harness(engine=engine)
    harness.backend.filer = make_settings(s3_endpoints=[s3_peer.endpoint_entry(bucket)])
    script = (
        "cat /data/in/a.bin /data/in/ref/deep/x.txt /data/in/c.bin > /data/out/joined.bin"
        " && cp /data/in/c.bin /data/out/copy.bin"
        " && mkdir -p /data/out/dir/sub && cp /data/in/ref/deep/x.txt /data/out/dir/sub/"
    )
    stored = await harness.run(
        {
            "inputs": [
                {"path": "/data/in/a.bin", "url": f"{http_peer.url}/files/a.bin"},
                {"path": "/data/in/ref", "url": ftp_peer.url("ref"), "type": "DIRECTORY"},
                {"path": "/data/in/c.bin", "url": f"s3://{bucket}/inputs/c.bin"},
            ],
            "outputs": [
                {"path": "/data/out/joined.bin", "url": ftp_peer.url("results/joined.bin")},
                {"path": "/data/out/*.bin", "path_prefix": "/data/out", "url": f"s3://{bucket}/run/"},
                {"path": "/data/out/dir", "url": ftp_peer.url("results/dir"), "type": "DIRECTORY"},
            ],
            "executors": [{"image": IMAGE, "command": ["sh", "-c", script]}],
        },
        timeout=60,
    )
    assert stored.task.logs is not None
    task_log = stored.task.logs[-1]
    assert stored.state is State.COMPLETE, task_log.system_logs
    joined = from_http + b"ftp folder file\n" + from_s3
    assert (ftp_peer.root / "results" / "joined.bin").read_bytes() == joined
    assert (ftp_peer.root / "results" / "dir" / "sub" / "x.txt").read_bytes() == b"ftp folder file\n"
    client = s3_peer.client()
    assert client.get_object(Bucket=bucket, Key="run/joined.bin")["Body"].read() == joined
    assert client.get_object(Bucket=bucket, Key="run/copy.bin")["Body"].read() == from_s3
    assert sorted((o.path, o.size_bytes) for o in task_log.outputs) == [
        ("/data/out/copy.bin", str(len(from_s3))),
        ("/data/out/dir/sub/x.txt", "16"),
        ("/data/out/joined.bin", str(len(joined))),
        ("/data/out/joined.bin", str(len(joined))),
    ]
    assert not any(ftp_peer.password in o.url for o in task_log.outputs)
    assert not any(ftp_peer.password in line for line in task_log.system_logs or [])
