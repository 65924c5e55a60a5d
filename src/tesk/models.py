"""Pydantic models of the GA4GH TES 1.1 schemas, with the spec's names.

Requests are validated against the spec's types (strings are not numbers, enums are enums) and
unknown fields are ignored, never echoed. Responses are rendered with `render_task`, which keeps only
spec fields, drops unset optionals instead of sending `null` (py-tes rejects nulls and unknown keys)
and shapes a task for the MINIMAL / BASIC / FULL views.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

TES_VERSION = "1.1.0"


class State(StrEnum):
    """Task state as defined by the server (tesState)."""

    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[State] = frozenset(
    {State.COMPLETE, State.EXECUTOR_ERROR, State.SYSTEM_ERROR, State.CANCELED, State.PREEMPTED}
)
ACTIVE_STATES: frozenset[State] = frozenset(
    {State.QUEUED, State.INITIALIZING, State.RUNNING, State.PAUSED, State.UNKNOWN}
)
"""States a runner may still move a task out of (CANCELING belongs to the cancel path)."""


class FileType(StrEnum):
    FILE = "FILE"
    DIRECTORY = "DIRECTORY"


class View(StrEnum):
    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


_WILDCARD = re.compile(r"[*?\[]")


def has_wildcards(path: str) -> bool:
    """True when a TES 1.1 output path uses POSIX pattern characters."""
    return bool(_WILDCARD.search(path))


def check_container_path(path: str, what: str) -> str:
    """Refuse paths that are not absolute and normalised, so nothing can climb out of a task's area."""
    if not path.startswith("/"):
        raise ValueError(f"{what} must be an absolute path inside the container (got {path!r})")
    parts = path.split("/")
    if ".." in parts or "." in parts:
        raise ValueError(f"{what} must not contain '.' or '..' segments (got {path!r})")
    if "\x00" in path:
        raise ValueError(f"{what} must not contain NUL characters")
    if posixpath.normpath(path) != path.rstrip("/") and path != "/":
        raise ValueError(f"{what} must be normalised, without repeated slashes (got {path!r})")
    return path


def check_file_path(path: str, what: str) -> str:
    """`check_container_path` for a path that must name a file or folder of the task: not '/'."""
    if check_container_path(path, what) == "/":
        raise ValueError(f"{what} must name a file or folder below '/', not the container's whole file system")
    return path


def _none_to_empty(value: Any) -> Any:
    """Cromwell and Pulsar send `null` map values; the spec wants strings."""
    if isinstance(value, dict):
        return {k: ("" if v is None else v) for k, v in value.items()}
    return value


StringMap = Annotated[dict[StrictStr, StrictStr], BeforeValidator(_none_to_empty)]

MAX_NAME_BYTES = 1024
MAX_TAG_KEY_CHARS = 255
MAX_TAG_VALUE_BYTES = 1024
"""Task names and tags are indexed store columns. These bounds keep every index entry within
PostgreSQL's B-tree limit (about 2.7 kB); longer values made CreateTask fail with a 500 there."""


def check_indexed_text(value: str, what: str, max_bytes: int) -> str:
    """Refuse what PostgreSQL cannot store or index: NUL characters and values over `max_bytes`."""
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    size = len(value.encode())
    if size > max_bytes:
        raise ValueError(f"{what} is {size} bytes (UTF-8); this server accepts at most {max_bytes}")
    return value


class _Model(BaseModel):
    """Common settings: ignore unknown request fields, validate on assignment."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True, use_enum_values=False)


def _utc(value: datetime) -> str:
    """RFC 3339 with an explicit `Z`: clients (Nextflow, Toil, pydantic) need aware timestamps."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Input(_Model):
    name: StrictStr | None = None
    description: StrictStr | None = None
    url: StrictStr | None = None
    path: StrictStr
    type: FileType | None = None
    content: StrictStr | None = None
    streamable: StrictBool | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_file_path(v, "inputs[].path")

    @model_validator(mode="after")
    def _url_or_content(self) -> Input:
        if not self.content and not self.url:
            raise ValueError(f"input {self.path!r} needs a 'url' or a 'content'")
        return self


class Output(_Model):
    name: StrictStr | None = None
    description: StrictStr | None = None
    url: StrictStr = Field(min_length=1)
    path: StrictStr
    path_prefix: StrictStr | None = None
    type: FileType | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_file_path(v, "outputs[].path")

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        return None if v is None else check_container_path(v, "outputs[].path_prefix")

    @model_validator(mode="after")
    def _prefix_for_wildcards(self) -> Output:
        if has_wildcards(self.path) and not self.path_prefix:
            raise ValueError(f"output {self.path!r} has wildcards, so it needs a 'path_prefix'")
        return self


def _cpu_cores(value: Any) -> Any:
    """Accept fractional cores (TES 1.2 clients) and round up; the response stays an integer."""
    if isinstance(value, bool):
        raise ValueError("cpu_cores must be a number")  # noqa: TRY004 - pydantic reports only ValueError as a 422
    if isinstance(value, float):
        return math.ceil(value)
    return value


class Resources(_Model):
    cpu_cores: Annotated[int, BeforeValidator(_cpu_cores), Field(ge=0, le=2**31 - 1, strict=True)] | None = None
    preemptible: StrictBool | None = None
    ram_gb: Annotated[float, Field(ge=0, strict=True)] | None = None
    disk_gb: Annotated[float, Field(ge=0, strict=True)] | None = None
    zones: list[StrictStr] | None = None
    backend_parameters: StringMap | None = None
    backend_parameters_strict: StrictBool | None = None


