"""Settings of the Slurm backend (`TESK_SLURM_*`): where the shared task folders are, how jobs are submitted."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tesk.config.values import comma_list


def installed_tesk() -> str:
    """The `tesk` script of this installation, which is what nodes run when they share its path."""
    return str(Path(sys.executable).parent / "tesk")


class SlurmSettings(BaseSettings):
    """How the Slurm backend turns tasks into batch jobs."""

    model_config = SettingsConfigDict(env_prefix="TESK_SLURM_", extra="ignore")

    shared_dir: Path | None = Field(
        None,
        description="Folder on a file system the API host and every compute node mount at the same path; each "
        "task gets a folder in it (task spec, worker reports, staged files). Default: DATA_DIR/slurm.",
    )
    partition: str | None = Field(None, description="Partition of jobs whose task names none (default: Slurm's).")
    account: str | None = Field(None, description="Account of jobs whose task names none (default: the user's).")
    worker_command: str = Field(
        default_factory=installed_tesk,
        description="The `tesk` command as the nodes run it (default: this installation's script).",
    )
    sbatch_options: str = Field(
        "", description="More sbatch options for every job, shell-quoted (e.g. `--exclusive --nice=10`)."
    )
    export_prefixes: str = Field(
        "PATH,HOME,TESK_LOCAL_,TESK_FILER_,TESK_FILE_ROOTS,AWS_,XDG_RUNTIME_DIR",
        description="Comma-separated names or name prefixes of the API's environment variables a job gets "
        "(sbatch --export); nothing else is passed, so the database URL never reaches a node.",
    )
    poll_seconds: float = Field(
        2.0, gt=0, description="How often the API reads the worker reports and squeue to update its tasks "
        "(a run that has finished is noticed between polls, from its report)."
    )

    def exported(self, environ: dict[str, str]) -> list[str]:
        """Names of the variables of `environ` a job gets."""
        prefixes = comma_list(self.export_prefixes)
        return sorted(name for name in environ if any(name.startswith(p) for p in prefixes) and "," not in name)
