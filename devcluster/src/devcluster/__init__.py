"""A stand-in Kubernetes cluster for development and tests: real Kubernetes HTTP, really runs pods.

This is a development stand-in, **not a cluster**: one process serves the Kubernetes REST API
(core/v1 pods, configmaps, secrets, PVCs, persistentvolumes, events, namespaces, nodes,
serviceaccounts and their TokenRequests, resourcequotas, limitranges; batch/v1 jobs; coordination.k8s.io/v1
leases; storage.k8s.io/v1 storageclasses; rbac.authorization.k8s.io/v1 roles, rolebindings, clusterroles,
clusterrolebindings) with the semantics clients can observe (uids, one
monotonic resourceVersion, generateName, Status errors, label and field selectors, limit/continue,
watches with 410 Gone, optimistic concurrency, merge/strategic/JSON patches, status subresources,
finalizers, propagationPolicy and ownerReference garbage collection, ttlSecondsAfterFinished), a
Job controller, a scheduler over two nodes in two zones (`node_count`, `nodes`), a PV controller with
two StorageClasses, an attach/detach controller, a resource quota controller, admission of pods
(Pod Security from the namespace's `pod-security.kubernetes.io/enforce` label, ResourceQuota,
LimitRange: `devcluster.admission`, each with a `DevClusterConfig` switch), and a kubelet that runs
every node's pods with the same podman on this host.
No registry is reachable: images must exist locally (`.ci/setup.d/20-images.sh` builds busybox,
alpine and ubuntu tags).

Start it on its own:

    devcluster --kubeconfig /tmp/dev.kubeconfig [--port 6443]
    kubectl --kubeconfig /tmp/dev.kubeconfig get jobs,pods

or in-process (tests, benchmarks):

    from devcluster import DevCluster, DevClusterConfig
    with DevCluster(DevClusterConfig(job_backoff_base=0.5)) as cluster:
        path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        kubernetes.config.load_kube_config(str(path))
        cluster.inject(verb="create", resource="jobs", status=429, retry_after=1)   # fault injection
        cluster.faults.count(verb="list", resource="pods", client="admin")         # accounting

Watches behave as from kube-apiserver's per-resource watch caches: each resource's events reach its
watchers after that resource's own delay (`watch_delays`, by default Jobs 0.05 s and ConfigMaps 0.25 s,
so a ConfigMap changed before a Job can be seen after it), in order within a resource, with bookmarks
about once a minute; faults add 410 Gone, streams cut early (`drop_after`) and half-open watches that
send nothing until the client gives up (`half_open`).

Pytest: installing the distribution registers the plugin `devcluster.pytest_plugin`: a `devcluster` fixture (a running
`DevCluster` with short back-offs and a kubeconfig at `devcluster.kubeconfig_path`).

How pods run
------------
* Ordinary images run in podman containers (`--network none` unless `network="host"`), one
  container per container spec; resources.limits become `--memory`/`--cpus` (OOM -> `OOMKilled`,
  exit 137). `imagePullPolicy` is ignored: a local image is used, a missing one gives
  `ErrImagePull` then `ImagePullBackOff` until it appears. `DevCluster.fail_container_creates` makes
  the runtime refuse a container's create a few times (`CreateContainerError`, retried after a back-off).
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
* Container stats (devcluster.stats): `GET /api/v1/nodes/{node}/proxy/stats/summary` (RBAC `get` on
  `nodes/proxy` at the cluster scope) serves each node's kubelet Summary API with the real cgroup
  figures of its pods' running podman containers (memory use, working set, rss, cumulative CPU time),
  read every `stats_period` (the kubelet's 10 s housekeeping by default, 1 s in `fast_config`); any
  other proxied path is the kubelet's 404.
* Volumes: PVC = a host folder per claim (`DevCluster.pvc_path`), made on binding and removed
  when the claim is deleted. configMap, secret, downwardAPI and projected volumes are written with
  the kubelet's `..data` symlink swap, and Downward API `metadata.labels`/`annotations` files are
  rewritten when they change (`key="value"` lines, sorted, Go-quoted). Those four, and any source
  marked `readOnly` (a claim's), are mounted read-only in every container whatever the
  volumeMount says, as the kubelet's `mustMountRO` does.
* Ownership, as on a real node (devcluster.ownership): a new claim's root is `root:root 0755` in the
  default block-like class `standard` (a fresh ext4 file system, so it holds a `lost+found` folder,
  `root:root 0700`) and `root:root 0777` in
  `local-path` (local-path-provisioner's `mkdir -m 0777`); an emptyDir is `0777`. The pod's
  `fsGroup` is applied by the kubelet's recursive walk (group fsGroup, `|0660`, folders `|0110` and
  setgid, symlinks never followed) to emptyDirs and configMap, secret, downwardAPI and projected
  volumes always (these with `|0440`), and to block claims mounted ReadWriteOnce and writable; `fsGroupChangePolicy: OnRootMismatch` skips the walk when the root already fits.
  local-path (hostPath) and ReadWriteMany block claims keep their owner and mode. A missing `subPath`
  folder is made with the volume root's mode, owned by root. The stand-in should run as root (CI
  does) for these to be real: as another user it cannot hand folders to root or to fsGroup, and
  they stay writable by that user.
* securityContext is applied to podman containers (runAsUser/Group, fsGroup and supplementalGroups,
  readOnlyRootFilesystem, capabilities, allowPrivilegeEscalation); without `runAsUser` a container
  runs as its image's `USER`; `runAsNonRoot` is enforced (`CreateContainerConfigError`);
  host-process pods run as this process's user.

Who may do what
---------------
Requests are authenticated by bearer token (an unknown one is 401; none is `system:anonymous`):
the kubeconfig's admin is in `system:masters`, `add_user`/`kubeconfig(user=...)` mint tokens for other
users (in the groups given), and a pod's mounted token or a TokenRequest's authenticates as
`system:serviceaccount:NS:NAME` in `system:serviceaccounts` and `system:serviceaccounts:NS`. RBAC
(`rbac`, on by default) authorises every request against the Roles, ClusterRoles and bindings created
through the API plus the bootstrap `cluster-admin`, `system:discovery` and `system:public-info-viewer`;
a refusal is kube-apiserver's 403 (devcluster.rbac). OwnerReferencesPermissionEnforcement
(`owner_references_permission_enforcement`, on) refuses ownerReference changes without `delete` on the
object and `blockOwnerDeletion` without `update` on the owner's finalizers (devcluster.ownerrefs).
kubectl sends no bearer token over plain HTTP, so a kubeconfig for kubectl must be `https=True` (the
`devcluster` command writes one). ServiceAccount admission (`service_account_admission`, on) refuses a
pod whose account its namespace lacks, and the controller gives every namespace a `default` account
shortly after it is made (the namespaces that exist at start have theirs from the start). Not modelled:
the Node authoriser, aggregated ClusterRoles, RBAC escalation checks, token expiry.

Left out on purpose (a client that depends on these needs a real cluster)
----------------------------------------------------------------------
* Resources: no Services, Endpoints, Deployments/ReplicaSets/StatefulSets/DaemonSets, CronJobs,
  CRDs, VolumeAttachments/CSINodes, Node writes (taints are fixed at start).
* API machinery: no server-side apply (apply-patch answers 422), no managedFields, no protobuf
  responses (protobuf request bodies are read only for what `kubectl create` sends), no CBOR, no
  aggregated discovery (kubectl falls back to legacy discovery), no OpenAPI v2 and an OpenAPI v3
  without schemas (enough for `kubectl create -f`/`apply`/`wait` from kubectl 1.27 on; older
  kubectl needs `--validate=false`; not enough for `kubectl explain`), no
  `resourceVersionMatch`/`sendInitialEvents`, a list with `resourceVersion` always serves the latest
  state, `continue` pages read the latest state (not a snapshot), watch bookmarks come only every
  `bookmark_interval` (60 s; a bookmark kube-apiserver may send just before a watch's timeout is not modelled),
  server-side printing has the default columns only (no `-o wide`), no admission webhooks, events are never aggregated (`count`
  stays 1) and expire after one hour, field validation (`fieldValidation=Strict`) is not applied,
  ServiceAccount admission does not add the token volume to the pod spec (the kubelet mounts it).
  Admission (devcluster.admission) ignores Pod Security's `warn`/`audit` labels and exemptions, the
  LimitRange on claim updates, quota scopes but BestEffort/NotBestEffort/Terminating/NotTerminating, ephemeral
  storage and extended resources (quotas count pods' cpu/memory, claims' storage and object counts).
* Jobs: no Indexed completion mode, `backoffLimitPerIndex`, `successPolicy`, `managedBy`,
  `podFailurePolicy` action FailIndex, or work-queue semantics of a null `completions`;
  `uncountedTerminatedPods` is always empty; the controller's back-off counts all failures, not
  only consecutive ones.
* Scheduling and nodes: every node is this host (hostIP is the node's address, a label only). The
  scheduler honours cpu/memory requests, pod count, `nodeSelector`, required node affinity (In,
  NotIn, Exists, DoesNotExist, Gt, Lt, matchFields on metadata.name), NoSchedule/NoExecute taints
  (no eviction by the taint manager: taints cannot change after start) and a bound claim's PV node
  affinity; it ignores preferred affinity, pod (anti-)affinity, topology spread, priority (no
  preemption ever happens), ephemeral storage and node scores: feasible nodes are taken in turn.
* Storage: built-in classes `standard` (default, block-disk-like: PV pinned to the zone, ReadWriteOnce
  attached to one node at a time, `volume_detach_delay` after its last pod there) and `local-path`
  (PV pinned to the node), both WaitForFirstConsumer (`storage_binding_mode`); classes of other
  provisioners bind like Immediate ones, with a PV no node affinity ties. Static PVs are never
  matched to claims, no volume expansion, no allowedTopologies, no FailedMount timeout while a
  volume waits to be attached.
* Kubelet: no probes (a running container is Ready), no lifecycle hooks, no `exec`/`attach`/
  `port-forward`, no pod networking (pods get `--network none` and report 127.0.0.1 as pod IP),
  `imagePullPolicy` and `imagePullSecrets` are ignored (local images only), no log rotation,
  `previous` logs only for restarted containers, no ephemeral containers, no sidecar
  (restartPolicy Always) init containers, no eviction for node pressure, no `hostPath` types
  except DirectoryOrCreate, resource limits are not applied to host-process pods.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DevCluster", "DevClusterConfig", "Fault", "RequestRecord"]


def __getattr__(name: str) -> Any:
    """Import lazily, so `tesk --help` does not load the server stack for the `devcluster` command."""
    if name in ("DevCluster", "DevClusterConfig"):
        from devcluster import cluster

        return getattr(cluster, name)
    if name in ("Fault", "RequestRecord"):
        from devcluster import faults

        return getattr(faults, name)
    raise AttributeError(f"module 'devcluster' has no attribute {name!r}")
