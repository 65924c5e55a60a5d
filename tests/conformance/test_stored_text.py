"""Text PostgreSQL cannot store or index gets a 400 (or, as a task id, a 404), never a 500.

Found by running these requests against a PostgreSQL-backed server: NUL characters in a name or tag,
a tag key over the column's 255 characters, or a name or tag value past PostgreSQL's B-tree entry
limit (about 2.7 kB) each answered 500, and so did GetTask and CancelTask of an id holding NUL.
Both stores answer the same. A short schemathesis run on PostgreSQL guards the rest.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error

from tests.api.conftest import Api, make_api
from tests.conformance.test_schemathesis import schema
from tests.pg import PostgresServer

STORES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    yield from make_api(tmp_path_factory.mktemp(request.param), database_url=url)


def incompressible(chars: int) -> str:
    """CJK text that does not compress, so PostgreSQL cannot shrink it under the index limit."""
    rnd = random.Random(chars)
    return "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(chars))


def body(**extra: object) -> dict[str, object]:
    return {"executors": [{"image": "alpine", "command": ["true"]}], **extra}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"name": "a\x00b"}, "name must not contain NUL characters"),
        ({"name": incompressible(1000)}, "name is 3000 bytes (UTF-8); this server accepts at most 1024"),
        ({"tags": {"k\x00": "v"}}, "tag keys must be at most 255 characters without NUL"),
        (
            {"tags": {"k" * 256: "v"}},
            "tag keys must be at most 255 characters without NUL (got 256 characters)",
        ),
        ({"tags": {"k": "v\x00"}}, "the value of tag 'k' must not contain NUL characters"),
        ({"tags": {"k": incompressible(1000)}}, "the value of tag 'k' is 3000 bytes"),
    ],
    ids=["name-nul", "name-long", "tag-key-nul", "tag-key-long", "tag-value-nul", "tag-value-long"],
)
def test_unstorable_text_is_a_400_that_says_what_to_fix(
    server: Api, extra: dict[str, object], message: str
) -> None:
    before = server.tes.get("/tasks", params={"page_size": 2047}).json()["tasks"]
    answer = server.tes.post("/tasks", json=body(**extra))
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["message"]
    assert server.tes.get("/tasks", params={"page_size": 2047}).json()["tasks"] == before


def test_the_largest_accepted_values_are_stored(server: Api) -> None:
    name = incompressible(341)  # 1023 bytes
    tags = {"k" * 255: incompressible(341), "small": ""}
    created = server.tes.post("/tasks", json=body(name=name, tags=tags))
    assert created.status_code == 200, created.text
    task = server.tes.get(f"/tasks/{created.json()['id']}", params={"view": "BASIC"}).json()
    assert (task["name"], task["tags"]) == (name, tags)


@pytest.mark.parametrize(
    "params", [{"name_prefix": "\x00"}, {"tag_key": "\x00"}, {"tag_key": "k", "tag_value": "\x00"}]
)
def test_nul_in_list_filters_is_a_400(server: Api, params: dict[str, str]) -> None:
    answer = server.tes.get("/tasks", params=params)
    assert answer.status_code == 400, answer.text
    assert "must not contain NUL characters" in answer.json()["message"]


@pytest.mark.parametrize("task_id", ["task-a%00b", "%00", "x" * 5000])
def test_an_id_that_cannot_exist_is_a_404_for_get_and_cancel(server: Api, task_id: str) -> None:
    for answer in (server.tes.get(f"/tasks/{task_id}"), server.tes.post(f"/tasks/{task_id}:cancel")):
        assert answer.status_code == 404, answer.text
        assert answer.json()["status_code"] == 404


def test_a_long_name_prefix_is_just_a_filter(server: Api) -> None:
    answer = server.tes.get("/tasks", params={"name_prefix": incompressible(3000)})
    assert answer.status_code == 200 and answer.json()["tasks"] == []


@pytest.mark.postgres
@schema.parametrize()
def test_generated_requests_get_no_server_error_on_postgresql(case: schemathesis.Case, pg_live: Api) -> None:
    """Every operation against a PostgreSQL-backed server (stricter about text than SQLite)."""
    case.call_and_validate(base_url=pg_live.url + "/ga4gh/tes/v1", checks=[not_a_server_error])


@pytest.fixture(scope="module")
def pg_live(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Api]:
    yield from make_api(tmp_path_factory.mktemp("pg-live"), database_url=postgres_server.create_database())
