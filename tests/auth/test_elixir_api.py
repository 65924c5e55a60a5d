"""TESK's Elixir group table through the real HTTP API, with tokens from a real OIDC provider.

Users (see conftest): alice and bob are members of team SDO, carol is SDO's team admin, dave a super
admin, erin has only the environment group, frank is in another environment, grace is in team TEST,
heidi in SDO and TEST, ivan is TEST's team admin.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import tes
from typer.testing import CliRunner

from tesk.api.app import create_app
from tesk.api.compose import compose
from tesk.config.auth import AuthSettings
from tesk.cli import _register, app
from tesk.config import TeskConfig
from tesk.store.sql import SqlTaskStore
from tests.api.conftest import RecordingBackend, task_body
from tests.auth.conftest import AUDIENCE, OidcProvider, SigningKey, entitlement
from tests.conftest import client, serving

pytestmark = pytest.mark.oidc

EVERYONE = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")


@dataclass
class AuthApi:
    url: str
    database: Path
    backend: RecordingBackend
    tokens: dict[str, str]

    def tes(self, user: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return client(self.url + "/ga4gh/tes/v1", headers=headers)

    def create(self, user: str, **tags: str) -> str:
        with self.tes(user) as tes:
            response = tes.post("/tasks", json=task_body(tags=tags))
        assert response.status_code == 200, response.text
        task_id: str = response.json()["id"]
        return task_id

    def recorded(self, task_id: str) -> tuple[str, str | None]:
        """(owner, team) as the store recorded them."""
        with sqlite3.connect(self.database) as db:
            row = db.execute("SELECT owner, team FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return row[0], row[1]


def start_api(tmp_path: Path, auth: AuthSettings, tokens: dict[str, str]) -> Iterator[AuthApi]:
    config = TeskConfig.read(server={"data_dir": tmp_path}).replace(auth=auth)
    store = SqlTaskStore(config.database_url)
    backend = RecordingBackend(store)
    app = create_app(compose(config, store=store, backend=backend))
    with serving(app) as server:
        yield AuthApi(server.url, tmp_path / "tesk.db", backend, dict(tokens))


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, oidc_provider: OidcProvider, user_tokens: dict[str, str]
) -> Iterator[AuthApi]:
    auth = AuthSettings(profile="auth", issuer=oidc_provider.url, audience=AUDIENCE)
    yield from start_api(tmp_path_factory.mktemp("elixir-api"), auth, user_tokens)


@pytest.mark.parametrize(
    ("user", "tags", "team"),
    [
        ("alice", {}, "SDO"),
        ("carol", {}, "SDO"),  # a team admin is a member of the team
        ("dave", {}, None),  # a super admin without a team creates tasks of no team
        ("grace", {}, "TEST"),
        ("heidi", {"GROUP_NAME": "TEST"}, "TEST"),
        ("heidi", {"GROUP_NAME": "SDO"}, "SDO"),
        ("heidi", {}, "SDO"),  # several teams and no tag: the first by name
    ],
)
def test_create_records_creator_and_team(
    api: AuthApi, user: str, tags: dict[str, str], team: str | None
) -> None:
    assert api.recorded(api.create(user, **tags)) == (user, team)


@pytest.mark.parametrize(
    ("user", "tags", "missing"),
    [
        ("erin", {}, entitlement("EBI", "<TEAM>")),
        ("frank", {}, entitlement("EBI", "ADMIN")),
        ("alice", {"GROUP_NAME": "TEST"}, entitlement("EBI", "TEST")),
        ("dave", {"GROUP_NAME": "SDO"}, entitlement("EBI", "SDO")),
    ],
)
def test_create_forbidden_names_the_missing_group(
    api: AuthApi, user: str, tags: dict[str, str], missing: str
) -> None:
    with api.tes(user) as tes:
        response = tes.post("/tasks", json=task_body(tags=tags))
    assert response.status_code == 403
    assert response.json()["status_code"] == 403
    assert missing in response.json()["message"]


ALLOWED_ON_ALICES_SDO_TASK = {"alice", "carol", "dave"}


@pytest.mark.parametrize("user", EVERYONE)
def test_get(api: AuthApi, user: str) -> None:
    task_id = api.create("alice")
    with api.tes(user) as tes:
        response = tes.get(f"/tasks/{task_id}")
    if user in ALLOWED_ON_ALICES_SDO_TASK:
        assert response.status_code == 200, response.text
        assert response.json() == {"id": task_id, "state": "QUEUED"}
    else:
        assert response.status_code == 403, response.text
        assert "group" in response.json()["message"]


@pytest.mark.parametrize("user", EVERYONE)
def test_cancel(api: AuthApi, user: str) -> None:
    task_id = api.create("alice")
    with api.tes(user) as tes:
        response = tes.post(f"/tasks/{task_id}:cancel")
        state = api.tes("dave").get(f"/tasks/{task_id}").json()["state"]
    if user in ALLOWED_ON_ALICES_SDO_TASK:
        assert response.status_code == 200, response.text
        assert (task_id, user) in api.backend.cancelled
        assert state == "CANCELED"
    else:
        assert response.status_code == 403, response.text
        assert state == "QUEUED"


def test_a_task_of_no_team_is_for_super_admins_only(api: AuthApi) -> None:
    task_id = api.create("dave")
    for user in ("alice", "carol", "heidi"):
        with api.tes(user) as tes:
            response = tes.get(f"/tasks/{task_id}")
        assert response.status_code == 403
        assert entitlement("EBI", "ADMIN") in response.json()["message"]


def test_unknown_task_is_404_for_everyone(api: AuthApi) -> None:
    with api.tes("alice") as tes:
        assert tes.get("/tasks/task-does-not-exist").status_code == 404


# --- list: exactly the visible tasks, filtered in the store query -----------------------------------

LIST_EXPECTED: dict[str, set[str] | None] = {
    "alice": {"alice-1", "alice-2"},
    "bob": {"bob-1"},
    "carol": {"alice-1", "alice-2", "bob-1", "carol-1", "heidi-sdo"},
    "dave": {"alice-1", "alice-2", "bob-1", "carol-1", "dave-1", "grace-1", "heidi-sdo", "heidi-test"},
    "erin": None,
    "frank": None,
    "grace": {"grace-1"},
    "heidi": {"heidi-sdo", "heidi-test"},
    "ivan": {"grace-1", "heidi-test"},
}


@pytest.fixture(scope="module")
def listed(
    tmp_path_factory: pytest.TempPathFactory, oidc_provider: OidcProvider, user_tokens: dict[str, str]
) -> Iterator[tuple[AuthApi, dict[str, str]]]:
    """A fresh server holding one known set of tasks."""
    auth = AuthSettings(profile="auth", issuer=oidc_provider.url, audience=AUDIENCE)
    for api in start_api(tmp_path_factory.mktemp("elixir-list"), auth, user_tokens):
        labels = {
            "alice-1": api.create("alice"),
            "alice-2": api.create("alice"),
            "bob-1": api.create("bob"),
            "carol-1": api.create("carol"),
            "dave-1": api.create("dave"),
            "grace-1": api.create("grace"),
            "heidi-sdo": api.create("heidi", GROUP_NAME="SDO"),
            "heidi-test": api.create("heidi", GROUP_NAME="TEST"),
        }
        yield api, {task_id: label for label, task_id in labels.items()}


@pytest.mark.parametrize("user", EVERYONE)
def test_list_returns_exactly_the_visible_tasks_in_full_pages(
    listed: tuple[AuthApi, dict[str, str]], user: str
) -> None:
    api, labels = listed
    expected = LIST_EXPECTED[user]
    seen: list[str] = []
    token: str | None = None
    with api.tes(user) as tes:
        while True:
            params = {"page_size": "2", **({"page_token": token} if token else {})}
            response = tes.get("/tasks", params=params)
            if expected is None:
                assert response.status_code == 403
                assert entitlement("EBI", "<TEAM>") in response.json()["message"]
                return
            assert response.status_code == 200, response.text
            page = [task["id"] for task in response.json()["tasks"]]
            token = response.json().get("next_page_token")
            seen += page
            if not token:
                break
            assert len(page) == 2, "pages are filtered in the query, so every page but the last is full"
    assert {labels[task_id] for task_id in seen} == expected
    assert len(seen) == len(expected)


# --- the rest of the HTTP contract under `auth` -----------------------------------------------------


def test_no_token_is_401_with_a_json_body(api: AuthApi) -> None:
    with api.tes(None) as tes:
        for response in (tes.get("/tasks"), tes.post("/tasks", json=task_body()), tes.get("/tasks/x")):
            assert response.status_code == 401
            assert response.json()["status_code"] == 401
            assert "Bearer" in response.json()["message"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_service_info_and_health_stay_open(api: AuthApi) -> None:
    with client(api.url) as http:
        for path in (
            "/ga4gh/tes/v1/service-info",
            "/v1/service-info",
            "/service-info",
            "/healthz",
            "/readyz",
        ):
            assert http.get(path).status_code == 200, path


def test_provider_down_is_503(tmp_path: Path, user_tokens: dict[str, str]) -> None:
    from tests.conftest import free_port

    auth = AuthSettings(profile="auth", issuer=f"http://127.0.0.1:{free_port()}")
    for api in start_api(tmp_path, auth, user_tokens):
        with api.tes("alice") as tes:
            response = tes.get("/tasks")
        assert response.status_code == 503
        assert "retry later" in response.json()["message"]


def test_owner_model(tmp_path: Path, oidc_provider: OidcProvider, user_tokens: dict[str, str]) -> None:
    """The simpler model: owners see their own tasks; admins by claim value see all."""
    auth = AuthSettings(
        profile="auth",
        issuer=oidc_provider.url,
        model="owner",
        admin_claim="eduperson_entitlement",
        admin_value=entitlement("EBI", "ADMIN"),
    )
    for api in start_api(tmp_path, auth, user_tokens):
        mine = api.create("erin")  # no group needed in this model
        assert api.recorded(mine) == ("erin", None)
        theirs = api.create("frank")
        with api.tes("erin") as tes:
            assert [t["id"] for t in tes.get("/tasks").json()["tasks"]] == [mine]
            forbidden = tes.get(f"/tasks/{theirs}")
            assert forbidden.status_code == 403
            assert "another user" in forbidden.json()["message"]
        with api.tes("dave") as tes:
            assert {t["id"] for t in tes.get("/tasks").json()["tasks"]} == {mine, theirs}
            assert tes.post(f"/tasks/{theirs}:cancel").status_code == 200


def test_swagger_authorize_button(
    tmp_path: Path, oidc_provider: OidcProvider, user_tokens: dict[str, str]
) -> None:
    """What the API publishes for Swagger UI is enough to log in (code + PKCE) and call the API."""
    auth = AuthSettings(profile="auth", issuer=oidc_provider.url, swagger_client_id="tesk-swagger")
    for api in start_api(tmp_path, auth, user_tokens):
        with client(api.url) as http:
            schema = http.get("/openapi.json").json()
            page = http.get("/").text
            assert http.get("/swagger-ui/oauth2-redirect.html").status_code == 200
        oauth = schema["components"]["securitySchemes"]["oidc"]["flows"]["authorizationCode"]
        assert oauth["authorizationUrl"] == f"{oidc_provider.url}/auth"
        assert oauth["tokenUrl"] == f"{oidc_provider.url}/token"
        assert schema["paths"]["/ga4gh/tes/v1/tasks"]["get"]["security"] == [{"bearer": []}, {"oidc": []}]
        assert "security" not in schema["paths"]["/ga4gh/tes/v1/service-info"]["get"]
        assert '"clientId": "tesk-swagger"' in page
        assert '"usePkceWithAuthorizationCodeGrant": true' in page
        api.tokens["grace-by-swagger"] = oidc_provider.login(
            "grace",
            client_id="tesk-swagger",
            redirect_uri=f"{api.url}/swagger-ui/oauth2-redirect.html",
            authorization_url=oauth["authorizationUrl"],
            token_url=oauth["tokenUrl"],
            scope=" ".join(oauth["scopes"]),
        )
        assert api.recorded(api.create("grace-by-swagger")) == ("grace", "TEST")


@pytest.mark.parametrize("require", [False, True])
def test_metrics_open_unless_configured(
    tmp_path: Path, oidc_provider: OidcProvider, user_tokens: dict[str, str], require: bool
) -> None:
    auth = AuthSettings(profile="auth", issuer=oidc_provider.url, metrics_require_auth=require)
    for api in start_api(tmp_path, auth, user_tokens):
        with client(api.url) as http:
            anonymous = http.get("/metrics")
            with_token = http.get("/metrics", headers={"Authorization": f"Bearer {user_tokens['erin']}"})
    assert anonymous.status_code == (401 if require else 200)
    assert with_token.status_code == 200


def test_a_creator_who_left_the_team_loses_the_task(
    api: AuthApi, oidc_provider: OidcProvider, provider_key: SigningKey
) -> None:
    """TESK: creator AND member of the task's team. Grace (now TEST only) created a task while in SDO."""
    api.tokens["grace-in-sdo"] = provider_key.sign(
        oidc_provider.claims(sub="grace", eduperson_entitlement=[entitlement("EBI", "SDO")])
    )
    old = api.create("grace-in-sdo")
    assert api.recorded(old) == ("grace", "SDO")
    with api.tes("grace") as tes:
        assert old not in {t["id"] for t in tes.get("/tasks", params={"page_size": "2047"}).json()["tasks"]}
        response = tes.get(f"/tasks/{old}")
    assert response.status_code == 403
    assert entitlement("EBI", "SDO") in response.json()["message"]


