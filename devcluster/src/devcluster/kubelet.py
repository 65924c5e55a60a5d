"""The node of the stand-in cluster: a scheduler for one node and a kubelet that really runs pods.

Scheduling: a pod is bound when its requests (sum of containers, max of init containers) fit in
the node's free allocatable cpu/memory, its nodeSelector matches the node labels and its PVCs
exist; otherwise it stays Pending with `PodScheduled=False/Unschedulable` and a FailedScheduling
event, as kube-scheduler reports it.

The kubelet runs init containers one by one, then the containers together, through the runtime
(podman, or the bubblewrap host runtime for the configured host images). It reports container
states (waiting `ContainerCreating`, `ErrImagePull` -> `ImagePullBackOff`, `InvalidImageName`,
`CreateContainerConfigError`, `CreateContainerError`, `CrashLoopBackOff`; running; terminated with
`Completed`/`Error`/`OOMKilled`/`StartError`), the pod phase and conditions, keeps per-container
logs (CRI format: timestamp, stream, partial flag), honours `restartPolicy`, writes volumes
(emptyDir, configMap, secret, downwardAPI, projected, PVC host folders with `subPath`) with the
kubelet's atomic `..data` symlink layout, rewrites Downward API files when labels or annotations
change, and stops containers when a pod is deleted (SIGTERM, SIGKILL after the grace period).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devcluster import storage, users
from devcluster.attach import Attachments
from devcluster.controllers import EventRecorder, StoreLoop
from devcluster.nodes import NodeConfig, parse_quantity
from devcluster.ownership import EMPTY_DIR, make_sub_path, make_volume_root, set_volume_ownership
from devcluster.resources import BY_PLURAL
from devcluster.runtime import ContainerResult, ContainerRun, Handle, HostRuntime, Mount, Runtime
from devcluster.scheduler import Scheduler
from devcluster.stats import KUBELET_HOUSEKEEPING, StatsCollector
from devcluster.store import Store, WatchEvent, timestamp
from devcluster.users import User

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_IMAGE = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z0-9]+:[a-fA-F0-9]{32,})?$")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][-._A-Za-z0-9]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are substituted, `$$` escapes, others stay."""
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(substitute, text)


def go_quote(value: str) -> str:
    """A Go `%q` string, as the kubelet writes Downward API label and annotation values."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def format_map(values: dict[str, str]) -> str:
    """The Downward API file format for `metadata.labels`/`annotations`: sorted `key="value"` lines."""
    return "\n".join(f"{key}={go_quote(values[key])}" for key in sorted(values))


def write_atomic(target: Path, files: dict[str, bytes], mode: int = 0o644) -> None:
    """The kubelet's AtomicWriter: files live in a timestamped folder that `..data` points to.

    Top-level entries are symlinks through `..data`, so a reader never sees a half-updated set, and
    a changed file appears by swapping one symlink (what `inotify`-based watchers rely on).
    """
    target.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.") + secrets.token_hex(4)
    payload = target / stamp
    payload.mkdir()
    for relative, content in files.items():
        if relative.startswith("/") or ".." in relative.split("/"):
            raise VolumeError(f"item path {relative!r} must be relative and stay in the volume", target.name)
        path = payload / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    payload.chmod(0o755)
    previous = os.readlink(target / "..data") if (target / "..data").is_symlink() else None
    temporary = target / "..data_tmp"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(stamp)
    os.replace(temporary, target / "..data")
    tops = {relative.split("/", 1)[0] for relative in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if previous and previous != stamp:
        shutil.rmtree(target / previous, ignore_errors=True)


API_DATA_VOLUMES = frozenset({"configMap", "secret", "downwardAPI", "projected"})


def must_mount_read_only(volume: dict[str, Any]) -> bool:
    """The kubelet's `mustMountRO` (makeMounts): a volume whose plugin says ReadOnly is mounted read-only
    in every container, whatever its volumeMounts say. The API-data volumes always are (their files are
    the kubelet's, swapped atomically); other plugins are when their source sets `readOnly` (a
    persistentVolumeClaim, csi, nfs... source)."""
    if API_DATA_VOLUMES & set(volume):
        return True
    return any(isinstance(source, dict) and source.get("readOnly") for source in volume.values())


class ConfigError(Exception):
    """A container cannot be configured yet (missing ConfigMap/Secret key): CreateContainerConfigError."""


class VolumeError(Exception):
    """A volume cannot be set up yet (missing ConfigMap/Secret/PVC): the pod waits, FailedMount."""


class LogFile:
    """One container run's log in CRI format: `<RFC3339Nano> <stdout|stderr> <F|P> <content>` lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - kept open while the container runs
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, chunk: bytes) -> None:
        """Append output; complete lines are written at once, a partial line waits for its end."""
        data = self._partial[stream] + chunk
        *lines, rest = data.split(b"\n")
        stamp = _log_time()
        for line in lines:
            self._file.write(f"{stamp} {stream} F ".encode() + line + b"\n")
        self._partial[stream] = rest
        if len(rest) > 16384:
            self._file.write(f"{stamp} {stream} P ".encode() + rest + b"\n")
            self._partial[stream] = b""
        self._file.flush()

    def close(self) -> None:
        """Flush a final line without newline (marked partial) and close."""
        for stream, rest in self._partial.items():
            if rest:
                self._file.write(f"{_log_time()} {stream} P ".encode() + rest + b"\n")
        self._partial = {"stdout": b"", "stderr": b""}
        self._file.close()

    @staticmethod
    def read(path: Path) -> list[tuple[str, str, bytes]]:
        """Records (timestamp, stream, bytes as the log API returns them)."""
        if not path.exists():
            return []
        out: list[tuple[str, str, bytes]] = []
        for raw in path.read_bytes().split(b"\n"):
            parts = raw.split(b" ", 3)
            if len(parts) < 4:
                continue
            content = parts[3] + (b"\n" if parts[2] == b"F" else b"")
            out.append((parts[0].decode(), parts[1].decode(), content))
        return out


