"""JSON logs: one object per line, with the task id whichever way the line names its task."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from tesk.logs import JsonFormatter, task_context

TASK = "task-0123456789abcdefghjkmnpqrs"


def lines_of(emit: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tesk.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_task_id_from_extra_context_or_message() -> None:
    other = "task-zzzzzzzzzzzzzzzzzzzzzzzzzz"

    def emit(log: logging.Logger) -> None:
        log.info("started", extra={"task_id": TASK})
        with task_context(TASK):
            log.warning("staging inputs")

            async def inner() -> None:
                log.info("from an asyncio task started inside the context")

            asyncio.run(inner())
        log.info("task %s: cancel requested by %s", other, "alice")
        log.info("service started")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("task %s: the runner failed", TASK)

    lines = lines_of(emit)
    assert [line.get("task_id") for line in lines] == [TASK, TASK, TASK, other, None, TASK]
    assert lines[1]["level"] == "warning" and lines[1]["logger"] == "tesk.test.logs"
    assert lines[3]["message"] == f"task {other}: cancel requested by alice"
    assert "ValueError: boom" in str(lines[5]["error"])
    assert all(str(line["time"]).endswith("+00:00") for line in lines)
