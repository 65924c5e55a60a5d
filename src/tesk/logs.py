"""Logging set-up: readable lines by default, JSON lines on request, with the task id as a field.

A line's task id comes from, in order: `extra={"task_id": ...}` on the call; the task whose work is in
progress (`with task_context(task_id):`, inherited by asyncio tasks started inside it); or the first
task id the message names (every tesk message about a task names it, as `task <id>: ...`). So a JSON
log can be filtered by task with one query, whichever part of tesk wrote the line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_current_task: contextvars.ContextVar[str | None] = contextvars.ContextVar("tesk_task_id", default=None)
TASK_ID_PATTERN = re.compile(r"\btask-[0-9a-z]{26}\b")
"""The shape of ids made by `tesk.store.new_task_id`."""


@contextmanager
def task_context(task_id: str) -> Iterator[None]:
    """Attribute every log line written inside the block (and its asyncio tasks) to `task_id`."""
    token = _current_task.set(task_id)
    try:
        yield
    finally:
        _current_task.reset(token)


def task_id_of(record: logging.LogRecord) -> str | None:
    """The task a log record is about, if any (see the module docstring for the order)."""
    explicit = getattr(record, "task_id", None)
    if explicit:
        return str(explicit)
    current = _current_task.get()
    if current:
        return current
    found = TASK_ID_PATTERN.search(record.getMessage())
    return found.group(0) if found else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and `task_id` when the line has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        task_id = task_id_of(record)
        if task_id:
            entry["task_id"] = task_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
