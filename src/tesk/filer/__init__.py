"""The filer: stage a task's inputs into its area and its outputs out of it.

One transfer library for the local backend (called in-process) and for the Kubernetes filer Jobs
(`tesk filer`). Public API:

- `stage_inputs(inputs, area, settings, log)` / `stage_outputs(outputs, area, settings, log)`;
- `TaskArea` (container path -> host path under one per-task folder) and its `Mount`s;
- `FilerSettings` and `supported_schemes(settings)` for service-info's `storage`;
- `FilerError` and its subclasses, whose message is a line for the task's system_logs.
"""

from tesk.filer.area import Mount, TaskArea
from tesk.filer.errors import (
    FilerError,
    NotFoundError,
    RefusedError,
    StagingError,
    TransferTimeout,
    TransientError,
    redact,
)
from tesk.config.filer import FilerSettings, S3Endpoint, supported_schemes
from tesk.filer.staging import stage_inputs, stage_outputs

__all__ = [
    "FilerError",
    "FilerSettings",
    "Mount",
    "NotFoundError",
    "RefusedError",
    "S3Endpoint",
    "StagingError",
    "TaskArea",
    "TransferTimeout",
    "TransientError",
    "redact",
    "stage_inputs",
    "stage_outputs",
    "supported_schemes",
]
