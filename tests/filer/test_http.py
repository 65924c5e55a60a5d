"""http(s) against a real server on 127.0.0.1: success, errors, retries, timeouts, redirects, PUT."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import tesk.filer.http
from tesk.filer import (
    FilerError,
    RefusedError,
    StagingError,
    TaskArea,
    TransientError,
    stage_inputs,
    stage_outputs,
)
from tesk.filer.errors import NotFoundError
from tesk.models import FileType, Input, Output

from .conftest import HttpPeer, Log, make_settings


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "read-write"])
async def test_download_is_byte_exact(
    http_peer: HttpPeer, area: TaskArea, log: Log, splice: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both body paths: splice(2) socket -> file on Linux, the portable read-and-write loop elsewhere."""
    if splice and not hasattr(os, "splice"):
        pytest.skip("splice(2) is Linux only")
    spliced: list[int] = []
    real = tesk.filer.http._splice_body

    def counted(*a: Any) -> None:
        spliced.append(1)
        real(*a)

    monkeypatch.setattr(tesk.filer.http, "_splice_body", counted)
    if not splice:
        monkeypatch.setattr(tesk.filer.http, "_can_splice", lambda resp: False)
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several blocks plus a ragged end
    http_peer.files["a.bin"] = payload
    await stage_inputs(
        [Input(path="/data/a.bin", url=f"{http_peer.url}/files/a.bin")], area, make_settings(), log
    )
    assert area.host_path("/data/a.bin").read_bytes() == payload
    assert spliced == ([1] if splice else [])
    assert f"input /data/a.bin: {http_peer.url}/files/a.bin, 3.0 MiB" in log.text()


async def test_404_names_the_url_and_what_the_server_said(http_peer: HttpPeer, area: TaskArea) -> None:
    with pytest.raises(NotFoundError) as caught:
        await stage_inputs(
            [Input(path="/data/x", url=f"{http_peer.url}/files/nope")], area, make_settings(), Log()
        )
    assert str(caught.value) == (
        f"{http_peer.url}/files/nope: download failed, the server answered 404 Not Found: "
        "no such file here; check the URL"
    )
    assert http_peer.hits["/files/nope"] == 1  # a 4xx is never retried


async def test_403_says_credentials_and_is_not_retried(http_peer: HttpPeer, area: TaskArea) -> None:
    with pytest.raises(
        FilerError, match="403 Forbidden: <Error>no access</Error>; the server wants credentials"
    ):
        await stage_inputs(
            [Input(path="/data/x", url=f"{http_peer.url}/forbidden")], area, make_settings(), Log()
        )
    assert http_peer.hits["/forbidden"] == 1


async def test_500_then_success_is_retried_with_log_lines(
    http_peer: HttpPeer, area: TaskArea, log: Log
) -> None:
    await stage_inputs([Input(path="/data/f", url=f"{http_peer.url}/flaky")], area, make_settings(), log)
    assert area.host_path("/data/f").read_bytes() == b"finally"
    assert http_peer.hits["/flaky"] == 3
    retries = [line for line in log if "retrying" in line]
    assert len(retries) == 2 and "500 Internal Server Error: database is warming up" in retries[0]


async def test_persistent_5xx_gives_up_and_counts_attempts(http_peer: HttpPeer, area: TaskArea) -> None:
    with pytest.raises(
        TransientError, match=r"503 Service Unavailable: maintenance until tomorrow \(gave up after 3"
    ):
        await stage_inputs([Input(path="/data/x", url=f"{http_peer.url}/down")], area, make_settings(), Log())
    assert http_peer.hits["/down"] == 3


async def test_slow_server_times_out(http_peer: HttpPeer, area: TaskArea) -> None:
    http_peer.slow_seconds = 3
    settings = make_settings(timeout=0.5, retries=0)
    with pytest.raises(
        TransientError, match=r"no answer or data from the server for 0.5 s \(TESK_FILER_TIMEOUT\)"
    ):
        await stage_inputs([Input(path="/data/x", url=f"{http_peer.url}/slow")], area, settings, Log())


async def test_a_server_stalling_mid_body_times_out_or_is_waited_for(http_peer: HttpPeer, area: TaskArea) -> None:
    """The per-read timeout holds in the middle of a body too (on Linux the body is spliced)."""
    http_peer.slow_seconds = 1.5
    with pytest.raises(TransientError, match=r"no answer or data from the server for 0.5 s"):
        await stage_inputs([Input(path="/data/x", url=f"{http_peer.url}/stall-body")], area,
                           make_settings(timeout=0.5, retries=0), Log())
    await stage_inputs([Input(path="/data/y", url=f"{http_peer.url}/stall-body")], area,
                       make_settings(timeout=5), Log())
    assert area.host_path("/data/y").read_bytes() == b"a" * 1024 * 1024 + b"b" * 1024 * 1024


