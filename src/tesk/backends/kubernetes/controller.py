"""The controller: list+watch of our Jobs, Pods and result ConfigMaps, and the store kept true from them.

Every API replica runs the informers (so cancel finds resourceVersions and pods without a GET); only
the replica holding the Lease acts: it writes state, logs and times into the store, ends tasks whose
pods can never start, and finishes cancels whose taskmaster cannot. GET and LIST never reach the
cluster: they read the store this controller writes.

The list+watch loops are `informer.Informer`s (the same loop the taskmaster uses); they run in
threads and hand task ids to the event loop. Leader election is `election.LeaseElector`, the cancel
protocol `cancel`, and every state rule `state`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.cancel import label_cancel, requested, seconds_since_request
from tesk.backends.kubernetes.election import LeaseElector
from tesk.backends.kubernetes.informer import Cache, Informer
from tesk.backends.kubernetes.kube import Kube, KubeError, Obj, Unreachable
from tesk.config.kubernetes import KubernetesSettings
from tesk.backends.kubernetes.state import (
    UNFINISHED,
    Graces,
    Verdict,
    decode_result,
    job_finished,
    merge_logs,
    settle,
    task_state,
    wants_events,
)
from tesk.failures import FailureReason
from tesk.models import State, TaskLog
from tesk.store import StoredTask, TaskStore

EVENT_READ_INTERVAL = 5.0
"""Seconds between reads of a waiting task's Events (FailedCreate, the autoscaler's scale-up word)."""

log = logging.getLogger("tesk.kubernetes.controller")

STORED_REREAD = 30.0
"""Seconds a watched task's stored copy serves the ticks before it is read from the store again."""


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
        self._stored: dict[str, tuple[StoredTask, float]] = {}
        """Watched tasks as last read from the store, and when (time.monotonic())."""
        self._reaping: dict[str, tuple[float, bool, set[str]]] = {}
        self._read_events: dict[str, tuple[float, dict[str, list[Obj]]]] = {}
        """Events last read per not-yet-running task: (when, by object name)."""
        """Tasks whose late pods are stopped on sight: task id -> (until, taskmaster pods too, uids stopped)."""
        self._worker: asyncio.Task[None] | None = None
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

    @property
    def leading(self) -> bool:
        """May this replica write the store? Only while it holds a lease it renewed in time."""
        return self.elector is None or self.elector.acting

    def _leadership(self, leading: bool) -> None:
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
                    raise Unreachable(0, f"could not list {informer.kind}s in namespace {self.settings.namespace} "
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
            ticked: set[str] = set()
            try:
                async with asyncio.timeout(self.tick_seconds):
                    await self._wake.wait()
            except TimeoutError:
                ticked = self._watching - self._dirty
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
                    await self.reconcile(task_id, from_tick=task_id in ticked)
                except Exception:  # one broken task must not stop the others
                    log.exception("task %s: reconciling it with the cluster failed", task_id,
                                  extra={"task_id": task_id})
                    self._watching.add(task_id)

    async def _orphans(self) -> set[str]:
        """Non-terminal tasks of the store: those with no Job are reconciled too (they may have lost it)."""
        return set(await self.store.ids_in_states(sorted(UNFINISHED)))

    # -- one task -----------------------------------------------------------------------------------

    async def reconcile(self, task_id: str, from_tick: bool = False) -> None:
        """Bring one task's stored state in line with the cluster.

        `from_tick`: no event brought us here, only a grace time that may have run out; the stored
        copy of the last look is used if it is recent, so waiting (QUEUED) tasks cost no store read
        per tick. Changes to the store that come with no cluster event (a cancel whose label patch
        failed on another replica) are seen within `STORED_REREAD` seconds.
        """
        if task_id in self._reaping:
            await asyncio.to_thread(self._reap, task_id)
        stored = await self._stored_task(task_id, from_tick)
        if stored is None or stored.state.is_terminal:
            if task_id not in self._reaping:
                self._watching.discard(task_id)
            if stored is not None:
                await self._delete_stray_job(task_id)
            return
        job = self.cache.job(task_id)
        if job is None and (datetime.now(UTC) - (stored.task.creation_time or datetime.now(UTC))
                            < timedelta(seconds=60)):
            self._watching.add(task_id)  # the create may still be on its way (another replica, watch lag)
            return
        graces, pods, now = Graces.of(self.settings), self.cache.pods(task_id), datetime.now(UTC)
        wanted = wants_events(job, pods, now, graces)
        verdict = task_state(job, pods, self.cache.result(task_id), now, graces, await self._events(task_id, wanted))
        if verdict.state is State.SYSTEM_ERROR and wanted and self._events_age(task_id) > 1.0:
            # one fresh look at the Events (what the autoscaler said) before giving up on the task
            verdict = task_state(job, pods, self.cache.result(task_id), now, graces,
                                 await self._events(task_id, wanted, fresh=True))
        if verdict.state.is_terminal and job is not None and await self._result_is_final(task_id):
            verdict = task_state(job, pods, self.cache.result(task_id), now, graces, await self._events(task_id, wanted))
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
            self._read_events.pop(task_id, None)
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
        if task_id not in self._watching:
            self._stored.pop(task_id, None)
        await self._write(stored.state, task_id, verdict, stored.task.logs)

    def _events_age(self, task_id: str) -> float:
        return time.monotonic() - self._read_events.get(task_id, (0.0, {}))[0]

    async def _events(self, task_id: str, names: list[str], fresh: bool = False) -> dict[str, list[Obj]]:
        """The Events of a not yet running task's taskmaster Job or unschedulable pods, read at most
        every EVENT_READ_INTERVAL seconds unless `fresh` (and only while such a pod or Job exists)."""
        if not names:
            self._read_events.pop(task_id, None)
            return {}
        read_at, known = self._read_events.get(task_id, (0.0, {}))
        if not fresh and time.monotonic() - read_at < EVENT_READ_INTERVAL and set(known) == set(names):
            return known
        found: dict[str, list[Obj]] = {}
        for name in names:
            try:
                found[name] = await asyncio.to_thread(self.kube.events_of, "Job" if name == task_id else "Pod", name)
            except KubeError as exc:
                log.warning("task %s: could not read the Events of %s (%s)", task_id, name, exc,
                            extra={"task_id": task_id})
        self._read_events[task_id] = (time.monotonic(), found)
        return found

    async def _stored_task(self, task_id: str, from_tick: bool) -> StoredTask | None:
        copy = self._stored.get(task_id)
        if from_tick and copy is not None and time.monotonic() - copy[1] < STORED_REREAD:
            return copy[0]
        stored = await self.store.get(task_id)
        if stored is not None and not stored.state.is_terminal:
            self._stored[task_id] = (stored, time.monotonic())
        else:
            self._stored.pop(task_id, None)
        return stored

    async def _result_is_final(self, task_id: str) -> bool:
        """Has the taskmaster published a terminal result? Asked of the API server when the cache
        says no: watches of different kinds are not ordered, so a Job's Complete (or a task ended in
        the store by another replica) can arrive before the result ConfigMap it followed. The answer
        goes into the cache. Only tasks about to end without the taskmaster's word pay this GET."""
        published = decode_result(self.cache.result(task_id))
        if published is not None and published[0].is_terminal:
            return True
        cm = await asyncio.to_thread(self.kube.get, "ConfigMap", lb.child_name(task_id, lb.Role.RESULT))
        if cm is None:
            return False
        self.cache.put("ConfigMap", cm)
        published = decode_result(cm.get("data"))
        return published is not None and published[0].is_terminal

    async def _delete_stray_job(self, task_id: str) -> None:
        """A task ended in the store whose taskmaster Job still runs without having reported (its
        submit failed half-way and the clean-up delete failed too): delete it, or it runs forever."""
        job = self.cache.job(task_id)
        if job is None or job_finished(job) or (job.get("metadata") or {}).get("deletionTimestamp") \
                or task_id in self._reaping or await self._result_is_final(task_id):
            return
        log.warning("task %s has ended, but its taskmaster Job still exists: deleting it", task_id,
                    extra={"task_id": task_id})
        await asyncio.to_thread(self.delete_task_objects, task_id)

    async def _cancel_progress(self, task_id: str, job: Obj | None, verdict: Verdict) -> Verdict:
        """A cancel the taskmaster cannot carry out (no running pod, or too slow) ends here."""
        assert job is not None
        pods = [p for p in self.cache.pods(task_id) if (p["metadata"].get("labels") or {}).get(lb.ROLE) == "taskmaster"]
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        by = (job["metadata"].get("annotations") or {}).get(lb.ANNOTATION_CANCELED_BY, "a user")
        waited = seconds_since_request(job, datetime.now(UTC))
        for pod in running:  # a replacement pod never got the label: give it, so the taskmaster sees it
            if not requested(pod):
                await asyncio.to_thread(label_cancel, self.kube, "Pod", pod, by)
        if running and waited < self.settings.cancel_grace_seconds:
            return verdict
        why = "before its taskmaster started" if not running else \
            f"and its taskmaster did not stop within {int(self.settings.cancel_grace_seconds)}s"
        await asyncio.to_thread(self.delete_task_objects, task_id)
        return Verdict(State.CANCELED, f"cancelled by {by} {why}; every pod of the task was deleted", verdict.log,
                       FailureReason.CANCELED)

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
        state = settle(current, state)
        logs = merge_logs(old_logs, verdict)
        if state == current and (logs is None or logs == old_logs):
            return
        self._stored.pop(task_id, None)  # read it afresh next time
        updated = await self.store.update(task_id, state=state if state != current else None, logs=logs)
        if updated is not None and state != current:
            log.info("task %s: %s -> %s%s", task_id, current.value, state.value,
                     f" ({verdict.reason})" if verdict.reason else "", extra={"task_id": task_id})


