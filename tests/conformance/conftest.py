"""Conformance fixtures: one live server for the module, and the official TES 1.1 spec, offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Api, make_api

SPEC_DIR = Path(__file__).parent / "spec"
SERVICE_INFO_URL = "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml"


def offline_spec(into: Path) -> Path:
    """The TES 1.1 spec with its external service-info $ref pointed at the local copy (no network)."""
    text = (SPEC_DIR / "tes-1.1.openapi.yaml").read_text()
    assert SERVICE_INFO_URL in text, "the spec no longer refers to service-info by this URL; update SERVICE_INFO_URL"
    spec = into / "tes-1.1.openapi.yaml"
    spec.write_text(text.replace(SERVICE_INFO_URL, str(SPEC_DIR / "ga4gh-service-info-1.0.0.yaml")))
    return spec


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A real server (uvicorn on 127.0.0.1, SQLite store, recording backend) shared by a module."""
    yield from make_api(tmp_path_factory.mktemp("live"))
