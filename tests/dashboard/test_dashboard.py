"""The dashboard in headless chromium: list, filters, a task's executor output, live state changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from datetime import UTC, datetime
from typing import Any

import pytest

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.auth.fastapi import swagger_oauth
from tesk.config.auth import AuthSettings
from tesk.config import TeskConfig
from tesk.failures import Failure, FailureReason
from tesk.models import ExecutorLog, State, TaskLog
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import Api, RecordingBackend, create, task_body
from tests.conftest import ServerThread, client, serving
from tests.events.conftest import IMAGE, HeaderAccess, guarded_api, local_server, sse_events

pytestmark = pytest.mark.browser


def finish(tes: Any, task_id: str) -> str:
    with tes.stream("GET", f"/tasks/{task_id}/events") as response:
        return str([data["state"] for _, data in sse_events(response)][-1])


def row_ids(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#tasks tbody tr", "rows => rows.map(r => r.dataset.id)"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """Requested before `page`, so the browser (and its event stream) closes before the server stops."""
    with local_server(tmp_path) as running:
        yield running


@pytest.mark.containers
def test_list_filter_detail_and_live_change(server: ServerThread, page: Any, tmp_path: Path) -> None:
    with client(server.url + "/ga4gh/tes/v1") as tes:
        hello = create(tes, name="hello", tags={"project": "a"},
                       executors=[{"image": IMAGE, "command": ["sh", "-c", "echo hello from the dashboard test"]}])
        other = create(tes, name="other", tags={"project": "b"}, executors=[{"image": IMAGE, "command": ["true"]}])
        assert finish(tes, hello) == "COMPLETE" and finish(tes, other) == "COMPLETE"

        page.goto(server.url + "/dashboard/")
        page.wait_for_selector(f'#tasks tr[data-id="{other}"]')
        assert row_ids(page) == [other, hello]
        page.wait_for_selector("#live.on")
        assert page.inner_text('#counts .count[data-state="COMPLETE"] .n') == "2"
        page.screenshot(path=str(tmp_path / "list.png"))

        page.fill("#f-tag", "project=a")
        page.click("#filters button[type=submit]")
        page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 1")
        assert row_ids(page) == [hello]
        assert "tag=project%3Da" in page.url

        page.click(f'#tasks tr[data-id="{hello}"]')
        page.wait_for_selector('#detail .executor[data-executor="0"] pre.stdout')
        assert page.inner_text('#detail .executor[data-executor="0"] pre.stdout').strip() == "hello from the dashboard test"
        assert "exit 0" in page.inner_text('#detail .executor[data-executor="0"] h4')
        assert "executor 0 finished, exit code 0" in page.inner_text("#detail .timeline")
        tags = page.eval_on_selector_all('#detail [data-section="Tags"] dl.kv :is(dt, dd)', "nodes => nodes.map(n => n.textContent)")
        assert tags == ["project", "a"]
        measured = page.eval_on_selector_all('#detail .executor[data-executor="0"] .usage dd', "dds => dds.map(d => d.dataset.usage)")
        assert "wall time" in measured, "the local backend's measured use is shown"
        assert page.query_selector("#detail .failure") is None, "a COMPLETE task has no failure reason"
        page.screenshot(path=str(tmp_path / "detail.png"))

        page.click("#f-reset")
        page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 2")
        page.evaluate("window.notReloaded = true")
        slow = create(tes, name="slow", executors=[{"image": IMAGE, "command": ["sleep", "2"]}])
        page.wait_for_selector(f'#tasks tr[data-id="{slow}"]')  # a new task appears by itself
        page.wait_for_function(
            f"""document.querySelector('#tasks tr[data-id="{slow}"] .state')?.dataset.state === 'RUNNING'""",
            timeout=20000,
        )
        page.wait_for_function(
            f"""document.querySelector('#tasks tr[data-id="{slow}"] .state')?.dataset.state === 'COMPLETE'""",
            timeout=20000,
        )
        assert page.evaluate("window.notReloaded") is True, "the page reloaded instead of updating itself"
        page.wait_for_function("document.querySelector('#counts .count[data-state=\"COMPLETE\"] .n').textContent === '3'")


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Api]:
    yield from guarded_api(tmp_path)


def test_with_auth_the_page_asks_for_a_token_and_shows_only_the_callers_tasks(guarded: Api, page: Any) -> None:
    mine = guarded.tes.post("/tasks", json=task_body(name="mine"), headers={"Authorization": "Bearer alice"}).json()["id"]
    theirs = guarded.tes.post("/tasks", json=task_body(name="theirs"), headers={"Authorization": "Bearer bob"}).json()["id"]

    page.goto(guarded.url + "/dashboard/")
    page.wait_for_selector("#banner:not([hidden])")
    assert "A bearer token is required." in page.inner_text("#banner")
    assert page.is_visible("#token-input")

    page.fill("#token-input", "alice")
    page.click("#token-save")
    page.wait_for_selector(f'#tasks tr[data-id="{mine}"]')
    assert row_ids(page) == [mine]
    assert page.inner_text('#counts .count[data-state=""] .n') == "1"
    page.wait_for_selector("#live.on")
    guarded.tes.post(f"/tasks/{theirs}:cancel", headers={"Authorization": "Bearer bob"})
    guarded.tes.post(f"/tasks/{mine}:cancel", headers={"Authorization": "Bearer alice"})
    page.wait_for_function(f"""document.querySelector('#tasks tr[data-id="{mine}"] .state')?.dataset.state === 'CANCELED'""")
    assert row_ids(page) == [mine], "another user's task must not appear"

    # The token Swagger UI's Authorize button keeps (persistAuthorization) is used when none was pasted.
    page.click("#token-button")
    page.click("#token-clear")
    swagger = {"oidc": {"name": "oidc", "schema": {"type": "oauth2"}, "token": {"access_token": "bob"}}}
    page.evaluate(f"localStorage.setItem('authorized', {json.dumps(json.dumps(swagger))})")
    page.reload()
    page.wait_for_selector(f'#tasks tr[data-id="{theirs}"]')
    assert row_ids(page) == [theirs]


def test_the_token_from_swagger_uis_authorize_button_reaches_the_dashboard(tmp_path: Path, browser: Any) -> None:
    """Log in where users already do (the API page), then open the dashboard: no second sign-in."""
    config = TeskConfig.read(server={"data_dir": tmp_path})
    store = SqlTaskStore(config.database_url)
    oauth = swagger_oauth(AuthSettings(profile="auth", issuer="https://issuer.invalid"))
    app = create_app(compose(config, store=store, backend=RecordingBackend(store), access=HeaderAccess(), oauth=oauth))
    with serving(app) as server, client(server.url + "/ga4gh/tes/v1") as tes:
        mine = tes.post("/tasks", json=task_body(), headers={"Authorization": "Bearer carol"}).json()["id"]
        tes.post("/tasks", json=task_body(), headers={"Authorization": "Bearer dave"})
        context = browser.new_context(bypass_csp=True)
        try:
            page = context.new_page()
            page.goto(server.url + "/")
            page.click("button.authorize")
            page.fill(".auth-container input", "carol")
            page.click(".auth-btn-wrapper button.authorize")
            page.click("button.btn-done")
            page.goto(server.url + "/dashboard/")
            page.wait_for_selector(f'#tasks tr[data-id="{mine}"]')
            assert row_ids(page) == [mine]
            assert page.get_attribute("#token-button", "title") == "Using the API page's sign-in"
        finally:
            context.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    from tests.api.conftest import make_api

    yield from make_api(tmp_path)


def test_paging_and_the_state_counts(api: Api, page: Any) -> None:
    ids = [create(api.tes, name=f"t{i:02d}") for i in range(30)]
    api.tes.post(f"/tasks/{ids[3]}:cancel")
    page.goto(api.url + "/dashboard/")
    page.select_option("#f-size", "25")
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 25")
    assert row_ids(page) == ids[::-1][:25]
    assert page.is_disabled("#newer") and page.is_enabled("#older")
    page.click("#older")
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 5")
    assert row_ids(page) == ids[::-1][25:]
    assert page.inner_text("#page-label") == "page 2" and page.is_disabled("#older")
    page.click("#newer")
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 25")
    counts = page.eval_on_selector_all("#counts .count", "cs => cs.map(c => [c.dataset.state, c.querySelector('.n').textContent])")
    assert counts == [["", "30"], ["QUEUED", "29"], ["CANCELED", "1"]]
    page.click('#counts .count[data-state="CANCELED"]')
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr').length === 1")
    assert row_ids(page) == [ids[3]] and page.input_value("#f-state") == "CANCELED"


def test_cancel_from_the_detail_pane_after_confirming(api: Api, page: Any) -> None:
    task_id = create(api.tes, name="to cancel")
    page.goto(f"{api.url}/dashboard/#task={task_id}")  # a shared link opens the task
    page.wait_for_selector("#detail #cancel")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#detail #cancel")
    assert api.tes.get(f"/tasks/{task_id}").json()["state"] == "QUEUED", "dismissing must not cancel"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#detail #cancel")
    page.wait_for_selector('#detail .head .state[data-state="CANCELED"]')
    assert not page.is_visible("#detail #cancel")
    assert api.backend.cancelled == [(task_id, "anonymousUser")]


def end_with_logs(api: Api, task_id: str, state: State, log: TaskLog) -> None:
    """End a task the way a backend in another process would: through a second store on the database,
    from a thread of its own (Playwright's sync API keeps an event loop running in this one)."""

    async def write() -> None:
        store = SqlTaskStore(api.store.url)
        await store.open()
        try:
            assert await store.update(task_id, state=state, logs=[log]) is not None
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()


def test_a_failed_task_shows_its_reason_and_each_executor_s_use(api: Api, page: Any, tmp_path: Path) -> None:
    """Executor 0 measured in full (its peak a quarter of ram_gb), executor 1 killed at its limit with
    only a wall time (as on Kubernetes, where memory is not sampled): its bar must not appear."""
    task_id = create(api.tes, name="oom", resources={"ram_gb": 0.5},
                     executors=[{"image": IMAGE, "command": ["true"]}, {"image": IMAGE, "command": ["sh", "-c", "big"]}])
    started = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    metadata = Failure(FailureReason.OOM_KILLED, 1).metadata() | {
        "tesk.executor.0.wall_seconds": "2.500", "tesk.executor.0.cpu_seconds": "0.750",
        "tesk.executor.0.peak_memory_bytes": str(128 * 2**20), "tesk.executor.1.wall_seconds": "75.000",
    }
    end_with_logs(api, task_id, State.EXECUTOR_ERROR, TaskLog(
        logs=[ExecutorLog(start_time=started, end_time=started, exit_code=0),
              ExecutorLog(start_time=started, end_time=started, exit_code=137)],
        metadata=metadata, start_time=started, end_time=started, system_logs=["executor 1 was OOMKilled"]))

    page.goto(f"{api.url}/dashboard/#task={task_id}")
    page.wait_for_selector('#detail .executor[data-executor="0"] .usage')
    assert page.inner_text("#detail > .block .failure").strip() == "OOMKilled in executor 1"
    assert page.get_attribute("#detail > .block .failure", "data-reason") == "OOMKilled"
    first, second = '#detail .executor[data-executor="0"]', '#detail .executor[data-executor="1"]'
    assert page.inner_text(f'{second} .failure').strip() == "OOMKilled in executor 1"
    assert page.query_selector(f"{first} .failure") is None, "the reason is shown on the executor it concerns only"
    shown = page.eval_on_selector_all(f"{first} .usage dd", "dds => dds.map(d => [d.dataset.usage, d.textContent])")
    assert shown == [["wall time", "2.5s"], ["CPU time", "0.8s"], ["peak memory", "128 MiB"]]
    meter = page.eval_on_selector(f"{first} .usage meter", "m => [m.value, m.max]")
    assert meter == [128 * 2**20, 0.5 * 2**30]
    assert "25% of ram_gb (0.5 GiB)" in page.inner_text(f"{first} .usage .memory")
    assert page.eval_on_selector_all(f"{second} .usage dd", "dds => dds.map(d => d.textContent)") == ["1m 15s"]
    assert page.query_selector(f"{second} .usage meter") is None, "no peak measured: no bar"
    page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)