def test_tesk_task_client_with_a_token(api: AuthApi) -> None:
    """`tesk task` sends TESK_TOKEN as a bearer token; without one it prints the server's 401 message."""
    _register()

    def tesk(token: str, *args: str, stdin: str | None = None) -> Any:
        return CliRunner(env={"TESK_URL": api.url, "TESK_TOKEN": token}).invoke(app, list(args), input=stdin)

    submitted = tesk(api.tokens["alice"], "task", "submit", "-", stdin=json.dumps(task_body()))
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.strip()
    assert api.recorded(task_id) == ("alice", "SDO")
    assert task_id in tesk(api.tokens["carol"], "task", "list").stdout
    refused = tesk("", "task", "list")
    assert refused.exit_code == 2
    assert "Authorization: Bearer" in refused.stderr
    forbidden = tesk(api.tokens["bob"], "task", "get", task_id)
    assert forbidden.exit_code == 2
    assert entitlement("EBI", "SDO", "ADMIN") in forbidden.stderr


def test_py_tes_with_a_bearer_token(api: AuthApi) -> None:
    alice = tes.HTTPClient(api.url, token=api.tokens["alice"])
    task_id = alice.create_task(tes.Task(executors=[tes.Executor(image="alpine", command=["true"])]))
    assert alice.get_task(task_id).state == "QUEUED"
    assert api.recorded(task_id) == ("alice", "SDO")
    with pytest.raises(requests.HTTPError, match="403"):
        tes.HTTPClient(api.url, token=api.tokens["bob"]).get_task(task_id)
