"""Settings, service-info storage and credential redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tesk.filer import FilerError, S3Endpoint, TaskArea, redact, stage_inputs, supported_schemes
from tesk.models import Input

from .conftest import Log, make_settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://user:pa%40ss@host:2121/dir/f.txt", "ftp://host:2121/dir/f.txt"),
        (
            "https://acct.blob.core.windows.net/c/b?sv=2022&sig=SECRET&se=x",
            "https://acct.blob.core.windows.net/c/b?sv=2022&sig=REDACTED&se=x",
        ),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=abc",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED",
        ),
        ("s3://bucket/key with space", "s3://bucket/key with space"),
    ],
)
def test_redact_removes_userinfo_and_signatures(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_storage_lists_file_roots_as_urls(tmp_path: Path) -> None:
    settings = make_settings(file_roots=f"{tmp_path}:relative/ignored", schemes="https,s3")
    assert supported_schemes(settings) == ["https://", "s3://", f"file://{tmp_path}"]


def test_s3_endpoint_entries_are_validated() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'bucket' or 'host'"):
        S3Endpoint(bucket="b", host="h")
    with pytest.raises(ValidationError, match="give both access_key_id and secret_access_key"):
        S3Endpoint(bucket="b", access_key_id="AKIA")


async def test_unusable_s3_config_file_is_a_task_error(tmp_path: Path, area: TaskArea) -> None:
    config = tmp_path / "s3.yaml"
    config.write_text("endpoints:\n  - bucket: b\n    host: h\n")
    with pytest.raises(FilerError, match="S3 endpoint configuration is unusable.*fix TESK_FILER_S3_CONFIG"):
        await stage_inputs(
            [Input(path="/data/x", url="s3://b/k")], area, make_settings(s3_config=config), Log()
        )
