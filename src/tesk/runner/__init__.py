"""The shared task lifecycle, used by the local backend and by the Kubernetes taskmaster.

`TaskRunner` applies the TES rules; a `Runtime` says where the work happens and a `Reporter` where
progress goes. Keep this package free of anything specific to one backend.
"""

from tesk.runner.lifecycle import TaskRunner, describe_executor
from tesk.runner.protocols import ExecutorOutcome, Note, Reporter, Runtime, TaskFailure

__all__ = ["ExecutorOutcome", "Note", "Reporter", "Runtime", "TaskFailure", "TaskRunner", "describe_executor"]
