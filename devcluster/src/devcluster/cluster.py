"""`DevCluster`: the stand-in cluster as one object that tests, benchmarks and the CLI start.

It runs the API server (HTTP for kubeconfigs, HTTPS for in-cluster clients), the controllers and
the kubelet on a private event loop in a background thread, so that synchronous clients (the
official `kubernetes` package, kubectl) can be used from the caller's thread without deadlocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import uvicorn
import yaml

from devcluster import users
from devcluster.admission import Admission, AdmissionConfig
from devcluster.api import ApiServer
from devcluster.controllers import Controllers, EventRecorder, ensure_default_account
from devcluster.faults import Fault, Faults
from devcluster.kubelet import CreateFailure, Kubelet, KubeletConfig
from devcluster.nodes import NodeConfig, default_nodes
from devcluster.rbac import bootstrap_policy
from devcluster.resources import BY_PLURAL
from devcluster.runtime import HostRuntime, PodmanRuntime
from devcluster.storage import builtin_classes
from devcluster.store import Store
from devcluster.tls import write_certificates

T = TypeVar("T")
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_WATCH_DELAYS = {"jobs": 0.05, "configmaps": 0.25}


def default_entrypoint() -> list[str]:
    """The ENTRYPOINT of host images: the `tesk` script next to this Python."""
    return [str(Path(sys.executable).with_name("tesk"))]


@dataclass
class DevClusterConfig:
    """How to start the stand-in cluster. Timings default to Kubernetes' own; tests shorten them."""

    port: int = 0  # HTTP port of the API for kubeconfigs (0: a free port)
    https_port: int = 0  # HTTPS port pods reach as KUBERNETES_SERVICE_HOST/PORT (0: a free port)
    state_dir: Path | None = None  # pod volumes, logs and PVC folders (None: a temporary folder)
    host_images: tuple[str, ...] = ()  # images run as host processes in bubblewrap (e.g. the tesk image)
    host_entrypoint: list[str] = field(default_factory=default_entrypoint)
    network: str = "none"  # podman network of ordinary pods: none or host
    node_cpu: float = 0.0  # allocatable cpu cores of each default node (0: this machine's)
    node_memory: int = 0  # allocatable memory in bytes of each default node (0: this machine's)
    node_count: int = 2  # the default profile's nodes, each in its own zone (1: the old single node)
    nodes: tuple[NodeConfig, ...] = ()  # the nodes exactly (names, zones, labels, taints); overrides the above
    # The built-in StorageClasses' volumeBindingMode: WaitForFirstConsumer as on GKE, EKS, AKS, kind and k3s;
    # "Immediate" binds a claim at creation, with a PV that no node affinity ties anywhere.
    storage_binding_mode: str = "WaitForFirstConsumer"
    exclusive_attach: bool = True  # a ReadWriteOnce block volume is attached to one node at a time
    volume_detach_delay: float = 10.0  # seconds from the last pod using a volume on a node to its detach
    job_backoff_base: float = 10.0  # Job controller retry back-off: base * 2^(failures-1), capped at 6 min
    image_backoff_base: float = 10.0  # ImagePullBackOff back-off base
    restart_backoff_base: float = 10.0  # CrashLoopBackOff back-off base
    downward_api_delay: float = 0.0  # how long the kubelet takes to refresh Downward API files
    history_size: int = 4096  # watch events kept; older resourceVersions answer 410 Gone
    bookmark_interval: float = 60.0  # seconds between watch bookmarks (the watch cache's bookmarkFrequency, 1 min)
    # Each resource's events reach its watchers after that resource's own delay (plural -> seconds), as from
    # kube-apiserver's separate watch caches: changes of different resources arrive in either order (here a
    # ConfigMap's change after a Job's made just after it); within one resource the order holds.
    watch_delays: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WATCH_DELAYS))
    # The kubelet's stats housekeeping (cAdvisor's per-container interval, 10 s as the kubelet sets it): how often
    # the node proxy's /stats/summary figures change.
    stats_period: float = 10.0
    pod_gc_period: float = 20.0  # the pod garbage collector's period (kube-controller-manager's gcCheckPeriod)
    # Feature gate PodLogsQuerySplitStreams (alpha, off by default in 1.32+): only with it on does the pod log
    # `stream` parameter (Stdout/Stderr) select one stream; off, the combined log is served.
    pod_logs_query_split_streams: bool = False
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    # Admission plugins, all on as in kube-apiserver's default set: Pod Security from the namespace's
    # pod-security.kubernetes.io/enforce label, ResourceQuota, LimitRange (devcluster.admission).
    pod_security_admission: bool = True
    resource_quota_admission: bool = True
    limit_ranger_admission: bool = True
    # ServiceAccount admission: a pod naming a service account its namespace lacks is refused; the controller
    # gives every namespace its `default` account (shortly after the namespace is made, as on a cluster).
    service_account_admission: bool = True
    # Authorisation by the Roles, ClusterRoles and bindings created through the API (plus the bootstrap
    # policy); off: every authenticated token may do everything (for a test that isolates something else).
    rbac: bool = True
    # The OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift): changing ownerReferences
    # needs delete on the object, blockOwnerDeletion update on the owner's finalizers.
    owner_references_permission_enforcement: bool = True


