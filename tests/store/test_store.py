"""The task store's behaviour, identical on SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from tesk.models import TERMINAL_STATES, ExecutorLog, State, TaskLog
from tesk.store import EVERYONE, InvalidPageToken, TaskQuery, Visibility
from tesk.store.sql import SqlTaskStore
from tests.store.conftest import add, make_task, sqlite_url


async def all_ids(store: SqlTaskStore, **filters: object) -> list[str]:
    """Every id a query returns, following next_page_token to the end."""
    ids: list[str] = []
    token = None
    while True:
        page = await store.list(TaskQuery(page_size=50, page_token=token, with_body=False, **filters))  # type: ignore[arg-type]
        ids += [t.id for t in page.tasks]
        token = page.next_page_token
        if token is None:
            return ids


# -- create / get ---------------------------------------------------------------------------------


async def test_create_then_get_returns_the_task_owner_and_team(store: SqlTaskStore) -> None:
    task = make_task("align", {"project": "p1"})
    await store.create(task, "alice", "team-a")
    stored = await store.get(task.id or "")
    assert stored is not None
    assert (stored.id, stored.state, stored.owner, stored.team) == (task.id, State.QUEUED, "alice", "team-a")
    assert stored.task.name == "align"
    assert stored.task.tags == {"project": "p1"}
    assert stored.task.executors[0].command == ["true"]
    assert stored.task.creation_time == task.creation_time


async def test_get_of_an_unknown_id_is_none(store: SqlTaskStore) -> None:
    await add(store)
    assert await store.get("task-does-not-exist") is None


async def test_concurrent_creates_are_all_stored(store: SqlTaskStore) -> None:
    ids = await asyncio.gather(*(add(store, f"n{i}") for i in range(60)))
    assert sorted(await all_ids(store), reverse=True) == sorted(ids, reverse=True)


async def test_a_duplicate_id_fails_only_its_own_create(store: SqlTaskStore) -> None:
    task = make_task("first")
    await store.create(task, "alice", None)
    with pytest.raises(IntegrityError):
        await store.create(task, "alice", None)
    assert await add(store, "after") in await all_ids(store)


# -- name_prefix ------------------------------------------------------------------------------------

NAMES = [
    "abc",
    "abcd",
    "abc%",
    "abc_x",
    "ABC",
    "Abcd",
    "ab",
    "xabc",
    "a%c",
    "a_c",
    "abxc",
    "ab%c",
    "é-task",
    "e-task",
    None,
]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("abc", {"abc", "abcd", "abc%", "abc_x"}),
        ("ABC", {"ABC"}),
        ("Ab", {"Abcd"}),
        ("a%", {"a%c"}),
        ("a_", {"a_c"}),
        ("ab%", {"ab%c"}),
        ("abc_", {"abc_x"}),
        ("abc%", {"abc%"}),
        ("é", {"é-task"}),
        ("e", {"e-task"}),
        ("abcde", set()),
    ],
)
async def test_name_prefix_is_a_case_sensitive_literal_prefix(
    store: SqlTaskStore, prefix: str, expected: set[str]
) -> None:
    by_id = {await add(store, name): name for name in NAMES}
    found = {by_id[i] for i in await all_ids(store, name_prefix=prefix)}
    assert found == expected


# -- state ------------------------------------------------------------------------------------------


async def test_state_filter_keeps_only_that_state(store: SqlTaskStore) -> None:
    queued = await add(store)
    running = await add(store)
    done = await add(store)
    await store.update(running, state=State.RUNNING)
    await store.update(done, state=State.COMPLETE)
    assert await all_ids(store, state=State.QUEUED) == [queued]
    assert await all_ids(store, state=State.RUNNING) == [running]
    assert await all_ids(store, state=State.COMPLETE) == [done]
    assert await all_ids(store, state=State.CANCELED) == []


async def test_filters_combine_with_and(store: SqlTaskStore) -> None:
    match = await add(store, "keep-1", {"project": "p"})
    await add(store, "keep-2", {"project": "q"})
    other_state = await add(store, "keep-3", {"project": "p"})
    await add(store, "drop", {"project": "p"})
    await store.update(other_state, state=State.RUNNING)
    assert await all_ids(store, name_prefix="keep", state=State.QUEUED, tags={"project": "p"}) == [match]


# -- tags: the spec's pairing table (tes-spec.md §2.2) -----------------------------------------------


@pytest.mark.parametrize(
    ("query_tags", "task_tags", "matches"),
    [
        ({"foo": "bar"}, {"foo": "bar"}, True),
        ({"foo": "bar"}, {"foo": "bat"}, False),
        ({"foo": ""}, {"foo": ""}, True),
        ({"foo": "bar", "baz": "bat"}, {"foo": "bar", "baz": "bat"}, True),
        ({"foo": "bar"}, {"foo": "bar", "baz": "bat"}, True),
        ({"foo": "bar", "baz": "bat"}, {"foo": "bar"}, False),
        ({"foo": ""}, {"foo": "bar"}, True),
        ({"foo": ""}, {}, False),
    ],
)
async def test_tag_filter_follows_the_spec_table(
    store: SqlTaskStore, query_tags: dict[str, str], task_tags: dict[str, str], matches: bool
) -> None:
    task_id = await add(store, tags=task_tags)
    await add(store, tags={"unrelated": "x"})
    assert await all_ids(store, tags=query_tags) == ([task_id] if matches else [])


async def test_tag_values_match_exactly(store: SqlTaskStore) -> None:
    await add(store, tags={"foo": "Bar"})
    await add(store, tags={"foo": "bar "})
    await add(store, tags={"foo": "b%"})
    exact = await add(store, tags={"foo": "bar"})
    assert await all_ids(store, tags={"foo": "bar"}) == [exact]
    assert len(await all_ids(store, tags={"FOO": ""})) == 0


# -- keyset pagination ------------------------------------------------------------------------------


async def test_pages_are_newest_first_without_gaps_or_duplicates(store: SqlTaskStore) -> None:
    created = [await add(store, f"t{i}") for i in range(10)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = await store.list(TaskQuery(page_size=3, page_token=token, with_body=False))
        pages += 1
        assert len(page.tasks) <= 3
        seen += [t.id for t in page.tasks]
        token = page.next_page_token
        if token is None:
            break
    assert seen == list(reversed(created))
    assert pages == 4


async def test_no_next_page_token_when_the_last_page_is_exactly_full(store: SqlTaskStore) -> None:
    for i in range(4):
        await add(store, f"t{i}")
    first = await store.list(TaskQuery(page_size=2))
    assert first.next_page_token is not None
    second = await store.list(TaskQuery(page_size=2, page_token=first.next_page_token))
    assert len(second.tasks) == 2
    assert second.next_page_token is None


async def test_minimal_pages_do_not_read_the_body(store: SqlTaskStore) -> None:
    await add(store)
    page = await store.list(TaskQuery(with_body=False))
    assert page.tasks[0].body is None
    full = await store.list(TaskQuery(with_body=True))
    assert full.tasks[0].task.executors[0].image == "alpine"


async def test_paging_while_tasks_are_created_misses_and_repeats_nothing(store: SqlTaskStore) -> None:
    existing = [await add(store, f"old{i}") for i in range(40)]
    stop = asyncio.Event()

    async def keep_creating() -> int:
        made = 0
        while not stop.is_set():
            await add(store, f"new{made}")
            made += 1
            await asyncio.sleep(0)
        return made

    creator = asyncio.create_task(keep_creating())
    await asyncio.sleep(0.01)
    seen: list[str] = []
    page = await store.list(TaskQuery(page_size=7, with_body=False))
    at_first_page = {t.id for t in page.tasks}
    while True:
        seen += [t.id for t in page.tasks]
        if page.next_page_token is None:
            break
        await asyncio.sleep(0.005)
        page = await store.list(TaskQuery(page_size=7, page_token=page.next_page_token, with_body=False))
    stop.set()
    made_meanwhile = await creator
    assert made_meanwhile > 0
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert set(existing) <= set(seen), "a task that existed before paging began was skipped"
    assert seen == sorted(seen, reverse=True), "pages are not newest first"
    assert at_first_page <= set(seen)


async def test_a_forged_page_token_is_refused(store: SqlTaskStore) -> None:
    ids = [await add(store) for _ in range(3)]
    good = (await store.list(TaskQuery(page_size=1))).next_page_token
    assert good is not None
    _last_id, digest, signature = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)).decode().split("|")
    moved = base64.urlsafe_b64encode(f"{ids[0]}|{digest}|{signature}".encode()).decode().rstrip("=")
    for forged in ["garbage", "", "====", "x|y|z", moved, good[:-2], good + "AA"]:
        if not forged:
            continue
        with pytest.raises(InvalidPageToken, match="page_token"):
            await store.list(TaskQuery(page_size=1, page_token=forged))


async def test_a_page_token_of_other_filters_is_refused(store: SqlTaskStore) -> None:
    for _ in range(3):
        await add(store, "job", {"k": "v"})
    token = (await store.list(TaskQuery(page_size=1, name_prefix="job"))).next_page_token
    assert token is not None
    assert (await store.list(TaskQuery(page_size=1, name_prefix="job", page_token=token))).tasks
    for other in [
        TaskQuery(page_size=1, name_prefix="jo", page_token=token),
        TaskQuery(page_size=1, page_token=token),
        TaskQuery(page_size=1, name_prefix="job", tags={"k": "v"}, page_token=token),
        TaskQuery(page_size=1, name_prefix="job", state=State.QUEUED, page_token=token),
        TaskQuery(page_size=1, name_prefix="job", visibility=Visibility(owner="mallory"), page_token=token),
    ]:
        with pytest.raises(InvalidPageToken, match="other filters"):
            await store.list(other)


async def test_a_page_token_of_another_database_is_refused(store: SqlTaskStore, tmp_path: Path) -> None:
    """A token from a store that was recreated (new signing key) is stale, not silently reused."""
    other = SqlTaskStore(sqlite_url(tmp_path / "other.db"))
    await other.open()
    try:
        for _ in range(2):
            await add(other)
        stale = (await other.list(TaskQuery(page_size=1))).next_page_token
    finally:
        await other.close()
    assert stale is not None
    await add(store)
    with pytest.raises(InvalidPageToken):
        await store.list(TaskQuery(page_size=1, page_token=stale))


async def test_the_page_token_key_survives_a_restart(database_url: str) -> None:
    first = SqlTaskStore(database_url)
    await first.open()
    for _ in range(3):
        await add(first)
    token = (await first.list(TaskQuery(page_size=1))).next_page_token
    await first.close()
    second = SqlTaskStore(database_url)
    await second.open()
    try:
        assert len((await second.list(TaskQuery(page_size=5, page_token=token))).tasks) == 2
    finally:
        await second.close()


# -- updates ----------------------------------------------------------------------------------------


async def test_update_only_from_is_a_compare_and_set(store: SqlTaskStore) -> None:
    task_id = await add(store)
    assert await store.update(task_id, state=State.RUNNING, only_from=frozenset({State.INITIALIZING})) is None
    assert (await store.get(task_id)).state is State.QUEUED  # type: ignore[union-attr]
    changed = await store.update(task_id, state=State.INITIALIZING, only_from=frozenset({State.QUEUED}))
    assert changed is not None and changed.state is State.INITIALIZING
    assert (await store.get(task_id)).state is State.INITIALIZING  # type: ignore[union-attr]


async def test_update_of_an_unknown_task_is_none(store: SqlTaskStore) -> None:
    assert await store.update("task-nope", state=State.RUNNING) is None


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
async def test_a_terminal_state_is_never_left(store: SqlTaskStore, terminal: State) -> None:
    task_id = await add(store)
    await store.update(task_id, state=terminal)
    for later in State:
        if later is not terminal:
            assert await store.update(task_id, state=later) is None
    assert (await store.get(task_id)).state is terminal  # type: ignore[union-attr]


async def test_logs_are_stored_and_state_kept(store: SqlTaskStore) -> None:
    task_id = await add(store)
    logs = [TaskLog(logs=[ExecutorLog(exit_code=3, stdout="out")], system_logs=["pulled"])]
    changed = await store.update(task_id, state=State.EXECUTOR_ERROR, logs=logs)
    assert changed is not None
    stored = await store.get(task_id)
    assert stored is not None and stored.state is State.EXECUTOR_ERROR
    assert stored.task.logs is not None
    assert stored.task.logs[0].logs[0].exit_code == 3
    assert stored.task.logs[0].system_logs == ["pulled"]


async def test_concurrent_compare_and_set_from_two_replicas_has_one_winner(database_url: str) -> None:
    """Two store objects on one database (two server replicas): only one cancel may win."""
    stores = [SqlTaskStore(database_url), SqlTaskStore(database_url)]
    for s in stores:
        await s.open()
    try:
        ids = [await add(stores[0]) for _ in range(10)]
        for task_id in ids:
            results = await asyncio.gather(
                stores[0].update(task_id, state=State.CANCELING, only_from=frozenset({State.QUEUED})),
                stores[1].update(task_id, state=State.RUNNING, only_from=frozenset({State.QUEUED})),
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, f"task {task_id}: {results}"
            assert (await stores[1].get(task_id)).state is winners[0].state  # type: ignore[union-attr]
    finally:
        for s in stores:
            await s.close()


async def test_ids_in_states_lists_oldest_first(store: SqlTaskStore) -> None:
    a = await add(store)
    b = await add(store)
    c = await add(store)
    await store.update(b, state=State.RUNNING)
    await store.update(c, state=State.COMPLETE)
    assert await store.ids_in_states([State.QUEUED, State.RUNNING]) == [a, b]


# -- visibility -------------------------------------------------------------------------------------


def visibility_id(v: Visibility) -> str:
    """A stable test id (a frozenset's repr changes order from run to run, which breaks xdist)."""
    teams = None if v.owner_teams is None else sorted(v.owner_teams)
    return f"all={v.all}-owner={v.owner}-owner_teams={teams}-teams={sorted(v.teams)}"


OWNERS = [("alice", None), ("alice", "t1"), ("bob", "t1"), ("bob", "t2"), ("carol", None), ("carol", "t3")]


@pytest.mark.parametrize(
    "visibility",
    [
        EVERYONE,
        Visibility(),
        Visibility(owner="alice"),
        Visibility(owner="alice", owner_teams=frozenset({"t1"})),
        Visibility(owner="alice", owner_teams=frozenset()),
        Visibility(teams=frozenset({"t1"})),
        Visibility(owner="carol", teams=frozenset({"t2"})),
        Visibility(owner="carol", owner_teams=frozenset({"t3"}), teams=frozenset({"t1", "t2"})),
        Visibility(owner="nobody", teams=frozenset({"t9"})),
    ],
    ids=visibility_id,
)
async def test_visibility_in_sql_matches_visibility_allows(
    store: SqlTaskStore, visibility: Visibility
) -> None:
    """The SQL clause and the Python check (used on GET) must agree, task by task."""
    owners = {await add(store, owner=owner, team=team): (owner, team) for owner, team in OWNERS}
    listed = set(await all_ids(store, visibility=visibility))
    allowed = {task_id for task_id, (owner, team) in owners.items() if visibility.allows(owner, team)}
    assert listed == allowed


async def test_visibility_keeps_pages_full(store: SqlTaskStore) -> None:
    for i in range(10):
        await add(store, owner="alice" if i % 2 else "bob")
    page = await store.list(TaskQuery(page_size=3, visibility=Visibility(owner="alice")))
    assert len(page.tasks) == 3 and all(t.owner == "alice" for t in page.tasks)
    assert page.next_page_token is not None
