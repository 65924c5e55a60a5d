"""Swagger UI at `/` renders the TES operations in headless Chromium with no network access.

Chromium (Debian's, installed by .ci/setup.d/40-chromium.sh) loads the page by a host name that
only resolves to our loopback server; every other name fails to resolve, so a page that needed a
CDN (or any outside host) would not render and the test would fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.browser

OPERATIONS = ["ListTasks", "CreateTask", "GetTask", "CancelTask", "GetServiceInfo"]
HOST = "tesk.test"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must test Swagger UI: run .ci/setup.d/40-chromium.sh", pytrace=False)
        pytest.skip(reason)
    return found


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium cut off from every other host."""
    argv = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


class _References(HTMLParser):
    """Every URL the page loads by itself: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def test_swagger_ui_shows_every_tes_operation_offline(live: Api, tmp_path: Path) -> None:
    port = urlsplit(live.url).port
    dom = dump_dom(f"http://{HOST}:{port}/", tmp_path / "profile")
    assert "Unable to render this definition" not in dom
    for operation in OPERATIONS:
        assert re.search(rf'id="operations-[^"]*-{operation}"', dom), (
            f"{operation} is not shown:\n{dom[-3000:]}"
        )
    for path in ["/ga4gh/tes/v1/tasks", "/ga4gh/tes/v1/tasks/{id}", "/ga4gh/tes/v1/service-info"]:
        assert f'data-path="{path}"' in dom, f"{path} is not shown"
    assert "/ga4gh/tes/v1/tasks/{id}:cancel" in dom
    rendered = _References()
    rendered.feed(dom)
    for reference in rendered.urls:
        assert urlsplit(urljoin(f"http://{HOST}:{port}/", reference)).netloc == f"{HOST}:{port}", (
            f"the rendered page loads {reference} from another host (e.g. a validator badge)"
        )


def test_the_page_loads_nothing_from_other_hosts(live: Api) -> None:
    page = live.http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    parser = _References()
    parser.feed(page.text)
    assert parser.urls, "the page references no assets at all"
    origin = urlsplit(live.url).netloc
    for reference in parser.urls:
        absolute = urljoin(live.url + "/", reference)
        assert urlsplit(absolute).netloc == origin, f"the page loads {reference} from another host"
        asset = live.http.get(absolute)
        assert asset.status_code == 200 and asset.content, f"{reference} is not served"
    assert not re.search(r"https?://(?!127\.0\.0\.1)", page.text.split("<script>", 1)[-1]), (
        "the inline script names an outside URL"
    )
    assert live.http.get("/swagger-ui/oauth2-redirect.html").status_code == 200


def test_openapi_document_names_the_tes_operations(live: Api) -> None:
    document = live.http.get("/openapi.json").json()
    ids = {
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if "operationId" in op
    }
    assert set(OPERATIONS) <= ids
