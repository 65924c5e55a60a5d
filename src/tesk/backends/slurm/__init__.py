"""The Slurm backend: each task is one Slurm batch job that runs `tesk worker` on its node.

The API host needs the Slurm client commands (sbatch, squeue, scancel) and a folder shared with the
nodes (`TESK_SLURM_SHARED_DIR`); nodes need tesk and a container engine (or the process engine). The
API writes the task into its folder and submits `job.sh`; the worker (the shared runner with the local
runtime) reports into the same folder; the API reconciles those reports with squeue (`backend.py`).
No task code runs on the API host and no database credentials reach a node.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SlurmBackend"]


def __getattr__(name: str) -> Any:
    # Lazy, so `tesk worker` on a node does not import the API side (store, every config section):
    # its start-up is part of every task's latency.
    if name == "SlurmBackend":
        from tesk.backends.slurm.backend import SlurmBackend

        return SlurmBackend
    raise AttributeError(name)
