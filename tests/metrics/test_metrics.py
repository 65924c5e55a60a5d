"""/metrics: Prometheus text that parses, with counters that move as the server works."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from tesk.telemetry import count_kubernetes_request, count_staged_bytes
from tests.api.conftest import Api, create, make_api
from tests.conftest import client
from tests.events.conftest import IMAGE, local_server, sse_events

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(http: httpx.Client) -> Samples:
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from make_api(tmp_path)


def test_requests_are_counted_by_route_template_and_tasks_by_state(api: Api) -> None:
    before = scrape(api.http)
    ids = [create(api.tes) for _ in range(3)]
    for task_id in ids:
        assert api.tes.get(f"/tasks/{task_id}").status_code == 200
    assert api.tes.post(f"/tasks/{ids[0]}:cancel").status_code == 200
    assert api.tes.get("/tasks/task-unknown").status_code == 404
    assert api.http.get("/no/such/route").status_code == 404
    deadline = time.monotonic() + 10  # state changes are counted by a consumer of the event hub
    while value(after := scrape(api.http), "tesk_task_state_changes_total", state="CANCELED") == value(
        before, "tesk_task_state_changes_total", state="CANCELED"
    ):
        assert time.monotonic() < deadline, "the CANCELED state change was never counted"
        time.sleep(0.05)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    get_route = "/ga4gh/tes/v1/tasks/{id}"
    assert moved("tesk_api_request_duration_seconds_count", method="GET", route=get_route, status="200") == 3
    assert moved("tesk_api_request_duration_seconds_count", method="GET", route=get_route, status="404") == 1
    assert moved("tesk_api_request_duration_seconds_count", method="POST", route="/ga4gh/tes/v1/tasks", status="200") == 3
    assert moved("tesk_api_request_duration_seconds_count", method="GET", route="<unmatched>", status="404") == 1
    assert not any(ids[0] in labels_value for (_, labels) in after for _, labels_value in labels), "raw paths leaked"
    assert value(after, "tesk_tasks", state="QUEUED") == 2
    assert value(after, "tesk_tasks", state="CANCELED") == 1
    assert value(after, "tesk_backend_queue_length", backend="recording") == 2
    assert moved("tesk_task_state_changes_total", state="CANCELED") == 1
    assert moved("tesk_store_operation_duration_seconds_count", operation="create") == 3
    assert moved("tesk_store_operation_duration_seconds_count", operation="get") >= 4


def test_counters_other_parts_increment(api: Api) -> None:
    before = scrape(api.http)
    count_kubernetes_request("create", "jobs", 201)
    count_kubernetes_request("create", "jobs", 201)
    count_staged_bytes("s3", "in", 1500)
    after = scrape(api.http)
    key = {"verb": "create", "resource": "jobs", "code": "201"}
    assert value(after, "tesk_kubernetes_api_requests_total", **key) - value(before, "tesk_kubernetes_api_requests_total", **key) == 2
    staged = {"scheme": "s3", "direction": "in"}
    assert value(after, "tesk_filer_staged_bytes_total", **staged) - value(before, "tesk_filer_staged_bytes_total", **staged) == 1500


def finish(http: httpx.Client, executors: list[dict[str, object]]) -> str:
    """Submit a task and follow its events to its final state, which is returned."""
    task_id = http.post("/ga4gh/tes/v1/tasks", json={"executors": executors}).json()["id"]
    with http.stream("GET", f"/ga4gh/tes/v1/tasks/{task_id}/events") as response:
        state: str = [d["state"] for _, d in sse_events(response)][-1]
    return state


def scrape_after(http: httpx.Client, before: Samples, name: str, state: str) -> Samples:
    """The first scrape where `name{state=...}` moved: the final state's consumer runs apart from the
    event stream that told the test the task ended."""
    deadline = time.monotonic() + 10
    while value(after := scrape(http), name, state=state) == value(before, name, state=state):
        assert time.monotonic() < deadline, f"{name} for {state} never moved"
        time.sleep(0.05)
    return after


@pytest.mark.containers
def test_a_finished_task_is_timed_and_its_executors_peak_memory_observed(tmp_path: Path) -> None:
    """`sleep 1` outlives the first cgroup read, so the local backend measures its peak; an executor
    whose image is missing never ran, has no peak key, and must add no memory sample."""
    duration, memory = "tesk_task_duration_seconds", "tesk_executor_peak_memory_bytes"
    with local_server(tmp_path) as server, client(server.url) as http:
        before = scrape(http)
        assert finish(http, [{"image": IMAGE, "command": ["sleep", "1"]}]) == "COMPLETE"
        after = scrape_after(http, before, f"{duration}_count", "COMPLETE")
        assert finish(http, [{"image": "localhost/no-such-image:1", "command": ["true"]}]) == "SYSTEM_ERROR"
        failed = scrape_after(http, after, f"{duration}_count", "SYSTEM_ERROR")

    def moved(samples: Samples, since: Samples, name: str, state: str, **labels: str) -> float:
        return value(samples, name, state=state, **labels) - value(since, name, state=state, **labels)

    assert moved(after, before, f"{duration}_count", "COMPLETE") == 1
    assert moved(after, before, f"{duration}_sum", "COMPLETE") >= 1, "the task slept a second"
    assert value(after, "tesk_tasks", state="COMPLETE") == 1
    assert moved(after, before, f"{memory}_count", "COMPLETE") == 1
    peak = moved(after, before, f"{memory}_sum", "COMPLETE")
    assert 0 < peak < 2**24, f"a sleeping alpine peaks well under the first bucket (16 MiB), not at {peak}"
    assert moved(after, before, f"{memory}_bucket", "COMPLETE", le=floatToGoString(2**24)) == 1
    assert moved(failed, after, f"{duration}_count", "SYSTEM_ERROR") == 1
    assert moved(failed, after, f"{memory}_count", "SYSTEM_ERROR") == 0
