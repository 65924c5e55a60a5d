"""Headless Debian chromium driven by Playwright (its own browser downloads are unreachable here).

Shared by the dashboard and Swagger UI tests; each keeps its own `browser` fixture scope.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def launch_chromium() -> Iterator[Any]:
    """Yield a launched Playwright browser and close it after; skip where Playwright or chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (.ci/setup.d/40-chromium.sh installs it)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()
