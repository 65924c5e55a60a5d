"""The client libraries themselves (py-tes 1.x, py-tes 0.4.2, pydantic-tes 0.4) with real podman tasks.

The fixtures replay the requests; these tests show that each library's own parser accepts every
answer along the way (strict attrs models in py-tes, pydantic models in pydantic-tes) and reaches
the same conclusion.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import tes
from pydantic import ValidationError
from pydantictes.api import TesClient
from pydantictes.models import TesExecutor, TesResources, TesState, TesTask

from tests.clients import old_pytes
from tests.clients.conftest import ClientServer
from tests.clients.replay import SCRIPTS, Replay

pytestmark = pytest.mark.containers


def fixture_task(server: ClientServer, name: str, scenario: str) -> dict[str, Any]:
    """The task body of a client fixture, with its files written to a fresh work folder."""
    replay = Replay(name, server.base, server.work(f"lib-{name}-{scenario}"), scenario)
    replay.close()
    task: dict[str, Any] = replay.fixture["task"]
    return task


def test_py_tes_current(tes_server: ClientServer) -> None:
    client = tes.HTTPClient(tes_server.base, timeout=10)
    assert client.get_service_info().type["artifact"] == "tes"
    ids = {}
    for scenario in ("success", "failure"):
        task = tes.utils.unmarshal(fixture_task(tes_server, "py-tes", scenario), tes.Task)
        ids[scenario] = client.create_task(task)
    done = {scenario: client.wait(task_id, timeout=60) for scenario, task_id in ids.items()}
    assert done["success"].state == "COMPLETE" and done["failure"].state == "EXECUTOR_ERROR"
    failed = client.get_task(ids["failure"], view="FULL")
    assert failed.logs[0].logs[0].exit_code == 3 and failed.logs[0].logs[0].end_time.tzinfo is not None
    basic = client.get_task(ids["success"])  # py-tes's default view, BASIC
    assert basic.logs[0].logs[0].exit_code == 0 and basic.logs[0].outputs[0].size_bytes == 13
    pages, token = [], None
    while True:
        page = client.list_tasks(view="BASIC", page_size=1, page_token=token)
        pages += [t.id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert set(ids.values()) <= set(pages) and len(pages) == len(set(pages))


def test_py_tes_0_4(tes_server: ClientServer) -> None:
    """Snakemake's, Toil's and cwl-tes's py-tes: TES 0.3 service-info, strict parsing, Basic None:None."""
    tasks = {s: fixture_task(tes_server, "py-tes-0.4", s) for s in ("success", "failure", "cancel")}
    result = old_pytes.run(
        """
import time
client = tes.HTTPClient(url)
info = client.get_service_info()
ids = {s: client.create_task(tes.utils.unmarshal(body, tes.Task)) for s, body in tasks.items()}
while client.get_task(ids["cancel"], "MINIMAL").state != "RUNNING":
    time.sleep(0.2)
client.cancel_task(ids["cancel"])
ends = {s: client.wait(i, timeout=60).state for s, i in ids.items()}
full = {s: client.get_task(i, "FULL") for s, i in ids.items()}
listed, token = [], None
while True:
    page = client.list_tasks(view="FULL", page_size=2, page_token=token)
    listed += [t.id for t in page.tasks]
    token = page.next_page_token
    if not token:
        break
result = {
    "storage": info.storage, "ends": ends, "listed": listed, "ids": ids,
    "final": {s: t.state for s, t in full.items()},
    "exit_codes": {s: [e.exit_code for e in t.logs[0].logs] for s, t in full.items() if s != "cancel"},
    "sizes": [o.size_bytes for o in full["success"].logs[0].outputs],
}
""",
        url=tes_server.base, tasks=tasks,
    )
    assert isinstance(result["storage"], list)
    assert result["ends"]["success"] == "COMPLETE" and result["ends"]["failure"] == "EXECUTOR_ERROR"
    # wait() ends on any state it does not know as running; py-tes 0.4's model has no CANCELING,
    # and the server's next answer is CANCELED once the container stopped.
    assert result["final"]["cancel"] == "CANCELED"
    assert result["exit_codes"] == {"success": [0], "failure": [3]}
    assert result["sizes"] == [13]
    assert set(result["ids"].values()) <= set(result["listed"]) and len(result["listed"]) == len(set(result["listed"]))


def test_pydantic_tes_as_pulsar_uses_it(tes_server: ClientServer) -> None:
    """pydantic-tes posts model_dump_json() (nulls everywhere) and parses every FULL answer."""
    client = TesClient(url=tes_server.base + "/ga4gh/tes/")
    info = client.service_info()
    assert info.type.artifact.value == "tes"
    ids = {}
    for scenario in ("success", "failure", "cancel"):
        task = TesTask(
            name=f"pulsar-{scenario}",
            executors=[
                TesExecutor(image="busybox", command=["sh", "-c", "echo staged > /pulsar_staging/in"]),
                TesExecutor(image="busybox", command=["sh", "-c", "cat /pulsar_staging/in; " + SCRIPTS[scenario]]),
            ],
            volumes=["/pulsar_staging"],
            resources=TesResources(cpu_cores=1, backend_parameters_strict=None),
        )
        assert '"state":null' in task.model_dump_json()
        ids[scenario] = client.create_task(task).id
    seen: dict[str, list[TesState]] = {s: [] for s in ids}
    unparsed = []
    deadline = time.monotonic() + 60
    while True:
        for scenario, task_id in ids.items():
            try:
                state = client.get_task(task_id, "FULL").state
            except ValidationError as exc:
                # pydantic-tes's TesState has no CANCELING: between a cancel and CANCELED, its poll raises.
                assert scenario == "cancel" and "CANCELING" in str(exc), exc
                unparsed.append(scenario)
                continue
            assert state is not None
            if not seen[scenario] or seen[scenario][-1] != state:
                seen[scenario].append(state)
        if TesState.RUNNING in seen["cancel"] and len(seen["cancel"]) == seen["cancel"].index(TesState.RUNNING) + 1:
            client.cancel_task(ids["cancel"])
            seen["cancel"].append(TesState.RUNNING)  # asked once
        if all(s[-1] in (TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.CANCELED) for s in seen.values()):
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    success = client.get_task(ids["success"], "FULL")
    failure = client.get_task(ids["failure"], "FULL")
    assert success.state is TesState.COMPLETE and [e.exit_code for e in success.logs[0].logs] == [0, 0]
    assert failure.state is TesState.EXECUTOR_ERROR and [e.exit_code for e in failure.logs[0].logs] == [0, 3]
    assert success.logs[0].logs[1].stdout == "staged\nhello\n", "the volume is shared between executors"
    assert seen["cancel"][-1] is TesState.CANCELED
    assert set(unparsed) <= {"cancel"}, "only a task the client canceled shows a state it cannot parse"
    listed = {t.id for t in client.list_tasks().tasks}
    assert set(ids.values()) <= listed
