"""The Slurm backend: each task is one Slurm batch job that runs `tesk worker` on its node.

The API host needs the Slurm client commands (sbatch, squeue, scancel) and a folder shared with the
nodes (`TESK_SLURM_SHARED_DIR`); nodes need tesk and a container engine (or the process engine). The
API writes the task into its folder and submits `job.sh`; the worker (the shared runner with the local
runtime) reports into the same folder; the API reconciles those reports with squeue (`backend.py`).
No task code runs on the API host and no database credentials reach a node.
"""

from tesk.backends.slurm.backend import SlurmBackend

__all__ = ["SlurmBackend"]
