"""`tesk taskmaster`: the command of taskmaster pods (kept light: the work is imported when it runs)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def taskmaster(
    task_id: Annotated[str, typer.Option("--task-id", help="The task (= the taskmaster Job's name).")],
    spec: Annotated[Path, typer.Option(help="The task spec file (gzip JSON).")] = Path("/spec/task.json.gz"),
    labels_file: Annotated[Path | None, typer.Option(help="Downward API labels file of this pod.")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="TESK_K8S_KUBECONFIG",
                                                    help="Kubeconfig (default: in-cluster).")] = None,
    debug: Annotated[bool, typer.Option(help="Debug logging.")] = False,
    default_time_limit: Annotated[int | None, typer.Option(
        help="The server's TESK_TASK_TIME_LIMIT_SECONDS: the time limit of a task without tesk.time_limit.")] = None,
) -> None:
    """Run one task in the cluster: PVC, filer and executor Jobs, results in the task's ConfigMap."""
    import asyncio
    import logging

    from tesk.backends.kubernetes.kube import Kube, KubeError, load_api_client
    from tesk.config.kubernetes import KubernetesSettings
    from tesk.backends.kubernetes.taskmaster import run_taskmaster
    from tesk.logs import configure_logging

    configure_logging("debug" if debug else "info")
    log = logging.getLogger("tesk.taskmaster")
    settings = KubernetesSettings()
    kube = Kube(load_api_client(kubeconfig or settings.kubeconfig, settings.context), settings.namespace)

    def on_term(signum: int, _frame: Any) -> None:
        # The pod is going away (node drain, Job deleted). Leave children running: a restarted
        # taskmaster adopts them, and a deleted Job takes them with it.
        log.info("task %s: received signal %d; exiting without touching the task's Jobs", task_id, signum)
        sys.stderr.flush()
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    try:
        state = asyncio.run(run_taskmaster(kube, settings, task_id, spec, labels_file, os.environ.get("POD_NAME"),
                                          default_time_limit))
    except KubeError as exc:
        print(f"tesk taskmaster: task {task_id}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    log.info("task %s: %s", task_id, state.value if state else "already finished")
