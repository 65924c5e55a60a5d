"""An internal error answers a JSON 500 and tells the client the connection closes.

Starlette re-raises an exception after its handler answered, and uvicorn then drops the connection;
without `Connection: close` a client that reuses the connection (httpx, requests) got "connection
reset" on its next request, which made one server error look like two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tesk.store import StoredTask
from tests.api.conftest import Api, make_api, task_body


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[Api]:
    """A live server whose store fails on reads of one task id, as a broken database would."""
    servers = make_api(tmp_path)
    api = next(servers)
    real_get = api.store.get

    async def get(task_id: str) -> StoredTask | None:
        if task_id == "task-boom":
            raise RuntimeError("the database went away")
        return await real_get(task_id)

    api.store.get = get  # type: ignore[method-assign]
    yield api
    next(servers, None)


def test_a_500_is_json_and_the_next_request_on_the_client_works(failing: Api) -> None:
    with httpx.Client(base_url=failing.url + "/ga4gh/tes/v1", timeout=10) as http:
        for _ in range(5):
            broken = http.get("/tasks/task-boom")
            assert broken.status_code == 500
            assert broken.json() == {
                "message": "Internal server error; the server log has the details.",
                "status_code": 500,
            }
            assert broken.headers.get("connection") == "close"
            created = http.post("/tasks", json=task_body())
            assert created.status_code == 200, created.text
