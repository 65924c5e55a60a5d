"""Every client fixture replayed against the real server with real podman tasks.

For each client: a task that succeeds, one whose command fails with exit code 3, and one the client
cancels while it runs; the assertions are what that client would conclude (see replay.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.clients.conftest import ClientServer
from tests.clients.replay import Conclusion, Replay, load

pytestmark = pytest.mark.containers

CLIENTS = ["nextflow", "cromwell", "pulsar", "snakemake", "toil", "cwl-tes", "py-tes", "py-tes-0.4"]


def run(name: str, server: ClientServer, scenario: str) -> tuple[Replay, Conclusion]:
    replay = Replay(name, server.base, server.work(f"{name}-{scenario}"), scenario)
    task_id = replay.create()
    before: list[str] = []
    if scenario == "cancel":
        before = replay.follow(task_id, until={"RUNNING"}).seen
        answer = replay.send("cancel", task_id)
        assert answer.status_code == 200 and answer.json() == {}, answer.text
    result = replay.conclude(replay.follow(task_id))
    result.seen = before + result.seen
    # States the client meets without having asked for a cancel (it may meet CANCELING after that).
    result.unprompted = before or result.seen
    return replay, result


@pytest.mark.parametrize("name", CLIENTS)
def test_client_concludes_what_happened(name: str, tes_server: ClientServer) -> None:
    with ThreadPoolExecutor(3) as pool:
        done = dict(zip(("success", "failure", "cancel"),
                        pool.map(lambda s: run(name, tes_server, s), ("success", "failure", "cancel"))))
    reads = load(name)["reads"]
    for scenario, (replay, result) in done.items():
        try:
            assert set(result.unprompted) <= set(reads["states"]), f"{scenario}: unparseable states in {result.seen}"
            check_task_shape(replay, result)
            for name_on_host in reads.get("outputs_on_host", []) if scenario == "success" else []:
                assert (replay.work / name_on_host).is_file(), f"output {name_on_host} was not written back"
        finally:
            replay.close()
    success, failure, cancel = (done[s][1] for s in ("success", "failure", "cancel"))
    assert success.state == "COMPLETE" and success.exit_code in (0, None), success
    if "outcome" in reads:
        assert success.outcome == reads["outcome"]["COMPLETE"]
    # A failing command: EXECUTOR_ERROR with its exit code, or (Cromwell, whose script writes rc and
    # exits 0) COMPLETE with rc 3.
    assert failure.state in ("EXECUTOR_ERROR", "COMPLETE"), failure
    if failure.state == "EXECUTOR_ERROR" and "outcome" in reads:
        assert failure.outcome == reads["outcome"]["EXECUTOR_ERROR"]
    if "exit_code" in reads:
        assert failure.exit_code == 3, failure
    # py-tes's wait() stops at CANCELING, a state it counts as finished; every other client waits for
    # CANCELED, which the server reaches in both cases.
    assert cancel.state == "CANCELED" or (cancel.state == "CANCELING" in reads["terminal"]), cancel
    if "outcome" in reads:
        assert cancel.outcome == reads["outcome"]["CANCELED"]


def check_task_shape(replay: Replay, result: Conclusion) -> None:
    """What the client's parser needs in the final answer it reads."""
    body = result.final
    if not body:
        return
    assert None not in body.values(), "no nulls in answers"
    for log in body.get("logs", []):
        assert isinstance(log["logs"], list) and isinstance(log["outputs"], list)
        assert log["start_time"].endswith("Z"), "timestamps carry their offset"
        for output in log["outputs"]:
            assert isinstance(output["size_bytes"], str), "Cromwell reads size_bytes as a JSON string"
        for executor in log["logs"]:
            assert isinstance(executor["exit_code"], int)
    if replay.reads.get("states") and "PREEMPTED" not in replay.reads["states"]:
        assert body["state"] in replay.reads["states"]