async def test_transfer_timeout_is_not_retried(http_peer: HttpPeer, area: TaskArea) -> None:
    http_peer.files["big"] = b"z" * (8 * 1024 * 1024)
    settings = make_settings(transfer_timeout=1e-9)
    with pytest.raises(FilerError, match="TESK_FILER_TRANSFER_TIMEOUT"):
        await stage_inputs([Input(path="/data/x", url=f"{http_peer.url}/files/big")], area, settings, Log())
    assert http_peer.hits["/files/big"] == 1


async def test_redirect_is_followed_and_loops_are_stopped(http_peer: HttpPeer, area: TaskArea) -> None:
    http_peer.files["a.bin"] = b"target"
    await stage_inputs([Input(path="/data/r", url=f"{http_peer.url}/redirect")], area, make_settings(), Log())
    assert area.host_path("/data/r").read_bytes() == b"target"
    with pytest.raises(FilerError, match="more than 10 redirects"):
        await stage_inputs(
            [Input(path="/data/l", url=f"{http_peer.url}/redirect-loop")], area, make_settings(), Log()
        )


async def test_truncated_body_is_an_error(http_peer: HttpPeer, area: TaskArea) -> None:
    with pytest.raises(
        TransientError,
        match=r"/short: the connection ended (after 10 of 1000 bytes|before the whole body arrived)",
    ):
        await stage_inputs(
            [Input(path="/data/s", url=f"{http_peer.url}/short")], area, make_settings(retries=0), Log()
        )


async def test_http_directory_input_is_refused_with_advice(http_peer: HttpPeer, area: TaskArea) -> None:
    item = Input(path="/data/d", url=f"{http_peer.url}/files/", type=FileType.DIRECTORY)
    with pytest.raises(RefusedError, match="no folder listing; give each file as its own input"):
        await stage_inputs([item], area, make_settings(), Log())


async def test_credentials_never_appear_in_messages(http_peer: HttpPeer, area: TaskArea) -> None:
    url = (
        f"{http_peer.url.replace('http://', 'http://bob:hunter2@')}/files/nope?X-Amz-Signature=abc123&part=1"
    )
    with pytest.raises(NotFoundError) as caught:
        await stage_inputs([Input(path="/data/x", url=url)], area, make_settings(), Log())
    message = str(caught.value)
    assert "hunter2" not in message and "bob" not in message and "abc123" not in message
    assert "X-Amz-Signature=REDACTED&part=1" in message


async def test_local_targets_refused_when_enabled(http_peer: HttpPeer, area: TaskArea) -> None:
    settings = make_settings(deny_local_http=True)
    http_peer.files["a"] = b"a"
    with pytest.raises(RefusedError, match="loopback or link-local"):
        await stage_inputs([Input(path="/data/a", url=f"{http_peer.url}/files/a")], area, settings, Log())
    port = http_peer.url.rsplit(":", 1)[1]
    with pytest.raises(RefusedError, match="resolves to 127.0.0.1"):  # a name, checked at connect time
        await stage_inputs(
            [Input(path="/data/b", url=f"http://localhost:{port}/files/a")], area, settings, Log()
        )
    with pytest.raises(RefusedError, match="169.254.169.254 is a loopback or link-local"):
        await stage_inputs(
            [Input(path="/data/c", url="http://169.254.169.254/latest/meta-data/")], area, settings, Log()
        )
    assert http_peer.hits.get("/files/a") is None


async def test_put_outputs_only_to_allowed_hosts(http_peer: HttpPeer, area: TaskArea, log: Log) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 5)
    host = area.host_path("/out/r.bin")
    host.parent.mkdir(parents=True)
    host.write_bytes(payload)
    out = Output(path="/out/r.bin", url=f"{http_peer.url}/upload/r.bin")
    with pytest.raises(StagingError, match="HTTP PUT of outputs to 127.0.0.1 is not enabled"):
        await stage_outputs([out], area, make_settings(), Log())
    netloc = http_peer.url.removeprefix("http://")
    logs = await stage_outputs([out], area, make_settings(http_put_hosts=f"example.org, {netloc}"), log)
    assert http_peer.puts["/upload/r.bin"] == payload
    assert http_peer.put_headers["/upload/r.bin"]["Content-Length"] == str(len(payload))
    assert logs[0].size_bytes == str(len(payload))
    with pytest.raises(StagingError, match="405 Method Not Allowed: read-only area"):
        await stage_outputs(
            [Output(path="/out/r.bin", url=f"{http_peer.url}/readonly/r.bin")],
            area,
            make_settings(http_put_hosts="*"),
            Log(),
        )


async def test_large_transfers_report_progress(http_peer: HttpPeer, area: TaskArea, log: Log) -> None:
    http_peer.files["big"] = b"p" * (6 * 1024 * 1024)
    settings = make_settings(progress_interval=0.0, progress_min_bytes=4 * 1024 * 1024)
    await stage_inputs([Input(path="/data/big", url=f"{http_peer.url}/files/big")], area, settings, log)
    progress = [line for line in log if " of 6.0 MiB (" in line]
    assert progress and progress[0].startswith(f"download {http_peer.url}/files/big: ")
    assert progress[-1].split(": ")[1].startswith(("5.", "6.0 MiB of 6.0 MiB (100%)"))
    small = Log()
    await stage_inputs(
        [Input(path="/data/small", url=f"{http_peer.url}/files/big")], area, make_settings(), small
    )
    assert not any("%)" in line for line in small)  # below TESK_FILER_PROGRESS_MIN_BYTES: no progress lines