def _log_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class KubeletConfig:
    """Knobs of the node: where state lives, how the API is reached from pods, back-off timings."""

    state_dir: Path
    nodes: tuple[NodeConfig, ...]
    host_images: tuple[str, ...] = ()
    api_host: str = "127.0.0.1"
    api_port: int = 0  # the HTTPS port pods use (KUBERNETES_SERVICE_PORT)
    ca_file: Path | None = None
    image_backoff_base: float = 10.0
    restart_backoff_base: float = 10.0
    backoff_max: float = 300.0
    downward_api_delay: float = 0.0
    exclusive_attach: bool = True  # ReadWriteOnce block volumes on one node at a time (Multi-Attach)
    volume_detach_delay: float = 10.0  # unmount and detach after the last pod using a volume on a node ended
    stats_period: float = KUBELET_HOUSEKEEPING  # seconds between reads of the containers' cgroups (/stats/summary)


@dataclass
class CreateFailure:
    """The runtime refuses to create this container (pods whose name starts so) `times` more times, as
    containerd does while a name is still reserved ("failed to reserve container name"): the kubelet
    shows CreateContainerError and tries again after a back-off."""

    pod_prefix: str
    container: str
    times: int
    message: str


class Kubelet(StoreLoop):
    """Scheduler, attach/detach controller and the kubelets of every node (all run pods on this host)."""

    resync = 1.0

    def __init__(self, store: Store, events: EventRecorder, config: KubeletConfig, podman: Runtime | None,
                 host: HostRuntime, tokens: dict[str, User]) -> None:
        self.store = store
        self.events = events
        self.config = config
        self.podman = podman
        self.host = host
        self.tokens = tokens
        self.workers: dict[str, PodWorker] = {}
        self.nodes = {node.name: node for node in config.nodes}
        self.scheduler = Scheduler(store, events, config.nodes, self.pvc_bound)
        self.attachments = Attachments(store, events, config.volume_detach_delay, config.exclusive_attach)
        self.stats = StatsCollector(store, self.nodes, config.stats_period)
        self._stats_task: asyncio.Task[None] | None = None
        self.create_failures: list[CreateFailure] = []
        """Container creates the runtime is to refuse (`DevCluster.fail_container_creates`)."""
        self._init_loop()

    def take_create_failure(self, pod: str, container: str) -> str | None:
        """The message of a create failure due for this container (counted down), else None."""
        for failure in self.create_failures:
            if pod.startswith(failure.pod_prefix) and container == failure.container and failure.times > 0:
                failure.times -= 1
                return failure.message
        return None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Register the nodes and start scheduling and running pods."""
        for node in self.config.nodes:
            self.store.create(BY_PLURAL["nodes"], "", node.node_object())
        self._start_loop()
        self._stats_task = asyncio.get_running_loop().create_task(self.stats.run())

    async def stop(self) -> None:
        """Stop every pod (grace 0), the loop and the stats housekeeping."""
        await self._stop_loop()
        if self._stats_task is not None:
            self._stats_task.cancel()
            await asyncio.gather(self._stats_task, return_exceptions=True)
        await asyncio.gather(*(w.terminate(0) for w in self.workers.values()), return_exceptions=True)
        await asyncio.gather(*(w.task for w in self.workers.values() if w.task), return_exceptions=True)

    def _changed(self, event: WatchEvent) -> None:
        if event.plural in ("pods", "persistentvolumeclaims", "persistentvolumes", "configmaps", "secrets"):
            self._wake.set()
        if event.plural != "pods":
            return
        worker = self.workers.get(event.object["metadata"]["uid"])
        if worker is None:
            return
        if event.type == "DELETED":
            asyncio.get_running_loop().create_task(worker.terminate(0))
        elif event.object["metadata"].get("deletionTimestamp"):
            grace = float(event.object["metadata"].get("deletionGracePeriodSeconds") or 0)
            if not worker.deleting.is_set() or grace < worker.grace:  # a second delete may shorten the grace
                asyncio.get_running_loop().create_task(worker.terminate(grace))
        elif event.old is not None and any(
            (event.old["metadata"].get(k) or {}) != (event.object["metadata"].get(k) or {})
            for k in ("labels", "annotations")
        ):
            asyncio.get_running_loop().create_task(worker.refresh_downward_api(event.object))

    async def _run(self) -> None:
        while True:
            await self._next_pass()
            try:
                self.scheduler.schedule()
                self.attachments.reconcile()
                self._start_workers()
            except Exception:  # keep the node alive; the failure is logged for the developer
                log.exception("devcluster kubelet pass failed")

    def _start_workers(self) -> None:
        for pod in self.store.scan("pods"):
            uid = pod["metadata"]["uid"]
            if uid in self.workers or pod["spec"].get("nodeName") not in self.nodes:
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                self.store.finish_pod_termination(pod["metadata"]["namespace"], pod["metadata"]["name"])
                continue
            worker = PodWorker(self, copy.deepcopy(pod))
            self.workers[uid] = worker
            worker.task = asyncio.get_running_loop().create_task(worker.run())
            worker.task.add_done_callback(self._forget(uid))

    def _forget(self, uid: str) -> Callable[[asyncio.Task[None]], None]:
        """A done-callback that drops a finished pod worker."""
        def forget(_: asyncio.Task[None]) -> None:
            self.workers.pop(uid, None)

        return forget

    # -- helpers for the API and controllers ------------------------------------------------------

    def runtime_for(self, image: str) -> Runtime:
        """The host runtime for configured host images, podman for everything else."""
        repository = image.split("@", 1)[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        if image in self.config.host_images or repository in self.config.host_images:
            return self.host
        if self.podman is None:
            raise RuntimeError("podman is not available; only host images can run")
        return self.podman

    def log_path(self, uid: str, container: str, restart: int) -> Path:
        """Where the log of one run of a container is kept."""
        return self.config.state_dir / "pods" / uid / "logs" / container / f"{restart}.log"

    def read_log(self, pod: dict[str, Any], container: str, previous: bool) -> list[tuple[str, str, bytes]]:
        """Log records of the current (or previous) run of a container."""
        statuses = (pod.get("status") or {}).get("containerStatuses", []) + (pod.get("status") or {}).get(
            "initContainerStatuses", [])
        state = next((s for s in statuses if s["name"] == container), {"restartCount": 0})
        restart = state.get("restartCount", 0) - (1 if previous else 0)
        path = self.log_path(pod["metadata"]["uid"], container, max(restart, 0))
        if not previous and restart > 0 and not path.exists():
            # Waiting to restart (CrashLoopBackOff): the kubelet serves the last run's log meanwhile.
            path = self.log_path(pod["metadata"]["uid"], container, restart - 1)
        return LogFile.read(path)

    def is_running(self, pod: dict[str, Any], container: str) -> bool:
        """Whether the container may still produce output."""
        worker = self.workers.get(pod["metadata"]["uid"])
        return worker is not None and not worker.finished(container)

    def stats_summary(self, node: str, only_cpu_and_memory: bool) -> dict[str, Any] | None:
        """The node's `/stats/summary`, or None when no kubelet of the stand-in runs that node."""
        return self.stats.summary(node, only_cpu_and_memory) if node in self.nodes else None

    def pvc_path(self, pvc: dict[str, Any]) -> Path:
        """The host folder backing a claim (one per claim uid)."""
        meta = pvc["metadata"]
        return self.config.state_dir / "volumes" / meta["namespace"] / f"{meta['name']}-{meta['uid']}"

    def pvc_bound(self, pvc: dict[str, Any]) -> None:
        """Provision the claim's folder: a new volume's root as its class's provisioner leaves it."""
        make_volume_root(self.pvc_path(pvc), storage.fresh_root(self.store, pvc))

    def pvc_deleted(self, pvc: dict[str, Any]) -> None:
        """Release the claim's folder (reclaim policy Delete)."""
        shutil.rmtree(self.pvc_path(pvc), ignore_errors=True)

    def evict(self, namespace: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """`pods/eviction`: mark the pod with `DisruptionTarget`, then delete it gracefully."""
        current = self.store.find("pods", namespace, name)
        if current is None:
            raise KeyError(name)
        status = current.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c["type"] != "DisruptionTarget"] + [{
            "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting", "lastProbeTime": None, "lastTransitionTime": timestamp()}]
        self.store.update(BY_PLURAL["pods"], namespace, name, current, "status")
        grace = options.get("gracePeriodSeconds")
        return self.store.delete(BY_PLURAL["pods"], namespace, name,
                                 grace_period=int(grace) if grace is not None else None)


