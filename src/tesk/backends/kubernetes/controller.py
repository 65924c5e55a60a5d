"""The controller: list+watch of our Jobs, Pods and result ConfigMaps, and the store kept true from them.

Every API replica runs the informers (so cancel finds resourceVersions and pods without a GET); only
the replica holding the Lease acts: it writes state, logs and times into the store, ends tasks whose
pods can never start, and finishes cancels whose taskmaster cannot. GET and LIST never reach the
cluster: they read the store this controller writes.

Informers run in threads (the official client is synchronous) and hand task ids to the event loop;
a 410 from a watch means the history we resumed from is gone, so the informer lists again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.kube import Kube, KubeError, Obj, WatchExpired
from tesk.backends.kubernetes.settings import KubernetesSettings
from tesk.backends.kubernetes.state import Verdict, decode_result, task_state
from tesk.models import State, TaskLog
from tesk.store import TaskStore

log = logging.getLogger("tesk.kubernetes.controller")

_RANK = {State.UNKNOWN: 0, State.QUEUED: 1, State.INITIALIZING: 2, State.RUNNING: 3, State.CANCELING: 4}
_KEEP_META = ("name", "uid", "labels", "annotations", "resourceVersion", "creationTimestamp", "deletionTimestamp")
WATCH_TIMEOUT = 300
CANCEL_REQUESTED_AT = lb.PREFIX + "cancel-requested-at"


def trim(obj: Obj) -> Obj:
    """Keep what state mapping and cancel need; drop managedFields, pod specs and the like."""
    meta = obj.get("metadata") or {}
    kept: Obj = {"kind": obj.get("kind"), "metadata": {k: meta[k] for k in _KEEP_META if k in meta}}
    if "status" in obj:
        kept["status"] = obj["status"]
    if "data" in obj:
        kept["data"] = obj["data"]
    return kept


def task_id_of(obj: Obj) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(lb.TASK_ID)


class Cache:
    """The informers' view of the cluster: objects by name, per kind, indexed by task id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, Obj]] = {"Job": {}, "Pod": {}, "ConfigMap": {}}
        self.by_task: dict[str, dict[str, set[str]]] = {"Job": {}, "Pod": {}, "ConfigMap": {}}

    def put(self, kind: str, obj: Obj) -> str | None:
        obj = trim(obj)
        name = obj["metadata"].get("name")
        task_id = task_id_of(obj)
        with self.lock:
            old = self.objects[kind].get(name)
            if old is not None and _rv(old) > _rv(obj) > 0:
                return task_id  # an older copy (our own write raced the watch): keep the newer one
            self.objects[kind][name] = obj
            if task_id:
                self.by_task[kind].setdefault(task_id, set()).add(name)
        return task_id

    def remove(self, kind: str, obj: Obj) -> str | None:
        name = str((obj.get("metadata") or {}).get("name"))
        task_id = task_id_of(obj)
        with self.lock:
            self.objects[kind].pop(name, None)
            if task_id and task_id in self.by_task[kind]:
                self.by_task[kind][task_id].discard(name)
                if not self.by_task[kind][task_id]:
                    del self.by_task[kind][task_id]
        return task_id

    def replace(self, kind: str, items: list[Obj]) -> set[str]:
        """A fresh list: returns every task id that appeared, changed or vanished."""
        with self.lock:
            before = set(self.by_task[kind])
            self.objects[kind] = {}
            self.by_task[kind] = {}
        for item in items:
            self.put(kind, item)
        with self.lock:
            return before | set(self.by_task[kind])

    def job(self, task_id: str) -> Obj | None:
        with self.lock:
            return self.objects["Job"].get(task_id)

    def pods(self, task_id: str) -> list[Obj]:
        with self.lock:
            return [self.objects["Pod"][n] for n in self.by_task["Pod"].get(task_id, ()) if n in self.objects["Pod"]]

    def result(self, task_id: str) -> dict[str, str] | None:
        with self.lock:
            cm = self.objects["ConfigMap"].get(lb.child_name(task_id, lb.Role.RESULT))
        return None if cm is None else cm.get("data")

    def taskmaster_pods(self) -> list[Obj]:
        """Taskmaster pods that have started (Running or finished)."""
        with self.lock:
            pods = list(self.objects["Pod"].values())
        return [p for p in pods if (p["metadata"].get("labels") or {}).get(lb.ROLE) == lb.Role.TASKMASTER.value
                and (p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")]

    def task_ids(self) -> set[str]:
        with self.lock:
            return set(self.by_task["Job"])


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Informer(threading.Thread):
    """List once, then watch from the list's resourceVersion; 410 -> list again; stream end -> resume."""

    def __init__(self, kube: Kube, kind: str, selector: str, cache: Cache,
                 changed: Callable[[set[str]], None]) -> None:
        super().__init__(name=f"tesk-informer-{kind.lower()}", daemon=True)
        self.kube, self.kind, self.selector, self.cache, self.changed = kube, kind, selector, cache, changed
        self.stop_event = threading.Event()
        self.synced = threading.Event()
        self._response: Any = None

    def stop(self) -> None:
        self.stop_event.set()
        response = self._response
        if response is not None:
            try:  # unblock the thread waiting for the next watch event
                response.shutdown()
            except Exception as exc:  # noqa: BLE001 (closing a socket that may already be closed)
                log.debug("closing the %s watch: %s", self.kind, exc)

    def _remember(self, response: Any) -> None:
        self._response = response

    def run(self) -> None:
        version: str | None = None
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                if version is None:
                    items, version = self.kube.list(self.kind, self.selector)
                    self.changed(self.cache.replace(self.kind, items))
                    self.synced.set()
                for kind, obj in self.kube.watch(self.kind, self.selector, version, WATCH_TIMEOUT,
                                                 self.stop_event, self._remember):
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if kind == "BOOKMARK":
                        continue
                    task_id = self.cache.remove(self.kind, obj) if kind == "DELETED" else self.cache.put(self.kind, obj)
                    if task_id:
                        self.changed({task_id})
                delay = 0.5
            except WatchExpired:
                log.info("watch of %s expired (410 Gone): listing again", self.kind)
                version = None
            except Exception as exc:  # noqa: BLE001 (the informer must outlive any one bad answer)
                if self.stop_event.is_set():
                    return
                log.warning("informer for %s: %s; listing again in %.1fs", self.kind, exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30)
                version = None


def lease_manifest(metadata: Obj, spec: Obj) -> Obj:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class LeaseElector(threading.Thread):
    """Lease-based leader election: at most one controller acts; a dead leader is replaced after the lease.

    Writes go through `replace` with the Lease's resourceVersion, so two candidates can never both win.
    """

    def __init__(self, kube: Kube, name: str, lease_seconds: float, on_change: Callable[[bool], None]) -> None:
        super().__init__(name="tesk-leader-election", daemon=True)
        self.kube, self.name, self.lease_seconds, self.on_change = kube, name, lease_seconds, on_change
        self.identity = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self.leading = False

    def _now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

    def try_acquire(self) -> bool:
        lease = self.kube.get("Lease", self.name)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, int(self.lease_seconds)),
                "renewTime": self._now()}
        if lease is None:
            body = lease_manifest({"name": self.name, "labels": {lb.MANAGED_BY: lb.MANAGER}},
                                  spec | {"acquireTime": self._now(), "leaseTransitions": 0})
            try:
                self.kube.create(body)
                return True
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = current.get("renewTime")
        duration = float(current.get("leaseDurationSeconds") or self.lease_seconds)
        expired = True
        if renewed:
            renewed_at = datetime.fromisoformat(renewed)
            expired = datetime.now(UTC) - renewed_at > timedelta(seconds=duration)
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = self._now()
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        body = lease_manifest(lease["metadata"], current | spec)
        try:
            self.kube.replace("Lease", self.name, body)
            return True
        except KubeError as exc:
            if exc.status in (409, 404):
                return False
            raise

    def run(self) -> None:
        period = max(0.5, self.lease_seconds / 3)
        while not self.stop_event.is_set():
            try:
                leading = self.try_acquire()
            except Exception as exc:  # noqa: BLE001 (an unreadable Lease must not end the election)
                log.warning("leader election: %s", exc)
                leading = False
            if leading != self.leading:
                self.leading = leading
                log.info("controller %s %s", self.identity, "is the leader" if leading else "is not the leader")
                self.on_change(leading)
            self.stop_event.wait(period)
        if self.leading:
            self.release()

    def release(self) -> None:
        """Give the lease up on shutdown so another replica takes over at once."""
        try:
            lease = self.kube.get("Lease", self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["renewTime"] = "1970-01-01T00:00:00.000000Z"
                self.kube.replace("Lease", self.name, lease)
        except KubeError as exc:
            log.info("leader election: could not release the lease (%s)", exc)
        self.leading = False


class Controller:
    """Turns what the informers see into store updates (only while this replica leads)."""

    def __init__(self, settings: KubernetesSettings, kube: Kube, store: TaskStore,
                 elect: bool = True, tick_seconds: float = 2.0) -> None:
        self.settings, self.kube, self.store = settings, kube, store
        self.cache = Cache()
        self.tick_seconds = tick_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._watching: set[str] = set()
        self._reaping: dict[str, tuple[float, bool, set[str]]] = {}
        """Tasks whose late pods are stopped on sight: task id -> (until, taskmaster pods too, uids stopped)."""
        self._worker: asyncio.Task[None] | None = None
        self.leading = not elect
        selector = lb.MANAGED_SELECTOR
        self.informers = [
            Informer(kube, "Job", selector + f",{lb.ROLE}={lb.Role.TASKMASTER.value}", self.cache, self.notify),
            Informer(kube, "Pod", selector, self.cache, self.notify),
            Informer(kube, "ConfigMap", selector + f",{lb.ROLE}={lb.Role.RESULT.value}", self.cache, self.notify),
        ]
        self.elector = LeaseElector(kube, settings.lease_name, settings.lease_seconds, self._leadership) \
            if elect else None

    # -- threads -> loop ------------------------------------------------------------------------

    def notify(self, task_ids: set[str]) -> None:
        """Ask the controller to look at these tasks again (thread-safe)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._mark, task_ids)

    def _mark(self, task_ids: set[str]) -> None:
        self._dirty |= task_ids
        self._wake.set()

    def _leadership(self, leading: bool) -> None:
        self.leading = leading
        if leading:
            self.notify(self.cache.task_ids() | {"*startup*"})

    # -- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for informer in self.informers:
            informer.start()
        deadline = time.monotonic() + 30
        for informer in self.informers:
            while not informer.synced.is_set():
                if time.monotonic() > deadline:
                    raise KubeError(0, f"could not list {informer.kind}s in namespace {self.settings.namespace} "
                                       "within 30 s; check the kubeconfig and the API's RBAC")
                await asyncio.sleep(0.05)
        if self.elector is not None:
            self.elector.start()
        else:
            self._mark(self.cache.task_ids() | {"*startup*"})
        self._worker = asyncio.create_task(self._run(), name="tesk-kubernetes-controller")

    async def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
        if self.elector is not None:
            self.elector.stop_event.set()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in [*self.informers, *([self.elector] if self.elector else [])]:
            if thread.is_alive():
                thread.join(timeout=5)

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.tick_seconds):
                    await self._wake.wait()
            except TimeoutError:
                self._dirty |= self._watching
            self._wake.clear()
            if not self.leading:
                continue
            dirty, self._dirty = self._dirty, set()
            if "*startup*" in dirty:
                dirty.discard("*startup*")
                dirty |= await self._orphans()
            for task_id in sorted(dirty):
                try:
                    await self.reconcile(task_id)
                except Exception:  # one broken task must not stop the others
                    log.exception("task %s: reconciling it with the cluster failed", task_id,
                                  extra={"task_id": task_id})
                    self._watching.add(task_id)

    async def _orphans(self) -> set[str]:
        """Non-terminal tasks of the store: those with no Job are reconciled too (they may have lost it)."""
        active = [State.QUEUED, State.INITIALIZING, State.RUNNING, State.CANCELING, State.UNKNOWN]
        return set(await self.store.ids_in_states(active))

    # -- one task -----------------------------------------------------------------------------------

    async def reconcile(self, task_id: str) -> None:
        if task_id in self._reaping:
            await asyncio.to_thread(self._reap, task_id)
        stored = await self.store.get(task_id)
        if stored is None or stored.state.is_terminal:
            if task_id not in self._reaping:
                self._watching.discard(task_id)
            return
        job = self.cache.job(task_id)
        if job is None and (datetime.now(UTC) - (stored.task.creation_time or datetime.now(UTC))
                            < timedelta(seconds=60)):
            self._watching.add(task_id)  # the create may still be on its way (another replica, watch lag)
            return
        verdict = task_state(job, self.cache.pods(task_id), self.cache.result(task_id), datetime.now(UTC),
                             self.settings.unschedulable_grace_seconds, self.settings.image_pull_grace_seconds)
        if stored.state is State.CANCELING and job is not None and not verdict.state.is_terminal \
                and verdict.state is not State.CANCELING:
            # The store says cancel but the Job has no label (the API's patch failed): label it now.
            labelled = await asyncio.to_thread(label_cancel, self.kube, "Job", job, "a user")
            if labelled is not None:
                job = labelled
                self.cache.put("Job", labelled)
            verdict = Verdict(State.CANCELING, log=verdict.log)
        if verdict.state is State.CANCELING:
            verdict = await self._cancel_progress(task_id, job, verdict)
        if verdict.state.is_terminal:
            self._watching.discard(task_id)
            published = decode_result(self.cache.result(task_id))
            ended_by_taskmaster = published is not None and published[0].is_terminal
            if job is not None and not ended_by_taskmaster and verdict.state is not State.CANCELED \
                    and not (job.get("metadata") or {}).get("deletionTimestamp"):
                # The taskmaster never started or died: delete its Job, and with it every pod and the PVC.
                await asyncio.to_thread(self.delete_task_objects, task_id)
            elif verdict.state in (State.CANCELED, State.SYSTEM_ERROR, State.PREEMPTED):
                # A child Job created just as the task was stopped can get a pod after the taskmaster's
                # clean-up; garbage collection would give it its full grace period.
                self.start_reaping(task_id, taskmaster_too=False)
                await asyncio.to_thread(self._reap, task_id)
        elif verdict.state in (State.QUEUED, State.CANCELING):
            self._watching.add(task_id)  # a grace time may run out with no event: look again each tick
        else:
            self._watching.discard(task_id)  # the taskmaster's pods and result drive it from here
        await self._write(stored.state, task_id, verdict, stored.task.logs)

    async def _cancel_progress(self, task_id: str, job: Obj | None, verdict: Verdict) -> Verdict:
        """A cancel the taskmaster cannot carry out (no running pod, or too slow) ends here."""
        assert job is not None
        pods = [p for p in self.cache.pods(task_id) if (p["metadata"].get("labels") or {}).get(lb.ROLE) == "taskmaster"]
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        annotations = job["metadata"].get("annotations") or {}
        by = annotations.get(lb.ANNOTATION_CANCELED_BY, "a user")
        asked = annotations.get(CANCEL_REQUESTED_AT)
        waited = (datetime.now(UTC) - datetime.fromisoformat(asked)).total_seconds() \
            if asked else 0.0
        for pod in running:  # a replacement pod never got the label: give it, so the taskmaster sees it
            if (pod["metadata"].get("labels") or {}).get(lb.CANCEL) != lb.CANCEL_REQUESTED:
                await asyncio.to_thread(label_cancel, self.kube, "Pod", pod, by)
        if running and waited < self.settings.cancel_grace_seconds:
            return verdict
        why = "before its taskmaster started" if not running else \
            f"and its taskmaster did not stop within {int(self.settings.cancel_grace_seconds)}s"
        await asyncio.to_thread(self.delete_task_objects, task_id)
        return Verdict(State.CANCELED, f"cancelled by {by} {why}; every pod of the task was deleted", verdict.log)

    def delete_task_objects(self, task_id: str) -> None:
        """Delete the taskmaster Job (its children go with it) and stop every pod of the task at once:
        garbage collection alone would give each pod its full grace period.

        A taskmaster pod that started just before the delete may still make a child or two; for a
        while every pod of the task that shows up is stopped the same way (`_reap`).
        """
        self.kube.delete("Job", task_id, "Foreground")
        self.start_reaping(task_id, taskmaster_too=True)
        self._reap(task_id)

    def start_reaping(self, task_id: str, taskmaster_too: bool) -> None:
        """For a while, stop on sight every pod of this stopped task (its taskmaster's own pod only
        when `taskmaster_too`: a taskmaster that reported is finishing on its own)."""
        if task_id not in self._reaping:
            until = time.monotonic() + max(60.0, self.settings.cancel_grace_seconds)
            self._reaping[task_id] = (until, taskmaster_too, set())
            self._watching.add(task_id)

    def _reap(self, task_id: str) -> None:
        until, taskmaster_too, stopped = self._reaping.get(task_id, (0.0, False, set()))
        if time.monotonic() > until:
            self._reaping.pop(task_id, None)
            return
        for pod in self.cache.pods(task_id):
            uid = pod["metadata"].get("uid")
            role = (pod["metadata"].get("labels") or {}).get(lb.ROLE)
            if (pod.get("status") or {}).get("phase") in (None, "Pending", "Running") and uid not in stopped \
                    and (taskmaster_too or role != lb.Role.TASKMASTER.value):
                stopped.add(uid)
                self.kube.delete("Pod", pod["metadata"]["name"], "Background", 0)

    async def _write(self, current: State, task_id: str, verdict: Verdict, old_logs: list[TaskLog] | None) -> None:
        state = verdict.state
        if not state.is_terminal and _RANK.get(state, 0) <= _RANK.get(current, 0):
            state = current  # never step back (RUNNING -> INITIALIZING) on a late or replayed event
        logs = merge_logs(old_logs, verdict)
        if state == current and (logs is None or logs == old_logs):
            return
        updated = await self.store.update(task_id, state=state if state != current else None, logs=logs)
        if updated is not None and state != current:
            log.info("task %s: %s -> %s%s", task_id, current.value, state.value,
                     f" ({verdict.reason})" if verdict.reason else "", extra={"task_id": task_id})


def merge_logs(old: list[TaskLog] | None, verdict: Verdict) -> list[TaskLog] | None:
    """The store's task log with the taskmaster's published log and the controller's reason folded in.

    System log lines already stored (for example ignored backend_parameters) stay first.
    """
    if verdict.log is None and verdict.reason is None:
        return None
    base = old[0] if old else TaskLog()
    merged = (verdict.log or TaskLog(start_time=base.start_time, end_time=base.end_time,
                                     logs=base.logs, outputs=base.outputs)).model_copy(deep=True)
    lines = list(base.system_logs or [])
    for line in merged.system_logs or []:
        if line not in lines:
            lines.append(line)
    if verdict.reason and verdict.reason not in lines:
        lines.append(verdict.reason)
    merged.system_logs = lines or None
    merged.metadata = merged.metadata or base.metadata
    if verdict.state.is_terminal and merged.end_time is None:
        merged.end_time = datetime.now(UTC)
    return [merged]


def label_cancel(kube: Kube, kind: str, obj: Obj, by: str, attempts: int = 4) -> Obj | None:
    """Add the cancel label with a resourceVersion precondition; on 409 re-read and try again.

    None when the object is gone. A conflict means someone changed it meanwhile (the taskmaster
    publishing progress, the Job controller updating status); re-reading keeps us from undoing it.
    """
    name = obj["metadata"]["name"]
    current: Obj | None = obj
    for _ in range(attempts):
        if current is None:
            return None
        patch = {"metadata": {
            "resourceVersion": current["metadata"].get("resourceVersion"),
            "labels": {lb.CANCEL: lb.CANCEL_REQUESTED},
            "annotations": {lb.ANNOTATION_CANCELED_BY: by,
                            CANCEL_REQUESTED_AT: datetime.now(UTC).isoformat().replace("+00:00", "Z")},
        }}
        try:
            return kube.patch(kind, name, patch)
        except KubeError as exc:
            if exc.status == 404:
                return None
            if exc.status != 409:
                raise
            current = kube.get(kind, name)
    raise KubeError(409, f"could not label {kind} {name} for cancel: it kept changing")
