"""Bytes staged by a local task are counted for /metrics, by scheme and direction."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tesk.models import State
from tests.local.conftest import IMAGE, MakeHarness

pytestmark = pytest.mark.containers


def staged(scheme: str, direction: str) -> float:
    value = REGISTRY.get_sample_value("tesk_filer_staged_bytes_total", {"scheme": scheme, "direction": direction})
    return value or 0.0


async def test_inputs_and_outputs_are_counted(
    make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setenv("TESK_FILE_ROOTS", str(results))
    harness = await make_harness("podman")
    before_in, before_out = staged("content", "in"), staged("file", "out")
    stored = await harness.run({
        "inputs": [{"path": "/data/in.txt", "content": "0123456789"}],
        "outputs": [{"path": "/data/out.txt", "url": (results / "out.txt").as_uri()}],
        "executors": [{"image": IMAGE, "command": ["cp", "/data/in.txt", "/data/out.txt"]}],
    })
    assert stored.state is State.COMPLETE
    assert staged("content", "in") - before_in == 10
    assert staged("file", "out") - before_out == 10