async def test_cancel_stops_a_stalled_download_at_once(http_peer: HttpPeer, area: TaskArea) -> None:
    import asyncio
    import time

    http_peer.slow_seconds = 1.5
    staging = asyncio.create_task(
        stage_inputs(
            [Input(path="/data/s", url=f"{http_peer.url}/slow")], area, make_settings(timeout=30), Log()
        )
    )
    await asyncio.sleep(0.3)
    start = time.monotonic()
    staging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await staging
    assert time.monotonic() - start < 0.5
    await asyncio.sleep(1.7)  # the server answers now: the stopped transfer must not write it
    target = area.host_path("/data/s")
    assert not target.exists() or target.read_bytes() != b"late"


async def test_cancel_stops_a_download_stalled_mid_body_at_once(http_peer: HttpPeer, area: TaskArea) -> None:
    import asyncio
    import time

    http_peer.slow_seconds = 3
    staging = asyncio.create_task(stage_inputs(
        [Input(path="/data/s", url=f"{http_peer.url}/stall-body")], area, make_settings(timeout=30), Log()))
    await asyncio.sleep(0.5)  # the first half has arrived; the server is pausing
    start = time.monotonic()
    staging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await staging
    assert time.monotonic() - start < 0.5


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tesk test peer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def test_https_verifies_the_certificate(
    http_peer: HttpPeer, area: TaskArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import http.server
    import ssl
    import threading

    from .conftest import _handler

    cert_file, key_file = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(http_peer))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/files/s.bin"
        http_peer.files["s.bin"] = b"over tls"
        with pytest.raises(FilerError, match="TLS certificate is not trusted"):
            await stage_inputs([Input(path="/data/s", url=url)], area, make_settings(), Log())
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the operator adds the CA
        await stage_inputs([Input(path="/data/s", url=url)], area, make_settings(), Log())
        assert area.host_path("/data/s").read_bytes() == b"over tls"
    finally:
        server.shutdown()
        server.server_close()


async def test_after_a_failed_input_nothing_new_starts(http_peer: HttpPeer, area: TaskArea) -> None:
    http_peer.files.update({f"f{i}": b"x" for i in range(5)})
    inputs = [Input(path="/data/missing", url=f"{http_peer.url}/files/missing")]
    inputs += [Input(path=f"/data/f{i}", url=f"{http_peer.url}/files/f{i}") for i in range(5)]
    with pytest.raises(NotFoundError, match="/files/missing"):
        await stage_inputs(inputs, area, make_settings(parallel=1), Log())
    assert sum(http_peer.hits.get(f"/files/f{i}", 0) for i in range(5)) == 0


async def test_basic_auth_from_url_and_netrc_never_follows_to_another_host(
    http_peer: HttpPeer, area: TaskArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    from urllib.parse import quote

    http_peer.files["a.bin"] = b"a"
    port = http_peer.url.rsplit(":", 1)[1]
    url = f"http://bob:s%40fe@127.0.0.1:{port}/files/a.bin"
    await stage_inputs([Input(path="/data/a", url=url)], area, make_settings(), Log())
    assert http_peer.auth["/files/a.bin"] == "Basic " + base64.b64encode(b"bob:s@fe").decode()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login carol password n3trc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    await stage_inputs(
        [Input(path="/data/b", url=f"{http_peer.url}/files/a.bin")], area, make_settings(), Log()
    )
    assert http_peer.auth["/files/a.bin"] == "Basic " + base64.b64encode(b"carol:n3trc").decode()
    # A redirect to another host name gets no credentials.
    elsewhere = quote(f"http://localhost:{port}/files/a.bin")
    redirect = f"http://bob:pw@127.0.0.1:{port}/redirect-to?{elsewhere}"
    await stage_inputs([Input(path="/data/c", url=redirect)], area, make_settings(), Log())
    assert http_peer.auth["/redirect-to"] is not None
    assert http_peer.auth["/files/a.bin"] is None
    assert area.host_path("/data/c").read_bytes() == b"a"


def test_a_file_system_without_splice_gets_the_body_by_read_and_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where splice(2) into the file is refused (EINVAL), the bytes already in the pipe are copied."""
    import errno

    from tesk.filer.http import _PipeToFile

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refuse, raising=False)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"0123456789" * 100)
        with open(tmp_path / "f", "wb", buffering=0) as out:
            mover = _PipeToFile(read_end, out, "http://example.org/f")
            mover.move(1000)
        assert (tmp_path / "f").read_bytes() == b"0123456789" * 100
        assert mover.splice is False
    finally:
        os.close(read_end)
        os.close(write_end)
