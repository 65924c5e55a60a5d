"""ListTasks: filters, tag pairing, views and keyset pagination over HTTP."""

from __future__ import annotations

import threading

from tests.api.conftest import Api, create


def ids(api: Api, **params: str | list[str]) -> list[str]:
    r = api.tes.get("/tasks", params=params)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["tasks"]]


def test_newest_first_and_minimal_by_default(api: Api) -> None:
    made = [create(api.tes, name=f"t{i}") for i in range(5)]
    r = api.tes.get("/tasks").json()
    assert [t["id"] for t in r["tasks"]] == made[::-1]
    assert all(set(t) == {"id", "state"} for t in r["tasks"])
    assert "next_page_token" not in r


def test_name_prefix_and_state_filters(api: Api) -> None:
    a = create(api.tes, name="align-1")
    b = create(api.tes, name="align-2")
    c = create(api.tes, name="Align-3")
    create(api.tes, name="call-1")
    api.tes.post(f"/tasks/{b}:cancel")
    assert ids(api, name_prefix="align") == [b, a]
    assert ids(api, name_prefix="Align") == [c]
    assert ids(api, name_prefix="align", state="QUEUED") == [a]
    assert ids(api, state="CANCELED") == [b]
    assert ids(api, name_prefix="%") == []


def test_tag_filters_pair_keys_with_values(api: Api) -> None:
    t1 = create(api.tes, tags={"foo": "bar"})
    t2 = create(api.tes, tags={"foo": "bat"})
    t3 = create(api.tes, tags={"foo": "bar", "baz": "bat"})
    t4 = create(api.tes, tags={"foo": ""})
    create(api.tes)
    assert ids(api, tag_key="foo", tag_value="bar") == [t3, t1]
    assert ids(api, tag_key="foo") == [t4, t3, t2, t1]
    assert ids(api, tag_key=["foo", "baz"], tag_value=["bar", "bat"]) == [t3]
    assert ids(api, tag_key=["foo", "baz"], tag_value=["bar"]) == [t3]
    assert ids(api, tag_key="foo", tag_value="") == [t4, t3, t2, t1]
    assert ids(api, tag_key="missing") == []


def test_views_apply_to_every_listed_task(api: Api) -> None:
    create(api.tes, inputs=[{"path": "/in", "content": "secret-ish"}])
    basic = api.tes.get("/tasks", params={"view": "BASIC"}).json()["tasks"][0]
    full = api.tes.get("/tasks", params={"view": "FULL"}).json()["tasks"][0]
    assert "content" not in basic["inputs"][0]
    assert full["inputs"][0]["content"] == "secret-ish"
    assert basic["executors"] and basic["name"] == "hello"


def test_pages_cover_every_task_once(api: Api) -> None:
    made = [create(api.tes, name=f"p{i}") for i in range(7)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"page_size": 3}
        if token:
            params["page_token"] = token
        r = api.tes.get("/tasks", params=params).json()
        seen += [t["id"] for t in r["tasks"]]
        pages += 1
        token = r.get("next_page_token")
        if not token:
            break
    assert pages == 3
    assert seen == made[::-1]


def test_exact_page_has_no_token(api: Api) -> None:
    for i in range(4):
        create(api.tes, name=f"e{i}")
    r = api.tes.get("/tasks", params={"page_size": 4}).json()
    assert len(r["tasks"]) == 4 and "next_page_token" not in r


def test_paging_while_tasks_are_being_created(api: Api) -> None:
    """Tasks created during paging appear on no later page; earlier ones appear exactly once."""
    before = [create(api.tes, name=f"b{i}") for i in range(10)]
    stop = threading.Event()

    def creator() -> None:
        while not stop.is_set():
            create(api.tes, name="during")

    thread = threading.Thread(target=creator)
    thread.start()
    try:
        seen: list[str] = []
        r = api.tes.get("/tasks", params={"page_size": 4, "name_prefix": "b"}).json()
        seen += [t["id"] for t in r["tasks"]]
        while r.get("next_page_token"):
            r = api.tes.get(
                "/tasks", params={"page_size": 4, "name_prefix": "b", "page_token": r["next_page_token"]}
            ).json()
            seen += [t["id"] for t in r["tasks"]]
    finally:
        stop.set()
        thread.join()
    assert seen == before[::-1]


def test_page_token_bound_to_its_filters(api: Api) -> None:
    for i in range(3):
        create(api.tes, name=f"x{i}")
    token = api.tes.get("/tasks", params={"page_size": 1, "name_prefix": "x"}).json()["next_page_token"]
    r = api.tes.get("/tasks", params={"page_size": 1, "name_prefix": "y", "page_token": token})
    assert r.status_code == 400
    assert "other filters" in r.json()["message"]
    r = api.tes.get("/tasks", params={"page_size": 1, "name_prefix": "x", "page_token": token})
    assert r.status_code == 200 and len(r.json()["tasks"]) == 1
