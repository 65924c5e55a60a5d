"""Backends: where tasks run. The API talks to them only through the `Backend` protocol.

A backend is a sub-package named in `BACKENDS`; adding one is adding a sub-package and one line here.
The task is always in the store before `submit` is called, and the store already says CANCELING
before `cancel` is called, so a backend never has to make the first record of anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tesk.config import TeskConfig
    from tesk.store import StoredTask, TaskStore


class BackendError(Exception):
    """The backend refused a task (for example the cluster rejected its objects); becomes a 500 or 503."""

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.status_code = status_code


class Backend(Protocol):
    name: str
    backend_parameters: frozenset[str]
    """Supported `resources.backend_parameters` keys, lower case (the spec makes keys case-insensitive)."""
    replica_id: str | None
    """The replica that runs the tasks this server accepts (recorded with each task as `held_by`), for
    backends whose servers run tasks themselves (local); None when the tasks run elsewhere (Kubernetes)."""

    async def start(self) -> None:
        """Begin work and reconcile tasks a previous run left non-terminal."""

    async def stop(self) -> None:
        """Stop accepting work and release resources; running tasks are left to reconciliation."""

    async def submit(self, stored: StoredTask, notes: Sequence[str]) -> None:
        """Start (or queue) a task that is already stored as QUEUED.

        `notes` are the system log lines the API wrote about the task (ignored backend_parameters and
        the like); they go first in the system log of the task's first attempt. The stored task holds
        them too, as its notes entry (`tesk.models.split_notes`), for a backend that takes it up again
        after a restart."""

    async def cancel(self, stored: StoredTask, by: str) -> None:
        """Stop a task the store already marks CANCELING and bring it to CANCELED."""


BACKENDS: dict[str, str] = {
    "local": "tesk.backends.local:LocalBackend",
    "kubernetes": "tesk.backends.kubernetes:KubernetesBackend",
    "slurm": "tesk.backends.slurm:SlurmBackend",
}
"""Backend name -> its class, whose `from_config(config, store)` picks the sections it needs."""


def load_backend(config: TeskConfig, store: TaskStore) -> Backend:
    """Build the backend `config.server.backend` names; an unknown name is a configuration error that says
    the choices. Only the chosen backend's modules are imported."""
    name = config.server.backend
    try:
        ref = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKENDS))}") from None
    module, _, cls = ref.partition(":")
    backend: Backend = getattr(importlib.import_module(module), cls).from_config(config, store)
    return backend
