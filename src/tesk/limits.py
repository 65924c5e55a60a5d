"""Time limits of a task and of each of its executors (issue 14, item 2).

TES has no field for them, so they are `resources.backend_parameters` keys, in seconds, listed in
service-info by every backend: `tesk.time_limit` for the whole task (staging included) and
`tesk.executor_time_limit` for each executor. A task without `tesk.time_limit` gets the server's
`TESK_TASK_TIME_LIMIT_SECONDS` (none by default). A task that runs past a limit is stopped and ends
EXECUTOR_ERROR with the failure reason `TimeLimitExceeded` (`tesk.failures`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tesk.models import Task

TASK_TIME_LIMIT = "tesk.time_limit"
EXECUTOR_TIME_LIMIT = "tesk.executor_time_limit"
TIME_LIMIT_PARAMETERS = frozenset({TASK_TIME_LIMIT, EXECUTOR_TIME_LIMIT})
"""backend_parameters keys every backend supports (lower case, as backends list their keys)."""
DEFAULT_TASK_TIME_LIMIT = "TESK_TASK_TIME_LIMIT_SECONDS"


def parse_seconds(key: str, value: str) -> int:
    """A limit's value: a whole number of seconds above 0; ValueError with a message for the client."""
    text = value.strip()
    if not text.isdigit() or int(text) == 0:
        raise ValueError(f"resources.backend_parameters {key} must be a whole number of seconds above 0, "
                         f"not {value!r}")
    return int(text)


def check_time_limits(task: Task) -> None:
    """Raise ValueError when a time-limit key of the task has a value that is not a limit."""
    for key, value in _parameters(task).items():
        if key in TIME_LIMIT_PARAMETERS:
            parse_seconds(key, value)


def _parameters(task: Task) -> dict[str, str]:
    """The task's backend_parameters with lower-case keys (the spec makes keys case-insensitive)."""
    resources = task.resources
    return {k.lower(): v for k, v in ((resources.backend_parameters if resources else None) or {}).items()}


@dataclass(frozen=True)
class TimeLimits:
    """The limits that apply to one task, in seconds (None: no limit)."""

    task: int | None = None
    executor: int | None = None
    task_from: str = TASK_TIME_LIMIT
    """Where the task's limit comes from, for messages: its parameter or the server's default."""

    @classmethod
    def of(cls, task: Task, default_task_seconds: int | None = None) -> TimeLimits:
        """The task's own limits, the server's default for the task limit when it gives none. Values
        were checked when the task was accepted; one that is not a limit (an older task) is ignored."""
        parameters = _parameters(task)

        def limit(key: str) -> int | None:
            try:
                return parse_seconds(key, parameters[key])
            except (KeyError, ValueError):
                return None

        task_limit = limit(TASK_TIME_LIMIT)
        if task_limit is None and default_task_seconds is not None:
            return cls(default_task_seconds, limit(EXECUTOR_TIME_LIMIT), DEFAULT_TASK_TIME_LIMIT)
        return cls(task_limit, limit(EXECUTOR_TIME_LIMIT))
