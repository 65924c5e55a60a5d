"""THE list+watch loop of the Kubernetes wing, and the cache it keeps, used by the API's controller
(Jobs, Pods and result ConfigMaps of every task) and by the taskmaster (the pods of its one task).

An `Informer` lists, then watches from the list's resourceVersion; bookmarks move that version on;
a stream the server ends is resumed from it; a 410 Gone (the history we resumed from was compacted)
or any other failure means a fresh list, retried with back-off until it works. The list is inside
the same retry as the watch, so a relist that fails (the API server still recovering from the event
that caused the 410) is retried, never fatal. Readers see the cache only after the first list, so
"what exists now" is known before anything acts on it.

Objects are trimmed as they are decoded (`trim`): the cache keeps what state mapping and cancel
read, not managedFields or pod specs. Informers run in threads (the official client is synchronous)
and report the task ids whose objects changed through `changed`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.kube import Gone, Kube, Obj

log = logging.getLogger("tesk.kubernetes.informer")

WATCH_TIMEOUT = 300
"""Seconds a watch stream lasts before the server ends it and we resume from the last version."""
WRITE_HOLD = 30.0
"""Seconds an object we wrote is kept over older copies the watch still delivers (see `Cache.put`)."""
KEEP_META = ("name", "uid", "labels", "annotations", "resourceVersion", "creationTimestamp", "deletionTimestamp")


STATUS_KEEP = ("phase", "reason", "message", "conditions", "containerStatuses", "initContainerStatuses")
"""What state mapping reads of a Job's or pod's status; IPs, QoS class, start times and the like stay out."""
CONTAINER_KEEP = ("name", "image", "state")
"""What it reads of a container's status (not its ids, readiness, restart count, mounts or resources)."""


def trim(obj: Obj, keep_meta: Iterable[str] = KEEP_META) -> Obj:
    """Keep what state mapping and cancel need; drop managedFields, pod specs and the like.

    The label and status strings that recur from object to object (label values, condition types,
    reasons, phases, images, times) are interned, so ten thousand tasks' pods hold one copy of each, not one per pod."""
    meta = obj.get("metadata") or {}
    kept: Obj = {"kind": obj.get("kind"), "metadata": {k: meta[k] for k in keep_meta if k in meta}}
    if "labels" in kept["metadata"]:
        kept["metadata"]["labels"] = _shared(kept["metadata"]["labels"])
    node = (obj.get("spec") or {}).get("nodeName")
    if node:  # where a pod runs: the taskmaster keeps later steps on the node that holds the task's volume
        kept["spec"] = {"nodeName": node}
    if "status" in obj:
        status = obj["status"] or {}
        kept["status"] = {k: _shared(status[k]) for k in STATUS_KEEP if k in status}
        for key in ("containerStatuses", "initContainerStatuses"):
            if key in kept["status"]:
                kept["status"][key] = [{k: c[k] for k in CONTAINER_KEEP if k in c} for c in kept["status"][key]]
    if "data" in obj:
        kept["data"] = obj["data"]
    return kept