class PodWorker:
    """Runs one pod on the node, from volumes to the final phase."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.root = kubelet.config.state_dir / "pods" / self.uid
        self.task: asyncio.Task[None] | None = None
        self.deleting = asyncio.Event()
        self.grace = 0.0
        self.handles: dict[str, Handle] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.init_statuses: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()
        self.volume_dirs: dict[str, Path] = {}
        self.token = ""
        self.deadline_exceeded = False
        self.policy: str = pod["spec"].get("restartPolicy", "Always")
        self.node = kubelet.nodes[pod["spec"]["nodeName"]]

    # -- public -----------------------------------------------------------------------------------

    def finished(self, container: str) -> bool:
        """Whether a container has ended for good."""
        return container in self.done

    async def terminate(self, grace: float) -> None:
        """Stop the pod's containers: SIGTERM, then SIGKILL after `grace` seconds."""
        self.grace = grace
        self.deleting.set()
        for name in self.handles:
            self.kubelet.events.record(self.pod, "Normal", "Killing", f"Stopping container {name}", "kubelet")
        await asyncio.gather(*(h.stop(grace) for h in list(self.handles.values())), return_exceptions=True)

    async def refresh_downward_api(self, pod: dict[str, Any]) -> None:
        """Rewrite Downward API volumes after a label or annotation change."""
        if self.kubelet.config.downward_api_delay:
            await asyncio.sleep(self.kubelet.config.downward_api_delay)
        self.pod["metadata"] = pod["metadata"]
        for volume in self.pod["spec"].get("volumes") or []:
            if "downwardAPI" in volume or "projected" in volume:
                try:
                    self._write_volume(volume)
                except VolumeError:
                    continue

    # -- main flow --------------------------------------------------------------------------------

    async def _enforce_deadline(self, seconds: float) -> None:
        """`spec.activeDeadlineSeconds`: the kubelet kills a pod that has been active too long."""
        if not await self._sleep(seconds):
            return
        self.deadline_exceeded = True
        self.kubelet.events.record(self.pod, "Normal", "DeadlineExceeded",
                                   "Pod was active on the node longer than the specified deadline", "kubelet")
        await self.terminate(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    async def run(self) -> None:
        """Volumes, init containers, containers, final phase; then release a deleted pod."""
        spec = self.pod["spec"]
        deadline = None
        if spec.get("activeDeadlineSeconds"):
            deadline = asyncio.get_running_loop().create_task(self._enforce_deadline(spec["activeDeadlineSeconds"]))
        try:
            for container in spec.get("initContainers") or []:
                self.init_statuses[container["name"]] = self._waiting(container, "PodInitializing")
            first = "PodInitializing" if spec.get("initContainers") else "ContainerCreating"
            for container in spec.get("containers") or []:
                self.statuses[container["name"]] = self._waiting(container, first)
            self._publish()
            if not await self._setup_volumes():
                return
            for container in spec.get("initContainers") or []:
                result = await self._run_container(container, init=True)
                if result is None or result.exit_code != 0:
                    self._publish(final=True)
                    return
            for container in spec.get("containers") or []:
                self.statuses[container["name"]] = self._waiting(container, "ContainerCreating")
            self._publish()
            await asyncio.gather(*(self._run_container(c, init=False) for c in spec.get("containers") or []))
            self._publish(final=True)
        except Exception:
            log.exception("devcluster kubelet: pod %s/%s failed unexpectedly", self.namespace, self.name)
            raise
        finally:
            if deadline is not None:
                deadline.cancel()
            self.done.update(self.statuses)
            self.done.update(self.init_statuses)
            if self.token:
                self.kubelet.tokens.pop(self.token, None)
            if self.deadline_exceeded:
                self._publish(final=True)
            elif self.deleting.is_set():
                self._publish(final=True)
                self.kubelet.store.finish_pod_termination(self.namespace, self.name)

    def _waiting(self, container: dict[str, Any], reason: str, message: str = "") -> dict[str, Any]:
        old = self.statuses.get(container["name"]) or self.init_statuses.get(container["name"]) or {}
        waiting: dict[str, Any] = {"reason": reason}
        if message:
            waiting["message"] = message
        return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                "restartCount": old.get("restartCount", 0), "started": False, "state": {"waiting": waiting},
                "lastState": old.get("lastState", {})}

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the pod is deleted meanwhile; False when it was."""
        try:
            await asyncio.wait_for(self.deleting.wait(), timeout=seconds)
            return False
        except TimeoutError:
            return True

    # -- status ---------------------------------------------------------------------------------

    def _phase(self, final: bool) -> str:
        init = list(self.init_statuses.values())
        main = list(self.statuses.values())
        terminated = [s["state"]["terminated"] for s in main if "terminated" in s["state"]]
        init_failed = any(s["state"].get("terminated", {}).get("exitCode", 0) != 0 for s in init
                          if "terminated" in s["state"]) and self.policy == "Never"
        if init_failed:
            return "Failed"
        if main and len(terminated) == len(main) and (final or self.policy != "Always"):
            if all(t["exitCode"] == 0 for t in terminated):
                return "Succeeded"
            return "Failed" if self.policy == "Never" or self.deleting.is_set() else "Running"
        if self.deleting.is_set() and final:
            return "Failed"
        if any("running" in s["state"] or "terminated" in s["state"] or s.get("restartCount") for s in main):
            return "Running"
        return "Pending"

    def _publish(self, final: bool = False) -> None:
        store = self.kubelet.store
        current = store.find("pods", self.namespace, self.name)
        if current is None or current["metadata"]["uid"] != self.uid:
            return
        status = current.setdefault("status", {})
        phase = self._phase(final)
        if status.get("phase") in ("Succeeded", "Failed"):
            phase = status["phase"]
        status["phase"] = phase
        if self.deadline_exceeded and final:
            status.update(phase="Failed", reason="DeadlineExceeded",
                          message="Pod was active on the node longer than the specified deadline")
        status["hostIP"] = self.node.address
        status["hostIPs"] = [{"ip": self.node.address}]
        status["podIP"], status["podIPs"] = self._pod_ip(), [{"ip": self._pod_ip()}]
        status.setdefault("startTime", timestamp())
        if self.init_statuses:
            status["initContainerStatuses"] = list(self.init_statuses.values())
        status["containerStatuses"] = list(self.statuses.values())
        initialized = all("terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0
                          for s in self.init_statuses.values())
        ready = bool(self.statuses) and all(s["ready"] for s in self.statuses.values())
        done_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else ""
        values = {
            "PodReadyToStartContainers": ("True" if self.volume_dirs or not self.pod["spec"].get("volumes") else
                                          "False", ""),
            "Initialized": ("True" if initialized else "False", "" if initialized else "ContainersNotInitialized"),
            "ContainersReady": ("True" if ready else "False", done_reason if not ready else ""),
            "Ready": ("True" if ready else "False", done_reason if not ready else ""),
        }
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        for kind, (value, reason) in values.items():
            old = conditions.get(kind)
            if old is None or old["status"] != value:
                entry: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None,
                                         "lastTransitionTime": timestamp()}
                if reason:
                    entry["reason"] = reason
                conditions[kind] = entry
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled",
                 "DisruptionTarget"]
        status["conditions"] = [conditions[k] for k in order if k in conditions] + [
            c for k, c in conditions.items() if k not in order]
        store.update(BY_PLURAL["pods"], self.namespace, self.name, current, "status")

    # -- volumes --------------------------------------------------------------------------------

    def _pod_ip(self) -> str:
        """A host-network pod has its node's address; the others have no network and say loopback."""
        return self.node.address if self.pod["spec"].get("hostNetwork") else "127.0.0.1"

    async def _wait_attached(self) -> bool:
        """The kubelet mounts an attachable volume only once the attach/detach controller attached it here."""
        while True:
            current = self.kubelet.store.find("pods", self.namespace, self.name)
            if current is None or self.kubelet.attachments.ready(current):
                return True
            if not await self._sleep(0.2):
                return False

    async def _setup_volumes(self) -> bool:
        """Retries as the kubelet's operation executor does (pkg/util/goroutinemap/exponentialbackoff):
        0.5 s after the first failure, doubling up to about two minutes."""
        if not await self._wait_attached():
            return False
        delay = 0.5
        reported = ""
        while True:
            try:
                for volume in self.pod["spec"].get("volumes") or []:
                    self._write_volume(volume)
                self._write_service_account()
                self._publish()
                return True
            except VolumeError as exc:
                message = f'MountVolume.SetUp failed for volume "{exc.args[1]}" : {exc.args[0]}'
                if message != reported:
                    reported = message
                    self.kubelet.events.record(self.pod, "Warning", "FailedMount", message, "kubelet")
            if not await self._sleep(delay):
                return False
            delay = min(delay * 2, 122.0)

    def _lookup(self, plural: str, name: str, optional: bool, volume: str) -> dict[str, Any] | None:
        found = self.kubelet.store.find(plural, self.namespace, name)
        if found is None and not optional:
            raise VolumeError(f'{plural[:-1]} "{name}" not found', volume)
        return found

    def _data_files(self, source: dict[str, Any], plural: str, volume: str) -> dict[str, bytes]:
        obj = self._lookup(plural, source.get("name", ""), bool(source.get("optional")), volume)
        if obj is None:
            return {}
        if plural == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = source.get("items")
        if not items:
            return data
        files: dict[str, bytes] = {}
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise VolumeError(f'{plural[:-1]} "{obj["metadata"]["name"]}" has no key "{item["key"]}"', volume)
            files[item["path"]] = data[item["key"]]
        return files

    def _field(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
                  "spec.nodeName": self.node.name,
                  "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
                  "status.hostIP": self.node.address, "status.podIP": self._pod_ip(),
                  "status.hostIPs": self.node.address, "status.podIPs": self._pod_ip()}
        if path in simple:
            return simple[path]
        if path == "metadata.labels":
            return format_map(meta.get("labels") or {})
        if path == "metadata.annotations":
            return format_map(meta.get("annotations") or {})
        match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")

    def _resource_field(self, ref: dict[str, Any], container_name: str | None) -> str:
        containers = self.pod["spec"].get("containers", []) + self.pod["spec"].get("initContainers", [])
        container = next((c for c in containers if c["name"] == (ref.get("containerName") or container_name)), None)
        kind, _, resource = ref["resource"].partition(".")
        node = self.node
        value = ((container or {}).get("resources", {}).get(kind) or {}).get(resource)
        amount = parse_quantity(value) if value is not None else (node.cpu if resource == "cpu" else node.memory)
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(amount / divisor))

    def _downward_files(self, items: list[dict[str, Any]], volume: str) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for item in items:
            try:
                if item.get("fieldRef"):
                    files[item["path"]] = self._field(item["fieldRef"]["fieldPath"]).encode()
                elif item.get("resourceFieldRef"):
                    files[item["path"]] = self._resource_field(item["resourceFieldRef"], None).encode()
            except ConfigError as exc:
                raise VolumeError(str(exc), volume) from exc
        return files

    def _write_volume(self, volume: dict[str, Any]) -> None:
        name = volume["name"]
        target = self.root / "volumes" / name
        context = self.pod["spec"].get("securityContext") or {}
        fs_group = int(context["fsGroup"]) if "fsGroup" in context else None
        if "emptyDir" in volume:
            make_volume_root(target, EMPTY_DIR)
            set_volume_ownership(target, fs_group, None)  # emptyDir always walks: it ignores the policy
        elif "persistentVolumeClaim" in volume:
            source = volume["persistentVolumeClaim"]
            pvc = self._lookup("persistentvolumeclaims", source["claimName"], False, name)
            assert pvc is not None
            target = self.kubelet.pvc_path(pvc)
            make_volume_root(target, storage.fresh_root(self.kubelet.store, pvc))
            if storage.supports_fs_group(storage.claim_volume(self.kubelet.store, pvc), bool(source.get("readOnly"))):
                set_volume_ownership(target, fs_group, context.get("fsGroupChangePolicy"))
        elif "hostPath" in volume:
            target = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
                target.mkdir(parents=True, exist_ok=True)
        elif "configMap" in volume:
            write_atomic(target, self._data_files(volume["configMap"], "configmaps", name),
                         volume["configMap"].get("defaultMode", 0o644))
        elif "secret" in volume:
            source = dict(volume["secret"], name=volume["secret"].get("secretName", ""))
            write_atomic(target, self._data_files(source, "secrets", name), volume["secret"].get("defaultMode", 0o644))
        elif "downwardAPI" in volume:
            write_atomic(target, self._downward_files(volume["downwardAPI"].get("items") or [], name),
                         volume["downwardAPI"].get("defaultMode", 0o644))
        elif "projected" in volume:
            files: dict[str, bytes] = {}
            for source in volume["projected"].get("sources") or []:
                if "configMap" in source:
                    files.update(self._data_files(source["configMap"], "configmaps", name))
                elif "secret" in source:
                    files.update(self._data_files(source["secret"], "secrets", name))
                elif "downwardAPI" in source:
                    files.update(self._downward_files(source["downwardAPI"].get("items") or [], name))
                elif "serviceAccountToken" in source:
                    files[source["serviceAccountToken"].get("path", "token")] = self._mint_token().encode()
            write_atomic(target, files, volume["projected"].get("defaultMode", 0o644))
        else:
            raise VolumeError(f"volume type {sorted(set(volume) - {'name'})} is not supported by the stand-in", name)
        if API_DATA_VOLUMES & set(volume):
            # After every write, over the whole volume, with the read-only mask: a 0400 Secret file
            # becomes 0440 in group fsGroup, so a non-root container of that group reads it.
            set_volume_ownership(target, fs_group, None, read_only=True)
        self.volume_dirs[name] = target

    def _mint_token(self) -> str:
        if not self.token:
            account = self.pod["spec"].get("serviceAccountName", "default")
            self.token = users.mint(self.kubelet.tokens, users.service_account(self.namespace, account))
        return self.token

    def _write_service_account(self) -> None:
        if self.pod["spec"].get("automountServiceAccountToken") is False:
            return
        files = {"token": self._mint_token().encode(), "namespace": self.namespace.encode()}
        if self.kubelet.config.ca_file is not None:
            files["ca.crt"] = self.kubelet.config.ca_file.read_bytes()
        write_atomic(self.root / "serviceaccount", files)
        self.volume_dirs["\0serviceaccount"] = self.root / "serviceaccount"

    # -- containers -----------------------------------------------------------------------------

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        config = self.kubelet.config
        env: dict[str, str] = {
            "KUBERNETES_SERVICE_HOST": config.api_host, "KUBERNETES_SERVICE_PORT": str(config.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(config.api_port),
            "KUBERNETES_PORT": f"tcp://{config.api_host}:{config.api_port}",
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                ref = source.get(kind)
                if not ref:
                    continue
                obj = self.kubelet.store.find(plural, self.namespace, ref["name"])
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{plural[:-1]} "{ref["name"]}" not found')
                for key, value in (obj.get("data") or {}).items():
                    env[prefix + key] = base64.b64decode(value).decode() if plural == "secrets" else value
        for item in container.get("env") or []:
            if "valueFrom" not in item:
                env[item["name"]] = expand(item.get("value", ""), env)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[item["name"]] = self._field(source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[item["name"]] = self._resource_field(source["resourceFieldRef"], container["name"])
            else:
                kind, plural = ("configMapKeyRef", "configmaps") if "configMapKeyRef" in source else (
                    "secretKeyRef", "secrets")
                ref = source[kind]
                obj = self.kubelet.store.find(plural, self.namespace, ref["name"])
                data = (obj or {}).get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    if obj is None:
                        raise ConfigError(f'{plural[:-1]} "{ref["name"]}" not found')
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind[:-6]} {self.namespace}/{ref['name']}")
                value = data[ref["key"]]
                env[item["name"]] = base64.b64decode(value).decode() if plural == "secrets" else value
        return env

    def _mounts(self, container: dict[str, Any], env: dict[str, str], restart: int) -> list[Mount]:
        mounts: list[Mount] = []
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            base = self.volume_dirs[mount["name"]]
            sub = mount.get("subPath") or expand(mount.get("subPathExpr") or "", env)
            host = base
            if sub:
                host = (base / sub).resolve()  # a file subPath of a configMap is bound once and never updated
                if host != base.resolve() and not host.is_relative_to(base.resolve()):
                    raise ConfigError(f"failed to prepare subPath for volumeMount {mount['name']!r} of container "
                                      f"{container['name']!r}: {sub!r} leads out of the volume")
                if not host.exists():
                    try:
                        make_sub_path(base.resolve(), str(host.relative_to(base.resolve())))
                    except OSError as exc:
                        raise ConfigError(f"failed to create subPath directory for volumeMount "
                                          f"{go_quote(mount['name'])} of container {go_quote(container['name'])}"
                                          ) from exc
            read_only = bool(mount.get("readOnly")) or must_mount_read_only(volumes[mount["name"]])
            mounts.append(Mount(host, mount["mountPath"], read_only))
        account = self.volume_dirs.get("\0serviceaccount")
        if account is not None and not any(m.path == SERVICE_ACCOUNT_PATH for m in mounts):
            mounts.append(Mount(account, SERVICE_ACCOUNT_PATH, True))
        message_file = self.root / "termination" / f"{container['name']}-{restart}"
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_bytes(b"")
        message_file.chmod(0o666)  # as the kubelet does, whatever its umask: any uid may write its message
        mounts.append(Mount(message_file, container.get("terminationMessagePath", "/dev/termination-log")))
        return mounts

    def security(self, container: dict[str, Any]) -> dict[str, Any]:
        """The effective security context: the container's fields over the pod's."""
        pod_context = self.pod["spec"].get("securityContext") or {}
        shared = {k: pod_context[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot") if k in pod_context}
        return {**shared, **(container.get("securityContext") or {})}

    async def check_non_root(self, container: dict[str, Any], runtime: Runtime) -> None:
        """`runAsNonRoot`: refuse, as the kubelet does, to start a container that would run as root."""
        context = self.security(container)
        if not context.get("runAsNonRoot"):
            return
        where = f"(pod: \"{self.name}_{self.namespace}({self.uid})\", container: {container['name']})"
        if "runAsUser" in context:
            if int(context["runAsUser"]) == 0:
                raise ConfigError(f"container's runAsUser breaks non-root policy {where}")
            return
        user = (await runtime.image_user(container["image"])).split(":", 1)[0]
        if user in ("", "0", "root"):
            raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")
        if not user.isdigit():
            raise ConfigError(f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify "
                              f"user is non-root {where}")

    def _run_spec(self, container: dict[str, Any], restart: int) -> ContainerRun:
        env = self._env(container)
        context = self.security(container)
        pod_context = self.pod["spec"].get("securityContext") or {}
        # The image's USER unless runAsUser is set; runAsGroup alone keeps the image's uid (podman's `:gid`).
        user = None
        if "runAsUser" in context or "runAsGroup" in context:
            user = str(context.get("runAsUser", "")) + (f":{context['runAsGroup']}" if "runAsGroup" in context else "")
        groups = [int(g) for g in pod_context.get("supplementalGroups") or []]
        if "fsGroup" in pod_context:
            groups.append(int(pod_context["fsGroup"]))
        capabilities = context.get("capabilities") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        command = [expand(c, env) for c in container["command"]] if container.get("command") else None
        args = [expand(a, env) for a in container["args"]] if container.get("args") else None
        if command is not None and args is None:
            args = []
        return ContainerRun(
            name=f"k8s_{container['name']}_{self.name}_{self.namespace}_{self.uid[:8]}_{restart}",
            image=container["image"], command=command, args=args, env=env,
            working_dir=container.get("workingDir") or None, mounts=self._mounts(container, env, restart),
            hostname=self.name[:63], memory_bytes=int(parse_quantity(limits["memory"])) if "memory" in limits else None,
            cpus=parse_quantity(limits["cpu"]) if "cpu" in limits else None,
            labels={"io.kubernetes.pod.name": self.name, "io.kubernetes.pod.namespace": self.namespace,
                    "io.kubernetes.pod.uid": self.uid, "io.kubernetes.container.name": container["name"]},
            user=user, groups=groups, read_only_root=bool(context.get("readOnlyRootFilesystem")),
            cap_add=list(capabilities.get("add") or []), cap_drop=list(capabilities.get("drop") or []),
            no_new_privileges=context.get("allowPrivilegeEscalation") is False,
        )

    def _set(self, container: dict[str, Any], init: bool, status: dict[str, Any]) -> None:
        (self.init_statuses if init else self.statuses)[container["name"]] = status
        self._publish()

    async def _pull(self, container: dict[str, Any], init: bool) -> bool:
        """Wait until the image is available: ErrImagePull, then ImagePullBackOff with back-off."""
        image = container["image"]
        config = self.kubelet.config
        if not _IMAGE.match(image):
            message = f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": ' \
                      "invalid reference format"
            self._set(container, init, self._waiting(container, "InvalidImageName", message))
            self.kubelet.events.record(self.pod, "Warning", "InspectFailed", message, "kubelet")
            await self.deleting.wait()
            return False
        delay = config.image_backoff_base
        try:
            runtime = self.kubelet.runtime_for(image)
        except RuntimeError as exc:
            self._set(container, init, self._waiting(container, "CreateContainerError", str(exc)))
            self.kubelet.events.record(self.pod, "Warning", "Failed", f"Error: {exc}", "kubelet")
            await self.deleting.wait()
            return False
        while not await runtime.image_present(image):
            message = (f'Failed to pull image "{image}": rpc error: code = Unknown desc = {image}: image not known '
                       "(the stand-in cluster runs local images only; build or tag it with podman first)")
            self._set(container, init, self._waiting(container, "ErrImagePull", message))
            self.kubelet.events.record(self.pod, "Warning", "Failed", message, "kubelet")
            if not await self._sleep(min(1.0, delay)):
                return False
            message = f'Back-off pulling image "{image}"'
            self._set(container, init, self._waiting(container, "ImagePullBackOff", message))
            self.kubelet.events.record(self.pod, "Normal", "BackOff", message, "kubelet")
            if not await self._sleep(delay):
                return False
            delay = min(delay * 2, config.backoff_max)
        return True

    async def _run_container(self, container: dict[str, Any], init: bool) -> ContainerResult | None:
        """Run one container until it is finished for good (restarts included); None if deleted first."""
        name = container["name"]
        statuses = self.init_statuses if init else self.statuses
        restart = 0
        crash_delay = self.kubelet.config.restart_backoff_base
        config_delay = 1.0
        while not self.deleting.is_set():
            if not await self._pull(container, init):
                return None
            self.kubelet.events.record(self.pod, "Normal", "Pulled",
                                       f'Container image "{container["image"]}" already present on machine', "kubelet")
            try:
                await self.check_non_root(container, self.kubelet.runtime_for(container["image"]))
                spec = self._run_spec(container, restart)
            except ConfigError as exc:
                self._set(container, init, self._waiting(container, "CreateContainerConfigError", str(exc)))
                self.kubelet.events.record(self.pod, "Warning", "Failed", f"Error: {exc}", "kubelet")
                if not await self._sleep(config_delay):
                    return None
                config_delay = min(config_delay * 2, 10.0)
                continue
            refused = self.kubelet.take_create_failure(self.name, name)
            if refused is not None:
                self._set(container, init, self._waiting(container, "CreateContainerError", refused))
                self.kubelet.events.record(self.pod, "Warning", "Failed", f"Error: {refused}", "kubelet")
                if not await self._sleep(config_delay):
                    return None
                config_delay = min(config_delay * 2, 10.0)
                continue
            self.kubelet.events.record(self.pod, "Normal", "Created", f"Created container {name}", "kubelet")
            log_file = LogFile(self.kubelet.log_path(self.uid, name, restart))
            started_at = ""

            async def started(handle: Handle, container_id: str, restart: int = restart) -> None:
                nonlocal started_at
                self.handles[name] = handle
                started_at = timestamp()
                status = self._waiting(container, "")
                status.update(state={"running": {"startedAt": started_at}}, ready=not init, started=True,
                              containerID=container_id, restartCount=restart)
                self._set(container, init, status)
                self.kubelet.events.record(self.pod, "Normal", "Started", f"Started container {name}", "kubelet")
                if self.deleting.is_set():
                    await handle.stop(self.grace)

            try:
                result = await self.kubelet.runtime_for(container["image"]).run(spec, log_file.write, started)
            finally:
                log_file.close()
                self.handles.pop(name, None)
            if result.reason == "CreateContainerError":
                self._set(container, init, self._waiting(container, "CreateContainerError", result.message))
                self.kubelet.events.record(self.pod, "Warning", "Failed", f"Error: {result.message}", "kubelet")
                if not await self._sleep(config_delay):
                    return None
                config_delay = min(config_delay * 2, 10.0)
                continue
            terminated = self._terminated(container, result, started_at or timestamp(), restart)
            status = self._waiting(container, "")
            status.update(state={"terminated": terminated}, ready=False, started=False, restartCount=restart,
                          containerID=result.container_id)
            statuses[name] = status
            again = not self.deleting.is_set() and (
                self.policy == "Always" or (self.policy == "OnFailure" and result.exit_code != 0))
            if not again:
                self.done.add(name)
                self._publish()
                return result
            restart += 1
            waiting = self._waiting(container, "CrashLoopBackOff",
                                    f"back-off {int(crash_delay)}s restarting failed container={name} "
                                    f"pod={self.name}_{self.namespace}({self.uid})")
            waiting.update(restartCount=restart, lastState={"terminated": terminated})
            self._set(container, init, waiting)
            self.kubelet.events.record(self.pod, "Warning", "BackOff", "Back-off restarting failed container "
                                       f"{name} in pod {self.name}_{self.namespace}({self.uid})", "kubelet")
            if not await self._sleep(crash_delay):
                return None
            crash_delay = min(crash_delay * 2, self.kubelet.config.backoff_max)
        return None

    def _terminated(self, container: dict[str, Any], result: ContainerResult, started_at: str,
                    restart: int) -> dict[str, Any]:
        terminated: dict[str, Any] = {"exitCode": result.exit_code, "reason": result.reason,
                                      "startedAt": started_at, "finishedAt": timestamp(),
                                      "containerID": result.container_id}
        message = result.message
        message_file = self.root / "termination" / f"{container['name']}-{restart}"
        if not message and message_file.exists():
            message = message_file.read_bytes()[:4096].decode(errors="replace")
        if not message and result.exit_code != 0 and container.get("terminationMessagePolicy") == \
                "FallbackToLogsOnError":
            records = LogFile.read(self.kubelet.log_path(self.uid, container["name"], restart))[-80:]
            message = b"".join(r[2] for r in records)[-2048:].decode(errors="replace")
        if message:
            terminated["message"] = message
        return terminated
