"""gs:// and az:// through obstore.

There is no GCS or Azure peer on this machine, so the gs/az specific part (URL parsing, store
construction from the environment) is tested alone, and the shared streaming code of the scheme is
run against moto_server through obstore's S3 store: the same get/list/put calls a GCS or Azure
store receives.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from obstore.store import AzureStore, GCSStore, S3Store

from tesk.filer import FilerError, NotFoundError, TaskArea, stage_inputs, stage_outputs, supported_schemes
from tesk.filer.base import SchemeRegistry
from tesk.filer.objstore import ObjectStoreScheme
from tesk.models import Input, Output

from .conftest import Log, S3Peer, make_settings


def test_urls_map_to_bucket_and_key() -> None:
    scheme = ObjectStoreScheme(make_settings())
    assert scheme.parse("gs://my-bucket/run/a.bam") == ("gs", "my-bucket", "run/a.bam")
    assert scheme.parse("az://container/dir/") == ("az", "container", "dir/")
    with pytest.raises(FilerError, match=r"expected gs://<bucket>/<key>"):
        scheme.parse("gs:///key")


def test_stores_are_built_from_the_standard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    scheme = ObjectStoreScheme(make_settings())
    assert isinstance(scheme.build_store("gs", "my-bucket"), GCSStore)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(
        FilerError, match=r"az://container/x: cannot configure az access: .*Account must be specified"
    ):
        scheme._store("az://container/x")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "a2V5")
    assert isinstance(scheme.build_store("az", "container"), AzureStore)


def test_az_is_listed_only_with_an_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT", raising=False)
    assert supported_schemes(make_settings()) == ["http://", "https://", "ftp://", "s3://", "gs://"]
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    assert "az://" in supported_schemes(make_settings())
    assert supported_schemes(make_settings(schemes="s3")) == ["s3://"]


class _MotoBacked(ObjectStoreScheme):
    """The gs scheme with its store pointed at moto_server (an S3 API) instead of Google."""

    peer: S3Peer

    def build_store(self, scheme: str, bucket: str) -> Any:
        return S3Store(
            bucket,
            config={
                "endpoint": self.peer.endpoint,
                "access_key_id": self.peer.access_key,
                "secret_access_key": self.peer.secret_key,
                "region": self.peer.region,
            },
            client_options={"allow_http": True},
            retry_config={"max_retries": 0},
        )


@pytest.fixture
def moto_gs(s3_peer: S3Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    _MotoBacked.peer = s3_peer
    monkeypatch.setitem(
        __import__("tesk.filer.base", fromlist=["SCHEMES"]).SCHEMES, "gs", f"{__name__}:_MotoBacked"
    )


async def test_streaming_round_trip_through_obstore(
    moto_gs: None, s3_peer: S3Peer, bucket: str, area: TaskArea, log: Log
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 9)
    client = s3_peer.client()
    client.put_object(Bucket=bucket, Key="in/a.bin", Body=payload)
    client.put_object(Bucket=bucket, Key="ref/x/y.txt", Body=b"y")
    settings = make_settings()
    assert isinstance(SchemeRegistry(settings).for_url(f"gs://{bucket}/x"), _MotoBacked)
    await stage_inputs(
        [
            Input(path="/data/a.bin", url=f"gs://{bucket}/in/a.bin"),
            Input(path="/data/ref", url=f"gs://{bucket}/ref/"),
        ],
        area,
        settings,
        log,
    )
    assert area.host_path("/data/a.bin").read_bytes() == payload
    assert area.host_path("/data/ref/x/y.txt").read_bytes() == b"y"
    logs = await stage_outputs(
        [Output(path="/data/a.bin", url=f"gs://{bucket}/out/a.bin")], area, settings, log
    )
    assert logs[0].size_bytes == str(len(payload))
    assert client.get_object(Bucket=bucket, Key="out/a.bin")["Body"].read() == payload
    with pytest.raises(NotFoundError, match="no object or prefix by that name"):
        await stage_inputs([Input(path="/data/n", url=f"gs://{bucket}/nope")], area, settings, log)