def _shared(value: Any) -> Any:
    """The value with its short strings interned (long ones, such as messages, are mostly unique)."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= 64 else value
    if isinstance(value, dict):
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    return value


def task_id_of(obj: Obj) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(lb.TASK_ID)


class Cache:
    """What the informers saw: objects by name, per kind, indexed by task id (thread-safe)."""

    def __init__(self, kinds: Iterable[str] = ("Job", "Pod", "ConfigMap"),
                 keep_meta: tuple[str, ...] = KEEP_META) -> None:
        self.lock = threading.Lock()
        self.keep_meta = keep_meta
        self.objects: dict[str, dict[str, Obj]] = {kind: {} for kind in kinds}
        self.by_task: dict[str, dict[str, set[str]]] = {kind: {} for kind in kinds}
        self._written: dict[tuple[str, str], tuple[str, float]] = {}
        """Our own writes the watch has not shown yet: (kind, name) -> (resourceVersion, until)."""

    def trim(self, obj: Obj) -> Obj:
        return trim(obj, self.keep_meta)

    def put(self, kind: str, obj: Obj, from_watch: bool = False) -> str | None:
        """Store an object from the watch, or from our own write (which the watch shows later).

        A watch delivers each object's versions in order, so until it shows the version our write
        returned, what it shows of that object is older and is not stored. resourceVersions stay
        opaque: they are only compared for equality (for at most `WRITE_HOLD` seconds, in case the
        watch never shows that version, for example after a relist).
        """
        obj = self.trim(obj)
        name = obj["metadata"].get("name")
        version = obj["metadata"].get("resourceVersion") or ""
        task_id = task_id_of(obj)
        key = (kind, name)
        with self.lock:
            if not from_watch:
                self._written[key] = (version, time.monotonic() + WRITE_HOLD)
            elif key in self._written:
                written, until = self._written[key]
                if version != written and time.monotonic() < until:
                    return task_id  # from before our own write: keep what we wrote
                del self._written[key]
            self.objects[kind][name] = obj
            if task_id:
                self.by_task[kind].setdefault(task_id, set()).add(name)
        return task_id

    def remove(self, kind: str, obj: Obj) -> str | None:
        name = str((obj.get("metadata") or {}).get("name"))
        task_id = task_id_of(obj)
        with self.lock:
            self.objects[kind].pop(name, None)
            self._written.pop((kind, name), None)
            if task_id and task_id in self.by_task[kind]:
                self.by_task[kind][task_id].discard(name)
                if not self.by_task[kind][task_id]:
                    del self.by_task[kind][task_id]
        return task_id

    def replace(self, kind: str, items: list[Obj]) -> set[str]:
        """A fresh (already trimmed) list: returns every task id that appeared, changed or vanished."""
        with self.lock:
            before = set(self.by_task[kind])
            self.objects[kind] = {}
            self.by_task[kind] = {}
            self._written = {key: value for key, value in self._written.items() if key[0] != kind}
            for obj in items:
                name = obj["metadata"].get("name")
                self.objects[kind][name] = obj
                task_id = task_id_of(obj)
                if task_id:
                    self.by_task[kind].setdefault(task_id, set()).add(name)
            return before | set(self.by_task[kind])

    def get(self, kind: str, name: str) -> Obj | None:
        with self.lock:
            return self.objects[kind].get(name)

    def of_task(self, kind: str, task_id: str) -> list[Obj]:
        with self.lock:
            return [self.objects[kind][n] for n in self.by_task[kind].get(task_id, ()) if n in self.objects[kind]]

    def all(self, kind: str) -> list[Obj]:
        with self.lock:
            return list(self.objects[kind].values())

    def job(self, task_id: str) -> Obj | None:
        """The task's taskmaster Job (named after the task)."""
        return self.get("Job", task_id)

    def pods(self, task_id: str) -> list[Obj]:
        return self.of_task("Pod", task_id)

    def result(self, task_id: str) -> dict[str, str] | None:
        """The data of the task's result ConfigMap, as last seen."""
        cm = self.get("ConfigMap", lb.child_name(task_id, lb.Role.RESULT))
        return None if cm is None else cm.get("data")

    def task_ids(self, kind: str = "Job") -> set[str]:
        with self.lock:
            return set(self.by_task[kind])


class Informer(threading.Thread):
    """List, then watch from the list's resourceVersion; stream end -> resume; 410 or failure -> list again."""

    def __init__(self, kube: Kube, kind: str, selector: str, cache: Cache,
                 changed: Callable[[set[str]], None], watch_timeout: int = WATCH_TIMEOUT) -> None:
        super().__init__(name=f"tesk-informer-{kind.lower()}", daemon=True)
        self.kube, self.kind, self.selector, self.cache, self.changed = kube, kind, selector, cache, changed
        self.watch_timeout = watch_timeout
        self.stop_event = threading.Event()
        self.synced = threading.Event()
        """Set once the first list is in the cache."""
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
                    items, version = self.kube.list(self.kind, self.selector, transform=self.cache.trim)
                    self.changed(self.cache.replace(self.kind, items))
                    self.synced.set()
                for kind, obj in self.kube.watch(self.kind, self.selector, version, self.watch_timeout,
                                                 self.stop_event, self._remember):
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        task_id = self.cache.remove(self.kind, obj)
                    else:
                        task_id = self.cache.put(self.kind, obj, from_watch=True)
                    if task_id:
                        self.changed({task_id})
                delay = 0.5
            except Gone:
                log.info("watch of %s expired (410 Gone): listing again", self.kind)
                version = None
            except Exception as exc:  # noqa: BLE001 (the informer must outlive any one bad answer)
                if self.stop_event.is_set():
                    return
                log.warning("informer for %s: %s; listing again in %.1fs", self.kind, exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30)
                version = None
