"""`tesk serve` configured only by environment, as an operator would: the seed's variable names,
the local backend in drain mode (TESK_LOCAL_MAX_TASKS=0: tasks queue and nothing runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import task_body
from tests.auth.conftest import OidcProvider
from tests.local.server import Server

pytestmark = pytest.mark.oidc


@pytest.fixture
def server(tmp_path: Path, oidc_provider: OidcProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for name in ("TESK_AUTH", "TESK_OIDC_AUDIENCE", "TESK_OIDC_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    serving = Server(
        tmp_path,
        {
            "SPRING_PROFILES_ACTIVE": "auth",
            "TESK_OIDC_ISSUER": oidc_provider.url,
            "TESK_API_AUTHORISATION_ENV_SUBGROUP": "EBI",
            "TESK_LOCAL_MAX_TASKS": "0",
        },
    )
    serving.start()
    yield serving
    serving.stop()


def test_auth_profile_end_to_end(server: Server, user_tokens: dict[str, str]) -> None:
    def as_user(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {user_tokens[user]}"}

    with httpx.Client(base_url=server.url, timeout=10) as tes:
        assert tes.get("/tasks").status_code == 401
        created = tes.post("/tasks", json=task_body(), headers=as_user("alice"))
        assert created.status_code == 200, created.text
        task_id = created.json()["id"]
        assert tes.get(f"/tasks/{task_id}", headers=as_user("alice")).json()["state"] == "QUEUED"
        assert tes.get(f"/tasks/{task_id}", headers=as_user("bob")).status_code == 403
        assert tes.get("/tasks", headers=as_user("bob")).json()["tasks"] == []
        assert [t["id"] for t in tes.get("/tasks", headers=as_user("carol")).json()["tasks"]] == [task_id]
        assert tes.post("/tasks", json=task_body(), headers=as_user("erin")).status_code == 403
        assert tes.post(f"/tasks/{task_id}:cancel", headers=as_user("carol")).status_code == 200
        assert tes.get(f"/tasks/{task_id}", headers=as_user("alice")).json()["state"] in (
            "CANCELING",
            "CANCELED",
        )
