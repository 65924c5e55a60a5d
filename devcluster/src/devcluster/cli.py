"""`devcluster`: run the stand-in Kubernetes cluster until interrupted."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer


def devcluster(
    kubeconfig: Annotated[Path, typer.Option(help="Write a kubeconfig for the stand-in cluster to this file.")],
    port: Annotated[int, typer.Option(help="HTTP port of the API server on 127.0.0.1 (0: a free port).")] = 0,
    https_port: Annotated[int, typer.Option(help="HTTPS port pods use to reach the API (0: a free port).")] = 0,
    state_dir: Annotated[Path | None, typer.Option(
        help="Folder for pod volumes, logs and PVC data (default: a temporary folder removed at exit).")] = None,
    host_image: Annotated[list[str] | None, typer.Option(
        help="An image to run as a host process in a bubblewrap sandbox (repeatable), e.g. the tesk image.")] = None,
    network: Annotated[str, typer.Option(help="podman network for pod containers: none or host.")] = "none",
    node_cpu: Annotated[float, typer.Option(help="Allocatable cpu cores of the node (0: this machine's).")] = 0.0,
    node_memory: Annotated[str, typer.Option(
        help="Allocatable memory of the node as a Kubernetes quantity, e.g. 8Gi (default: this machine's).")] = "",
) -> None:
    """Run a development stand-in for a Kubernetes cluster (not a cluster): real Kubernetes HTTP on
    127.0.0.1, a Job controller, and a kubelet that runs pods with podman."""
    from devcluster.cluster import DevCluster, DevClusterConfig
    from devcluster.nodes import parse_quantity

    if network not in ("none", "host"):
        raise typer.BadParameter(f"{network!r} is not a supported network; use none or host", param_hint="--network")
    try:
        memory = int(parse_quantity(node_memory)) if node_memory else 0
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--node-memory") from exc
    config = DevClusterConfig(port=port, https_port=https_port, state_dir=state_dir,
                              host_images=tuple(host_image or ()), network=network, node_cpu=node_cpu,
                              node_memory=memory)
    cluster = DevCluster(config)
    try:
        cluster.start()
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", param_hint="--port") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        # HTTPS: kubectl sends no bearer token over plain HTTP, and RBAC refuses anonymous requests
        path = cluster.write_kubeconfig(kubeconfig, https=True)
        typer.echo(f"devcluster ready: API {cluster.url} and {cluster.https_url} (pods and the kubeconfig), "
                   f"kubeconfig {path}", err=False)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


def main() -> None:
    """Console-script entry point of `devcluster`."""
    typer.run(devcluster)
