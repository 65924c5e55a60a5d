"""One real `tesk serve` (local backend, podman, SQLite) shared by the client tests of a module.

file:// and bare-path URLs are allowed below `roots`, where each test gets its own work folder, as a
workflow engine's shared work directory would be.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.server import Server


class ClientServer:
    def __init__(self, server: Server, roots: Path) -> None:
        self.server = server
        self.roots = roots
        self.base = server.url.removesuffix("/ga4gh/tes/v1")
        self._count = 0

    def work(self, name: str) -> Path:
        """A fresh work folder under the allowed file roots."""
        self._count += 1
        folder = self.roots / f"{name}-{self._count}"
        folder.mkdir()
        return folder


@pytest.fixture(scope="module")
def tes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClientServer]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed on this machine")
    root = tmp_path_factory.mktemp("clients")
    roots = root / "shared"
    roots.mkdir()
    server = Server(root / "server", {
        "TESK_LOCAL_ENGINE": "podman", "TESK_LOCAL_PULL": "never", "TESK_LOCAL_NETWORK": "none",
        "TESK_LOCAL_CPU_CORES": "16", "TESK_FILE_ROOTS": str(roots),
    })
    (root / "server").mkdir()
    server.start()
    try:
        yield ClientServer(server, roots)
    finally:
        server.stop()