def fast_config(**overrides: object) -> DevClusterConfig:
    """A configuration for tests and benchmarks: Kubernetes semantics with back-offs measured in fractions
    of seconds (Job retries 0.2 s, image pulls 0.5 s, restarts 0.5 s), so failure paths run in seconds, and
    container stats refreshed every second."""
    values: dict[str, object] = {"job_backoff_base": 0.2, "image_backoff_base": 0.5, "restart_backoff_base": 0.5,
                                 "pod_gc_period": 1.0, "volume_detach_delay": 1.0, "stats_period": 1.0}
    values.update(overrides)
    return DevClusterConfig(**values)  # type: ignore[arg-type]


class DevCluster:
    """The stand-in cluster. Use as a context manager, or call `start()` and `stop()`."""

    def __init__(self, config: DevClusterConfig | None = None) -> None:
        self.config = config or DevClusterConfig()
        self.faults = Faults()
        self.tokens: dict[str, users.User] = {}
        self.admin_token = self.add_user("admin", groups=(users.MASTERS,))
        self._own_state = self.config.state_dir is None
        # A temporary state folder is made by start() and removed by stop().
        self.state_dir = self.config.state_dir or Path(tempfile.gettempdir()) / f"tesk-devcluster-{secrets.token_hex(6)}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.store = Store(self.config.history_size)
        self.store.admission = Admission(self.store, AdmissionConfig(
            pod_security=self.config.pod_security_admission, resource_quota=self.config.resource_quota_admission,
            limit_ranger=self.config.limit_ranger_admission, service_account=self.config.service_account_admission))
        self.port = 0
        self.https_port = 0
        self.kubelet: Kubelet | None = None
        self.podman: PodmanRuntime | None = None
        self.kubeconfig_path: Path | None = None  # the last kubeconfig written

    # -- addresses and credentials ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The HTTP base URL of the API server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        """The HTTPS base URL of the API server (the in-cluster address)."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the HTTPS serving certificate."""
        return self.state_dir / "pki" / "ca.crt"

    def add_user(self, name: str, groups: tuple[str, ...] = ()) -> str:
        """Mint a bearer token for a user name (in `groups` and `system:authenticated`); requests with it
        are accounted to that name and authorised by the bindings that name the user or its groups."""
        return users.mint(self.tokens, users.authenticated(name, groups))

    def kubeconfig(self, user: str = "admin", namespace: str = "default", https: bool = False,
                   token: str | None = None, groups: tuple[str, ...] = ()) -> dict[str, Any]:
        """A kubeconfig (as a dict) for this cluster with a token for `user` (the admin's is in `system:masters`;
        another name gets a new token in `groups` and `system:authenticated`), or with `token` itself."""
        if token is None:
            token = self.admin_token if user == "admin" else self.add_user(user, groups)
        cluster: dict[str, Any] = {"server": self.https_url if https else self.url}
        if https:
            cluster["certificate-authority"] = str(self.ca_file)
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "tesk-devcluster", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "tesk-devcluster", "context": {"cluster": "tesk-devcluster", "user": user,
                                                                "namespace": namespace}}],
            "current-context": "tesk-devcluster",
        }

    def write_kubeconfig(self, path: Path | str, user: str = "admin", namespace: str = "default",
                         https: bool = False, token: str | None = None, groups: tuple[str, ...] = ()) -> Path:
        """Write a kubeconfig file (mode 600: it holds a token) and return its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.kubeconfig(user, namespace, https, token, groups), sort_keys=False))
        target.chmod(0o600)
        self.kubeconfig_path = target
        return target

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        """Start the servers, controllers and kubelet; returns once the API answers."""
        http_socket = self._bind(self.config.port)
        try:
            https_socket = self._bind(self.config.https_port)
        except OSError:
            http_socket.close()
            raise
        self.port = http_socket.getsockname()[1]
        self.https_port = https_socket.getsockname()[1]
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread = threading.Thread(target=self._main, args=(http_socket, https_socket), name="devcluster",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            self.stop()
            if self._failure is not None:
                raise RuntimeError(f"the stand-in cluster failed to start: {self._failure}") from self._failure
            raise RuntimeError(f"the stand-in cluster did not start within {timeout} s")
        return self

    def stop(self) -> None:
        """Stop every pod and server and remove the temporary state folder."""
        if self._thread is not None and self._thread.is_alive() and self._loop is not None and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=60)
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP, and
        # without it every small response waits ~40 ms for Nagle plus delayed ACKs.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def _main(self, http_socket: socket.socket, https_socket: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(http_socket, https_socket))
        except Exception as exc:  # noqa: BLE001 - any start-up failure is reported to start()
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self, http_socket: socket.socket, https_socket: socket.socket) -> None:
        self._stopping = asyncio.Event()
        config = self.config
        _, cert, key = write_certificates(self.state_dir / "pki")
        events = EventRecorder(self.store)
        for name in config.namespaces:
            self.store.create(BY_PLURAL["namespaces"], "", {"metadata": {"name": name}})
            ensure_default_account(self.store, name)  # ready before the first request, as on a running cluster
        for storage_class in builtin_classes(config.storage_binding_mode):
            self.store.create(BY_PLURAL["storageclasses"], "", storage_class)
        for plural, policy in bootstrap_policy():
            self.store.create(BY_PLURAL[plural], "", policy)
        nodes = config.nodes or default_nodes(config.node_count, config.node_cpu, config.node_memory)
        self.podman = PodmanRuntime(config.network, cluster_label=f"tesk-devcluster-{secrets.token_hex(4)}") \
            if shutil.which("podman") else None
        kubelet_config = KubeletConfig(
            state_dir=self.state_dir, nodes=nodes, host_images=config.host_images, api_port=self.https_port,
            ca_file=self.ca_file, image_backoff_base=config.image_backoff_base,
            restart_backoff_base=config.restart_backoff_base, downward_api_delay=config.downward_api_delay,
            exclusive_attach=config.exclusive_attach, volume_detach_delay=config.volume_detach_delay,
            stats_period=config.stats_period)
        self.kubelet = Kubelet(self.store, events, kubelet_config, self.podman, HostRuntime(config.host_entrypoint),
                               self.tokens)
        controllers = Controllers(self.store, events, backoff_base=config.job_backoff_base,
                                  pod_gc_period=config.pod_gc_period,
                                  on_pvc_bound=self.kubelet.pvc_bound, on_pvc_deleted=self.kubelet.pvc_deleted)
        api = ApiServer(self.store, self.faults, self.kubelet, self.tokens, node_stats=self.kubelet,
                        evict=self.kubelet.evict,
                        bookmark_interval=config.bookmark_interval, watch_delays=config.watch_delays,
                        split_log_streams=config.pod_logs_query_split_streams, rbac_enabled=config.rbac,
                        owner_references_permission_enforcement=config.owner_references_permission_enforcement)
        api.address = f"127.0.0.1:{self.port}"
        servers = [
            uvicorn.Server(uvicorn.Config(api.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)),
            uvicorn.Server(uvicorn.Config(api.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1,
                                          ssl_certfile=str(cert), ssl_keyfile=str(key))),
        ]
        tasks = [asyncio.create_task(servers[0].serve(sockets=[http_socket])),
                 asyncio.create_task(servers[1].serve(sockets=[https_socket]))]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                await asyncio.gather(*tasks)
                raise RuntimeError("the API server stopped during start-up")
            await asyncio.sleep(0.01)
        controllers.start()
        self.kubelet.start()
        self._ready.set()
        await self._stopping.wait()
        await controllers.stop()
        await self.kubelet.stop()
        if self.podman is not None:
            await self.podman.remove_all()
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- access for tests -------------------------------------------------------------------------

    def call(self, function: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `function` on the cluster's loop thread (for direct, race-free store access)."""
        if self._loop is None:
            raise RuntimeError("the stand-in cluster is not running")

        async def wrapper() -> T:
            return function()

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(wrapper(), self._loop)
        return future.result(timeout)

    def inject(self, **fault: Any) -> Fault:
        """Add a fault rule (see `Fault` for the fields); returns it for `faults.remove`/`hits`."""
        return self.faults.add(Fault(**fault))

    def compact(self) -> None:
        """Forget the watch history: older resourceVersions and continue tokens now answer 410 Gone."""
        self.call(self.store.compact)

    def drop_watches(self) -> None:
        """Close every open watch stream now."""
        self.faults.drop_watches()

    def fail_container_creates(self, pod_prefix: str, container: str, times: int, message: str) -> None:
        """Make the runtime refuse to create `container` of pods named `pod_prefix`... `times` times
        (CreateContainerError, retried by the kubelet after a back-off)."""
        assert self.kubelet is not None
        kubelet = self.kubelet
        failure = CreateFailure(pod_prefix, container, times, message)
        self.call(lambda: kubelet.create_failures.append(failure))

    def evict(self, namespace: str, name: str, grace_period: int | None = None) -> None:
        """Evict a pod as the Eviction API or a node drain does (DisruptionTarget, then delete)."""
        assert self.kubelet is not None
        kubelet = self.kubelet
        options = {"gracePeriodSeconds": grace_period} if grace_period is not None else {}
        self.call(lambda: kubelet.evict(namespace, name, options))

    def pvc_path(self, namespace: str, name: str) -> Path:
        """The host folder backing a claim."""
        assert self.kubelet is not None
        kubelet = self.kubelet
        pvc = self.call(lambda: self.store.find("persistentvolumeclaims", namespace, name))
        if pvc is None:
            raise KeyError(f"no PersistentVolumeClaim {namespace}/{name}")
        return kubelet.pvc_path(pvc)
