"""A stand-in Kubernetes cluster for development and tests: real Kubernetes HTTP, really runs pods.

This is a development stand-in, **not a cluster**: one process serves the Kubernetes REST API
(core/v1 pods, configmaps, secrets, PVCs, events, namespaces, nodes, serviceaccounts; batch/v1
jobs; coordination.k8s.io/v1 leases) with the semantics clients can observe (uids, one
monotonic resourceVersion, generateName, Status errors, label and field selectors, limit/continue,
watches with 410 Gone, optimistic concurrency, merge/strategic/JSON patches, status subresources,
finalizers, propagationPolicy and ownerReference garbage collection, ttlSecondsAfterFinished), a
Job controller, a one-node scheduler and a kubelet that runs every pod's containers with podman.
No registry is reachable: images must exist locally (`.ci/setup.d/20-images.sh` builds busybox,
alpine and ubuntu tags).

Start it on its own:

    tesk devcluster --kubeconfig /tmp/dev.kubeconfig [--port 6443]
    kubectl --kubeconfig /tmp/dev.kubeconfig get jobs,pods

or in-process (tests, benchmarks):

    from tesk.devcluster import DevCluster, DevClusterConfig
    with DevCluster(DevClusterConfig(job_backoff_base=0.5)) as cluster:
        path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        kubernetes.config.load_kube_config(str(path))
        cluster.inject(verb="create", resource="jobs", status=429, retry_after=1)   # fault injection
        cluster.faults.count(verb="list", resource="pods", client="admin")         # accounting

Pytest: `from tesk.devcluster.testing import devcluster` in a conftest gives a fixture (a running
`DevCluster` with short back-offs and a kubeconfig at `devcluster.kubeconfig_path`).

How pods run
------------
* Ordinary images run in podman containers (`--network none` unless `network="host"`), one
  container per container spec; resources.limits become `--memory`/`--cpus` (OOM -> `OOMKilled`,
  exit 137). `imagePullPolicy` is ignored: a local image is used, a missing one gives
  `ErrImagePull` then `ImagePullBackOff` until it appears.
* **Host images** (`host_images`, e.g. the tesk image used for the taskmaster and filer Jobs) run
  as host processes in a bubblewrap sandbox with the host network and this Python environment
  (read-only). The image's ENTRYPOINT is `host_entrypoint` (default: the `tesk` script of this
  venv) unless the container sets `command`. Inside, the pod sees exactly the paths a real pod
  sees: its volumes at their `mountPath`s, and, unless `automountServiceAccountToken: false`, the
  service-account files at /var/run/secrets/kubernetes.io/serviceaccount (`token`, `namespace`,
  `ca.crt`) with `KUBERNETES_SERVICE_HOST=127.0.0.1` and `KUBERNETES_SERVICE_PORT` = the HTTPS
  port. So `kubernetes.config.load_incluster_config()` works unchanged; the token authenticates
  as `system:serviceaccount:<namespace>:<serviceAccountName>` (what accounting reports).
  No memory/cpu limits are applied to host-process pods.
* Volumes: PVC = a host folder per claim (`DevCluster.pvc_path`), made on binding and removed
  when the claim is deleted; `subPath` folders are created when missing. configMap, secret,
  downwardAPI and projected volumes are written with the kubelet's `..data` symlink swap, and
  Downward API `metadata.labels`/`annotations` files are rewritten when they change
  (`key="value"` lines, sorted, Go-quoted).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DevCluster", "DevClusterConfig", "Fault", "RequestRecord"]


def __getattr__(name: str) -> Any:
    """Import lazily, so `tesk --help` does not load the server stack for the `devcluster` command."""
    if name in ("DevCluster", "DevClusterConfig"):
        from tesk.devcluster import cluster

        return getattr(cluster, name)
    if name in ("Fault", "RequestRecord"):
        from tesk.devcluster import faults

        return getattr(faults, name)
    raise AttributeError(f"module 'tesk.devcluster' has no attribute {name!r}")