class Executor(_Model):
    image: StrictStr = Field(min_length=1)
    command: list[StrictStr] = Field(min_length=1)
    workdir: StrictStr | None = None
    stdin: StrictStr | None = None
    stdout: StrictStr | None = None
    stderr: StrictStr | None = None
    env: StringMap | None = None
    ignore_error: StrictBool | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("executors[].image must not be blank")
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if not v[0]:
            raise ValueError("executors[].command[0] (the program) must not be empty")
        return v

    @field_validator("workdir", "stdin", "stdout", "stderr")
    @classmethod
    def _paths(cls, v: str | None, info: Any) -> str | None:
        return None if v is None else check_container_path(v, f"executors[].{info.field_name}")


class ExecutorLog(_Model):
    start_time: datetime | None = None
    end_time: datetime | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int

    @field_serializer("start_time", "end_time")
    def _times(self, v: datetime | None) -> str | None:
        return None if v is None else _utc(v)


class OutputFileLog(_Model):
    url: str
    path: str
    size_bytes: str

    @field_validator("size_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> str:
        return str(v)


class TaskLog(_Model):
    logs: list[ExecutorLog] = Field(default_factory=list)
    metadata: dict[str, str] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    outputs: list[OutputFileLog] = Field(default_factory=list)
    system_logs: list[str] | None = None

    @field_serializer("start_time", "end_time")
    def _times(self, v: datetime | None) -> str | None:
        return None if v is None else _utc(v)


def notes_entry(notes: Sequence[str]) -> TaskLog:
    """The log entry that records the API's notes about a task (ignored backend_parameters, ...) before
    any attempt: it has no `start_time`, so nobody takes it for a run. GetTask shows it until the first
    attempt's log, which starts with the same lines, takes its place."""
    return TaskLog(system_logs=list(notes))


def split_notes(logs: Sequence[TaskLog] | None) -> tuple[list[str], list[TaskLog]]:
    """(the API's notes, the attempts' logs) of a stored task: the last entry is the notes entry when it
    has no `start_time` (see `notes_entry`)."""
    entries = list(logs or [])
    if entries and entries[-1].start_time is None:
        return list(entries[-1].system_logs or []), entries[:-1]
    return [], entries


CLIENT_REQUEST = {"client_request": True}
"""Validation context of a task a client sent (see `Task._server_set`)."""

SERVER_SET_FIELDS = ("id", "state", "logs", "creation_time")


class Task(_Model):
    """A task: what a client sends (id/state/logs/creation_time ignored) and what the server keeps."""

    id: str | None = None
    state: State = State.UNKNOWN
    name: StrictStr | None = None
    description: StrictStr | None = None
    inputs: list[Input] | None = None
    outputs: list[Output] | None = None
    resources: Resources | None = None
    executors: list[Executor] = Field(min_length=1)
    volumes: list[StrictStr] | None = None
    tags: StringMap | None = None
    logs: list[TaskLog] | None = None
    creation_time: datetime | None = None

    @field_validator(*SERVER_SET_FIELDS, mode="wrap")
    @classmethod
    def _server_set(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """In a client's task, fields only the server sets are ignored, whatever they hold.

        pydantic-tes (Galaxy, Pulsar) sends them all as `null`, `"state": null` included; other
        clients echo a task they read back. The server overwrites them at create time anyway.
        """
        if info.context is CLIENT_REQUEST:
            return State.UNKNOWN if info.field_name == "state" else None
        return handler(value)

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for path in v:
                check_container_path(path, "volumes[]")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else check_indexed_text(v, "name", MAX_NAME_BYTES)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            if "\x00" in key or len(key) > MAX_TAG_KEY_CHARS:
                raise ValueError(
                    f"tag keys must be at most {MAX_TAG_KEY_CHARS} characters without NUL (got {len(key)} characters)"
                )
            check_indexed_text(value, f"the value of tag {key!r}", MAX_TAG_VALUE_BYTES)
        return v

    @field_serializer("creation_time")
    def _created(self, v: datetime | None) -> str | None:
        return None if v is None else _utc(v)


class CreateTaskResponse(BaseModel):
    id: str


class ListTasksResponse(BaseModel):
    tasks: list[dict[str, Any]]
    next_page_token: str | None = None


class ServiceType(BaseModel):
    group: str = "org.ga4gh"
    artifact: str = "tes"
    version: str = TES_VERSION


class Organization(BaseModel):
    name: str
    url: str


class ServiceInfo(BaseModel):
    id: str
    name: str
    type: ServiceType = Field(default_factory=ServiceType)
    description: str | None = None
    organization: Organization
    contactUrl: str | None = None
    documentationUrl: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    environment: str | None = None
    version: str
    storage: list[str] = Field(default_factory=list)
    tesResources_backend_parameters: list[str] = Field(default_factory=list)


def dump(model: BaseModel) -> dict[str, Any]:
    """Spec-shaped JSON: unset optionals are omitted rather than sent as null."""
    return model.model_dump(mode="json", exclude_none=True)


def render_task(task: Task, view: View) -> dict[str, Any]:
    """Shape a stored task for a view, exactly as the spec defines MINIMAL, BASIC and FULL."""
    if view is View.MINIMAL:
        return {"id": task.id, "state": task.state.value}
    body = dump(task)
    # No `"logs": []` before a run attempt has started: a client reading logs[0] straight after
    # create would find an empty list; an absent optional field is what the spec allows.
    for log in body.get("logs", ()):
        log.setdefault("logs", [])
        log.setdefault("outputs", [])
    if view is View.BASIC:
        for item in body.get("inputs", []):
            item.pop("content", None)
        for log in body.get("logs", ()):
            log.pop("system_logs", None)
            for ex in log["logs"]:
                ex.pop("stdout", None)
                ex.pop("stderr", None)
    return body
