"""/metrics: Prometheus text that parses, with counters that move as the server works."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

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


@pytest.mark.containers
def test_a_finished_task_is_timed(tmp_path: Path) -> None:
    with local_server(tmp_path) as server, client(server.url) as http:
        before = scrape(http)
        r = http.post("/ga4gh/tes/v1/tasks", json={"executors": [{"image": IMAGE, "command": ["true"]}]})
        task_id = r.json()["id"]
        with http.stream("GET", f"/ga4gh/tes/v1/tasks/{task_id}/events") as response:
            assert [d["state"] for _, d in sse_events(response)][-1] == "COMPLETE"
        deadline = time.monotonic() + 10  # the duration is observed by a consumer of the same event
        while value(after := scrape(http), "tesk_task_duration_seconds_count", state="COMPLETE") == value(
            before, "tesk_task_duration_seconds_count", state="COMPLETE"
        ):
            assert time.monotonic() < deadline, "the task's duration was never observed"
            time.sleep(0.05)
    count = "tesk_task_duration_seconds_count"
    assert value(after, count, state="COMPLETE") - value(before, count, state="COMPLETE") == 1
    assert value(after, "tesk_task_duration_seconds_sum", state="COMPLETE") > value(
        before, "tesk_task_duration_seconds_sum", state="COMPLETE"
    )
    assert value(after, "tesk_tasks", state="COMPLETE") == 1
