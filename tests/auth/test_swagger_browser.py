"""Swagger UI's Authorize button in headless Chromium, against the real OIDC provider.

The button opens the provider's login (authorization code with PKCE) in a popup; the provider logs
the default test user (alice, team SDO) in without a form and redirects to oauth2-redirect.html;
Swagger UI exchanges the code for a token and sends it with "Try it out". Without the token the same
call is a 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tesk.config.auth import AuthSettings
from tests.auth.conftest import OidcProvider
from tests.auth.test_elixir_api import AuthApi, start_api
from tests.browser import launch_chromium

pytestmark = [pytest.mark.oidc, pytest.mark.browser]


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture
def swagger_api(
    tmp_path: Path, oidc_provider: OidcProvider, user_tokens: dict[str, str]
) -> Iterator[AuthApi]:
    auth = AuthSettings(profile="auth", issuer=oidc_provider.url, swagger_client_id="tesk-swagger")
    yield from start_api(tmp_path, auth, user_tokens)


def list_tasks_status(page: Any) -> str:
    """Run ListTasks with "Try it out" and return the HTTP status Swagger UI shows."""
    operation = page.locator("#operations-TES-ListTasks")
    try_out = operation.locator(".try-out__btn")  # reads "Try it out", or "Cancel" once trying out
    if not try_out.is_visible():
        operation.locator(".opblock-summary").click()
    # Wait for the opened operation: on a slow machine its buttons appear a moment after the click,
    # and a look without waiting would skip "Try it out" and then wait for an Execute button that never comes.
    try_out.wait_for(timeout=30_000)
    if try_out.inner_text().strip() == "Try it out":
        try_out.click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=30_000)
    text: str = status.inner_text().split()[0]
    operation.get_by_role("button", name="Clear").click()
    return text


def test_authorize_button_logs_in_and_try_it_out_sends_the_token(browser: Any, swagger_api: AuthApi) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{swagger_api.url}/")
    page.locator("#operations-TES-ListTasks").wait_for(timeout=30_000)
    assert list_tasks_status(page) == "401"

    page.locator(".auth-wrapper .authorize").click()
    oidc = page.locator(".auth-container").filter(has_text="authorizationCode")
    assert oidc.locator("input[data-name=clientId]").input_value() == "tesk-swagger"
    with page.expect_popup() as popup:
        oidc.locator("button.authorize").click()
    login = popup.value
    try:  # the provider signs the test user in and the redirect page closes the popup, which on a warm
        # provider can happen before a wait for the "close" event starts (that wait would then never end)
        if not login.is_closed():
            login.wait_for_event("close", timeout=45_000)
    except Exception:  # noqa: BLE001 (playwright's TimeoutError: say what the popup shows)
        shown = "" if login.is_closed() else f"{login.url}: {login.locator('body').inner_text()[:500]}"
        pytest.fail(f"the login popup did not close; it shows {shown!r}")
    oidc.locator("button", has_text="Logout").wait_for(timeout=15_000)
    page.locator(".auth-btn-wrapper .btn-done").first.click()

    assert list_tasks_status(page) == "200"
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
