"""The control plane of the stand-in: Job controller, garbage collector, TTL, PVC binder, namespaces.

They behave like kube-controller-manager where a client can observe it:

* Job controller: pods from the template with the Job's labels, a controller ownerReference and the
  `batch.kubernetes.io/job-tracking` finalizer (removed once a finished pod is counted);
  `succeeded`/`failed`/`active`/`ready`/`terminating` counts; exponential back-off between
  retries; `backoffLimit`, `activeDeadlineSeconds`, `suspend`/resume, `podFailurePolicy`
  (FailJob / Ignore / Count on exit codes and pod conditions); the 1.31+ condition sequence
  `FailureTarget` -> `Failed` and `SuccessCriteriaMet` -> `Complete`, the final one only after every
  pod has stopped; `startTime`/`completionTime`. A pod create the API refuses (admission, quota) is a
  `FailedCreate` Warning Event on the Job (`Error creating: <the API's message>`, as RealPodControl
  records it) and no condition; the Job is synced again after the API back-off (1 s doubling to 60 s,
  the Job controller's DefaultJobApiBackOff and MaxJobApiBackOff).
* Garbage collector: dependents whose owners are all gone are deleted (background); `Orphan`
  strips the ownerReferences, `Foreground` deletes dependents first and releases the owner once no
  `blockOwnerDeletion` dependent is left.
* TTL-after-finished: finished Jobs with `ttlSecondsAfterFinished` are deleted (background).
* PVC binder and protection: claims bind at once; a claim in use by a pod stays Terminating.
* Namespace controller: a deleted namespace empties itself, then disappears.
* Resource quota controller: each ResourceQuota's `status.hard` follows its spec and `status.used` what
  the namespace's objects count (admission charges a new one at once; this pass gives back what ended or
  went).

Everything is level-triggered: a pass runs after each burst of changes and every `resync` seconds.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from devcluster.admission import quota_status
from devcluster.errors import ApiError
from devcluster import storage
from devcluster.resources import BY_PLURAL
from devcluster.store import (
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    Store,
    WatchEvent,
    now,
    parse_time,
    timestamp,
)

log = logging.getLogger(__name__)

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
EVENT_TTL = timedelta(hours=1)
JOB_API_BACKOFF = 1.0  # the Job controller's DefaultJobApiBackOff: first retry of a sync whose pod create failed
MAX_JOB_API_BACKOFF = 60.0  # and its MaxJobApiBackOff


def ensure_default_account(store: Store, namespace: str) -> None:
    """The service-account controller's part: every active namespace has a `default` ServiceAccount."""
    if store.peek("serviceaccounts", namespace, "default") is None:
        store.create(BY_PLURAL["serviceaccounts"], namespace, {"metadata": {"name": "default"}})


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference marked `controller: true`, if any."""
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of this type whose status is "True", if any."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == kind and c.get("status") == "True"), None)


def _count(spec: dict[str, Any], key: str) -> int:
    """`parallelism`/`completions` as the Job controller reads them: unset or null means 1."""
    value = spec.get(key)
    return 1 if value is None else int(value)


class EventRecorder:
    """Writes `v1 Event` objects about other objects, as components do with their event recorders."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, obj: dict[str, Any], kind: str, reason: str, message: str, component: str) -> None:
        """Record one event about `obj` (type Normal or Warning)."""
        namespace = obj["metadata"].get("namespace") or "default"
        moment = timestamp()
        event = {
            "metadata": {"name": f"{obj['metadata']['name']}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {"kind": obj.get("kind"), "namespace": namespace, "name": obj["metadata"]["name"],
                               "uid": obj["metadata"].get("uid"), "apiVersion": obj.get("apiVersion"),
                               "resourceVersion": obj["metadata"].get("resourceVersion")},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": moment, "lastTimestamp": moment, "count": 1,
        }
        try:
            self.store.create(BY_PLURAL["events"], namespace, event)
        except ApiError:
            pass  # like a real event recorder, drop what cannot be written (e.g. a namespace being deleted)


class StoreLoop(ABC):
    """A background loop that wakes on store changes and at least every `resync` seconds.

    The shape the controllers and the kubelet share: subscribe `_changed` to the store, run `_run`
    on the event loop, and on `stop` unsubscribe and cancel. `_changed` decides which changes wake
    the loop; `_run` awaits `_next_pass()` before each pass.
    """

    store: Store
    resync: float

    def _init_loop(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def _start_loop(self) -> None:
        self._unsubscribe = self.store.subscribe(self._changed)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _stop_loop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _next_pass(self) -> None:
        """Wait for a wake-up (or the resync period), then clear it for the pass about to run."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self.resync)
        except TimeoutError:
            pass
        self._wake.clear()

    @abstractmethod
    def _changed(self, event: WatchEvent) -> None: ...

    @abstractmethod
    async def _run(self) -> None: ...


class Controllers(StoreLoop):
    """Runs every controller pass on the server's event loop."""

    def __init__(
        self,
        store: Store,
        events: EventRecorder,
        *,
        backoff_base: float = 10.0,
        backoff_max: float = 360.0,
        resync: float = 0.5,
        pod_gc_period: float = 20.0,
        on_pvc_bound: Callable[[dict[str, Any]], None] | None = None,
        on_pvc_deleted: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.resync = resync
        self.pod_gc_period = pod_gc_period
        self.on_pvc_bound = on_pvc_bound
        self.on_pvc_deleted = on_pvc_deleted
        self._init_loop()
        self._last_failure: dict[str, float] = {}
        self._refused: dict[str, tuple[int, float]] = {}  # Job uid -> (refused pod creates in a row, retry at)
        self._claim_reports: set[tuple[str, str]] = set()  # (claim uid, event reason) already recorded
        self._suspended_pods: set[str] = set()  # pods deleted because their Job was suspended
        self._pods_by_owner: dict[str, list[tuple[str, str]]] = {}  # controller uid -> pod keys, per pass
        self._next_event_expiry = now()
        self._next_pod_gc = now()
        self._ownership_changed = True
        """Whether any object changed since the garbage collector's last pass (its verdicts depend on the
        objects alone, not on time, so a pass over an unchanged store would find nothing: skipping it
        keeps the resync passes of a cluster holding tens of thousands of objects short)."""

    def start(self) -> None:
        """Subscribe to changes and start the control loop."""
        self._start_loop()

    async def stop(self) -> None:
        """Stop the control loop."""
        await self._stop_loop()

    def _changed(self, event: WatchEvent) -> None:
        if event.plural != "events":
            self._wake.set()
            self._ownership_changed = True
        if event.type == "DELETED" and event.plural == "persistentvolumeclaims" and self.on_pvc_deleted:
            self.on_pvc_deleted(event.object)

    async def _run(self) -> None:
        while True:
            await self._next_pass()
            await asyncio.sleep(0.01)  # let a burst of writes land before one pass handles them all
            self.reconcile()

    def reconcile(self) -> None:
        """One pass of every controller; one failing does not keep the others from running."""
        for step in (self._namespaces, self._quotas, self._pvcs, self._garbage_collect, self._collect_unscheduled_terminating,
                     self._jobs, self._release_orphaned_pods, self._ttl, self._expire_events):
            try:
                step()
            except ApiError as exc:  # an object changed under the pass (a race): the next pass sees it settled
                log.debug("devcluster %s: %s", step.__name__, exc.message)
            except Exception:  # a controller bug must not stop the cluster; it is logged loudly
                log.exception("devcluster controller %s failed", step.__name__)

    def _jobs(self) -> None:
        running: set[str] = set()
        # Pods by their controller's uid, once a pass (as the real controller's informer index): finding a
        # Job's pods by scanning every pod for every Job made a pass cost jobs x pods.
        self._pods_by_owner = {}
        for pod in self.store.scan("pods"):
            owner = (controller_of(pod) or {}).get("uid")
            if owner:
                self._pods_by_owner.setdefault(owner, []).append(
                    (pod["metadata"]["namespace"], pod["metadata"]["name"]))
        for job in self.store.scan("jobs"):
            if not (condition(job, "Complete") or condition(job, "Failed")):
                running.add(job["metadata"]["uid"])
                try:
                    self._job(copy.deepcopy(job))
                except ApiError as exc:  # a race with a client's write: the next pass retries this Job
                    log.debug("devcluster job controller: %s", exc.message)
        self._last_failure = {uid: at for uid, at in self._last_failure.items() if uid in running}
        self._refused = {uid: entry for uid, entry in self._refused.items() if uid in running}

    # -- Job controller -------------------------------------------------------------------------

    def _pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The Job's pods as they are now (a pod this pass made for another Job is no concern of this one;
        this Job's own new pods are made after its last read)."""
        uid = job["metadata"]["uid"]
        found = (self.store.peek("pods", ns, name) for ns, name in self._pods_by_owner.get(uid, ()))
        return [p for p in found if p is not None and (controller_of(p) or {}).get("uid") == uid]

    def _policy_action(self, job: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
        """The podFailurePolicy action for a failed pod ("Count" when no rule matches) and its message."""
        rules = ((job["spec"].get("podFailurePolicy") or {}).get("rules")) or []
        statuses = (pod.get("status") or {}).get("containerStatuses", []) + (pod.get("status") or {}).get(
            "initContainerStatuses", [])
        for index, rule in enumerate(rules):
            on_codes = rule.get("onExitCodes")
            if on_codes:
                for state in statuses:
                    terminated = (state.get("state") or {}).get("terminated")
                    if not terminated or (on_codes.get("containerName") not in (None, state["name"])):
                        continue
                    code = terminated.get("exitCode", 0)
                    hit = code in on_codes["values"] if on_codes["operator"] == "In" else (
                        code != 0 and code not in on_codes["values"])
                    if hit:
                        return rule["action"], (
                            f"Container {state['name']} for pod {pod['metadata']['namespace']}/"
                            f"{pod['metadata']['name']} failed with exit code {code} matching {rule['action']} "
                            f"rule at index {index}")
            for wanted in rule.get("onPodConditions") or []:
                for cond in (pod.get("status") or {}).get("conditions") or []:
                    if cond.get("type") == wanted["type"] and cond.get("status") == wanted.get("status", "True"):
                        return rule["action"], (
                            f"Pod {pod['metadata']['namespace']}/{pod['metadata']['name']} has condition "
                            f"{wanted['type']} matching {rule['action']} rule at index {index}")
        return "Count", ""

    def _set_condition(self, status: dict[str, Any], kind: str, value: str, reason: str, message: str) -> None:
        conditions = status.setdefault("conditions", [])
        moment = timestamp()
        for cond in conditions:
            if cond["type"] == kind:
                if cond["status"] != value:
                    cond.update(status=value, reason=reason, message=message, lastTransitionTime=moment,
                                lastProbeTime=moment)
                return
        conditions.append({"type": kind, "status": value, "reason": reason, "message": message,
                           "lastProbeTime": moment, "lastTransitionTime": moment})

    def _job(self, job: dict[str, Any]) -> None:
        """One Job controller sync: count finished pods, decide the outcome, keep the pods wanted, write status."""
        if condition(job, "Complete") or condition(job, "Failed"):
            return
        status = dict(job.get("status") or {})
        failed_now = self._count_finished_pods(job, status)
        live = self._pods_of(job)
        active = [p for p in live if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        terminating = [p for p in live if p["metadata"].get("deletionTimestamp")
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        self._judge(job, status, failed_now)
        active, terminating = self._manage_pods(job, status, active, terminating)
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if condition(p, "Ready"))
        status["terminating"] = len(terminating)
        status.setdefault("uncountedTerminatedPods", {})
        if not terminating:
            self._finish(job, status)
        for key in ("succeeded", "failed"):
            if not status.get(key):
                status.pop(key, None)
        self._write_status(job, status)

    def _count_finished_pods(self, job: dict[str, Any], status: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
        """Count the Job's pods that finished since the last pass (dropping their tracking finalizer) and
        return the failed ones with their podFailurePolicy action and message."""
        meta = job["metadata"]
        policy = job["spec"].get("podReplacementPolicy", "TerminatingOrFailed")
        failed_now: list[tuple[dict[str, Any], str, str]] = []
        for pod in self._pods_of(job):
            finalizers = pod["metadata"].get("finalizers") or []
            if JOB_TRACKING_FINALIZER not in finalizers:
                continue
            phase = (pod.get("status") or {}).get("phase")
            deleting = bool(pod["metadata"].get("deletionTimestamp"))
            if phase == "Succeeded":
                status["succeeded"] = status.get("succeeded", 0) + 1
            elif pod["metadata"]["uid"] in self._suspended_pods:
                self._suspended_pods.discard(pod["metadata"]["uid"])  # stopped by suspension: not a failure
            elif phase == "Failed" or (deleting and policy == "TerminatingOrFailed"):
                action, message = self._policy_action(job, pod)
                failed_now.append((pod, action, message))
                if action != "Ignore":
                    status["failed"] = status.get("failed", 0) + 1
            else:
                continue
            self.store.remove_finalizer("pods", meta["namespace"], pod["metadata"]["name"], JOB_TRACKING_FINALIZER)
        if any(action != "Ignore" for _, action, _ in failed_now):
            self._last_failure[meta["uid"]] = asyncio.get_running_loop().time()
        return failed_now

    def _judge(self, job: dict[str, Any], status: dict[str, Any],
               failed_now: list[tuple[dict[str, Any], str, str]]) -> None:
        """Set the interim FailureTarget (policy, back-off limit, deadline) or SuccessCriteriaMet condition."""
        spec = job["spec"]
        if condition(job, "FailureTarget") or condition(job, "SuccessCriteriaMet"):
            return
        failure: tuple[str, str] | None = None
        fail_job = next((m for _, a, m in failed_now if a == "FailJob"), None)
        if fail_job:
            failure = ("PodFailurePolicy", fail_job)
        elif status.get("failed", 0) > spec.get("backoffLimit", 6):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif spec.get("activeDeadlineSeconds") and status.get("startTime") and not spec.get("suspend"):
            started = parse_time(status["startTime"])
            if now() - started >= timedelta(seconds=spec["activeDeadlineSeconds"]):
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        if failure:
            self._set_condition(status, "FailureTarget", "True", *failure)
            self.events.record(job, "Warning", failure[0], failure[1], "job-controller")
        elif status.get("succeeded", 0) >= _count(spec, "completions"):
            self._set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached",
                                "Reached expected number of succeeded pods")

    def _manage_pods(self, job: dict[str, Any], status: dict[str, Any], active: list[dict[str, Any]],
                     terminating: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Delete the active pods of a finishing, suspended or deleted Job, else create the pods still wanted;
        return the active and terminating pods after that."""
        meta, spec = job["metadata"], job["spec"]
        finishing = condition({"status": status}, "FailureTarget") or condition({"status": status},
                                                                                 "SuccessCriteriaMet")
        if finishing or spec.get("suspend") or meta.get("deletionTimestamp"):
            if spec.get("suspend") and not meta.get("deletionTimestamp") and not finishing:
                self._set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended")
            if not meta.get("deletionTimestamp") or finishing:
                for pod in active:
                    self.store.delete(BY_PLURAL["pods"], meta["namespace"], pod["metadata"]["name"])
                    if not finishing:
                        self._suspended_pods.add(pod["metadata"]["uid"])
                        self.events.record(job, "Normal", "SuccessfulDelete",
                                           f"Deleted pod: {pod['metadata']['name']}", "job-controller")
                return [], terminating + active
            return active, terminating
        suspended = next((c for c in status.get("conditions") or [] if c["type"] == "Suspended"), None)
        if suspended and suspended["status"] == "True":
            self._set_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
            status["startTime"] = timestamp()
        status.setdefault("startTime", timestamp())
        wanted = min(_count(spec, "parallelism"), _count(spec, "completions") - status.get("succeeded", 0))
        blocked = spec.get("podReplacementPolicy", "TerminatingOrFailed") == "Failed" and terminating
        if len(active) < wanted and not blocked and self._backoff_over(job, status):
            active = active + self._create_pods(job, wanted - len(active))
        return active, terminating

    def _create_pods(self, job: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """Create up to `count` pods; the first the API refuses ends the batch with a FailedCreate Event
        and puts the Job's next try after the API back-off (the real controller requeues it rate-limited)."""
        uid = job["metadata"]["uid"]
        refusals, retry_at = self._refused.get(uid, (0, 0.0))
        loop_time = asyncio.get_running_loop().time()
        if loop_time < retry_at:
            return []
        created = []
        for _ in range(count):
            try:
                created.append(self._create_pod(job))
            except ApiError as exc:
                self.events.record(job, "Warning", "FailedCreate", f"Error creating: {exc.message}", "job-controller")
                delay = min(JOB_API_BACKOFF * 2 ** refusals, MAX_JOB_API_BACKOFF)
                self._refused[uid] = (refusals + 1, loop_time + delay)
                return created
        self._refused.pop(uid, None)
        return created

    def _finish(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        """Once no pod is terminating, turn the interim condition into the final Failed or Complete."""
        target = condition({"status": status}, "FailureTarget")
        if target:
            self._set_condition(status, "Failed", "True", target["reason"], target["message"])
        elif condition({"status": status}, "SuccessCriteriaMet"):
            self._set_condition(status, "Complete", "True", "CompletionsReached",
                                "Reached expected number of succeeded pods")
            status["completionTime"] = timestamp()
            self.events.record(job, "Normal", "Completed", "Job completed", "job-controller")

    def _write_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        """Write a changed status to the same Job (not a new one of the same name)."""
        meta = job["metadata"]
        if status == (job.get("status") or {}):
            return
        current = self.store.find("jobs", meta["namespace"], meta["name"])
        if current is None or current["metadata"]["uid"] != meta["uid"]:
            return
        current["status"] = status
        self.store.update(BY_PLURAL["jobs"], meta["namespace"], meta["name"], current, "status")

    def _backoff_over(self, job: dict[str, Any], status: dict[str, Any]) -> bool:
        failures = status.get("failed", 0)
        last = self._last_failure.get(job["metadata"]["uid"])
        if not failures or last is None:
            return True
        delay = min(self.backoff_base * 2 ** (failures - 1), self.backoff_max)
        return asyncio.get_running_loop().time() - last >= delay

    def _create_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        meta = job["metadata"]
        template = job["spec"]["template"]
        pod_meta = dict(template.get("metadata") or {})
        pod_meta.pop("name", None)
        pod = {
            "metadata": {
                **pod_meta,
                "generateName": f"{meta['name']}-",
                "labels": dict(pod_meta.get("labels") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                     "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
                "finalizers": [JOB_TRACKING_FINALIZER],
            },
            "spec": template["spec"],
        }
        created = self.store.create(BY_PLURAL["pods"], meta["namespace"], pod)
        self.events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                           "job-controller")
        return created

    def _collect_unscheduled_terminating(self) -> None:
        """The pod garbage collector's `gcUnscheduledTerminating` (pkg/controller/podgc): a pod being deleted
        that no node ever took has no kubelet to finish it, so it is marked Failed (which lets the Job
        controller count it and drop its tracking finalizer) and force-deleted.
        Like the real collector it acts every `pod_gc_period` seconds (gcCheckPeriod, 20 s), not at once."""
        if now() < self._next_pod_gc:
            return
        self._next_pod_gc = now() + timedelta(seconds=self.pod_gc_period)
        for pod in self.store.scan("pods"):
            meta = pod["metadata"]
            if not meta.get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
                continue
            if meta.get("deletionGracePeriodSeconds") == 0 and (pod.get("status") or {}).get("phase") == "Failed":
                continue  # collected already: the store ends the delete once the finalizers are gone
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                failed = copy.deepcopy(pod)
                failed.setdefault("status", {})["phase"] = "Failed"
                self.store.update(BY_PLURAL["pods"], meta["namespace"], meta["name"], failed, subresource="status")
            self.store.delete(BY_PLURAL["pods"], meta["namespace"], meta["name"], grace_period=0)

    def _release_orphaned_pods(self) -> None:
        """Drop the job-tracking finalizer of pods whose Job is gone (or that were orphaned)."""
        for pod in self.store.scan("pods"):
            if JOB_TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or []):
                continue
            owner = controller_of(pod)
            job = self.store.find("jobs", pod["metadata"]["namespace"], owner["name"]) if owner else None
            if job is None or job["metadata"]["uid"] != (owner or {}).get("uid"):
                self.store.remove_finalizer("pods", pod["metadata"]["namespace"], pod["metadata"]["name"],
                                            JOB_TRACKING_FINALIZER)

    # -- garbage collector ----------------------------------------------------------------------

    def _garbage_collect(self) -> None:
        """One garbage-collector pass: collect dependents whose owners are gone or deleting in the foreground,
        then finish the owners waiting on an orphan or foreground finalizer (skipped when nothing changed
        since the last pass; a pass cut short by an error is run again)."""
        if not self._ownership_changed:
            return
        self._ownership_changed = False
        try:
            self._collect_garbage()
        except Exception:
            self._ownership_changed = True
            raise

    def _collect_garbage(self) -> None:
        everything = [(plural, obj) for plural in BY_PLURAL if plural != "events" for obj in self.store.scan(plural)]
        live = {obj["metadata"]["uid"]: obj for _, obj in everything}
        dependents: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for plural, obj in everything:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref["uid"], []).append((plural, obj))
        for plural, obj in everything:
            meta = obj["metadata"]
            if meta.get("ownerReferences") and not meta.get("deletionTimestamp"):
                self._collect_dependent(plural, obj, live)
        for plural, obj in everything:
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            finalizers = meta.get("finalizers") or []
            if ORPHAN_FINALIZER in finalizers:
                self._orphan_dependents(plural, obj, dependents.get(meta["uid"], []))
            elif FOREGROUND_FINALIZER in finalizers:
                self._finish_foreground_deletion(plural, obj, dependents.get(meta["uid"], []))

    def _collect_dependent(self, plural: str, obj: dict[str, Any], live: dict[str, dict[str, Any]]) -> None:
        """Delete a dependent all of whose owners are gone (or deleting in the foreground); drop the references
        to owners that are gone when others remain."""
        meta = obj["metadata"]
        namespace = meta.get("namespace", "")
        refs = meta["ownerReferences"]
        owners = [live.get(r["uid"]) for r in refs]
        if all(o is None for o in owners):
            self.store.delete(BY_PLURAL[plural], namespace, meta["name"], propagation="Background")
            return
        foreground = any(o is not None and FOREGROUND_FINALIZER in (o["metadata"].get("finalizers") or [])
                         and o["metadata"].get("deletionTimestamp") for o in owners)
        if foreground and all(o is None or o["metadata"].get("deletionTimestamp") for o in owners):
            self.store.delete(BY_PLURAL[plural], namespace, meta["name"], propagation="Foreground")
            return
        if any(o is None for o in owners):
            current = self.store.find(plural, namespace, meta["name"])
            if current is not None:
                current["metadata"]["ownerReferences"] = [r for r, o in zip(refs, owners, strict=True) if o is not None]
                self.store.update(BY_PLURAL[plural], namespace, meta["name"], current)

    def _orphan_dependents(self, plural: str, owner: dict[str, Any], dependents: list[tuple[str, dict[str, Any]]]) -> None:
        """Remove the owner's reference from every dependent, then the owner's orphan finalizer."""
        meta = owner["metadata"]
        for dep_plural, dep in dependents:
            current = self.store.find(dep_plural, dep["metadata"].get("namespace", ""), dep["metadata"]["name"])
            if current is None:
                continue
            current["metadata"]["ownerReferences"] = [
                r for r in current["metadata"].get("ownerReferences") or [] if r["uid"] != meta["uid"]]
            if not current["metadata"]["ownerReferences"]:
                del current["metadata"]["ownerReferences"]
            self.store.update(BY_PLURAL[dep_plural], current["metadata"].get("namespace", ""),
                              current["metadata"]["name"], current)
        self.store.remove_finalizer(plural, meta.get("namespace", ""), meta["name"], ORPHAN_FINALIZER)

    def _finish_foreground_deletion(self, plural: str, owner: dict[str, Any],
                                    dependents: list[tuple[str, dict[str, Any]]]) -> None:
        """Remove the foreground finalizer once no dependent with `blockOwnerDeletion` remains."""
        meta = owner["metadata"]
        blocking = [
            d for dep_plural, d in dependents
            if any(r["uid"] == meta["uid"] and r.get("blockOwnerDeletion")
                   for r in d["metadata"].get("ownerReferences") or [])
            and self.store.find(dep_plural, d["metadata"].get("namespace", ""), d["metadata"]["name"]) is not None
        ]
        if not blocking:
            self.store.remove_finalizer(plural, meta.get("namespace", ""), meta["name"], FOREGROUND_FINALIZER)

    # -- TTL after finished, PVCs, namespaces, events -----------------------------------------------

    def _ttl(self) -> None:
        for job in self.store.scan("jobs"):
            ttl = job["spec"].get("ttlSecondsAfterFinished")
            if ttl is None or job["metadata"].get("deletionTimestamp"):
                continue
            finished = condition(job, "Complete") or condition(job, "Failed")
            if finished and now() >= parse_time(finished["lastTransitionTime"]) + timedelta(seconds=ttl):
                self.store.delete(BY_PLURAL["jobs"], job["metadata"]["namespace"], job["metadata"]["name"],
                                  propagation="Background")

    def _pvcs(self) -> None:
        in_use: set[tuple[str, str]] = set()
        for pod in self.store.scan("pods"):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for volume in pod["spec"].get("volumes") or []:
                claim = volume.get("persistentVolumeClaim")
                if claim:
                    in_use.add((pod["metadata"]["namespace"], claim["claimName"]))
        for pvc in self.store.scan("persistentvolumeclaims"):
            meta = pvc["metadata"]
            key = (meta["namespace"], meta["name"])
            if meta.get("deletionTimestamp"):
                if key not in in_use:
                    self.store.remove_finalizer("persistentvolumeclaims", *key, PVC_PROTECTION_FINALIZER)
                continue
            if (pvc.get("status") or {}).get("phase") == "Pending":
                self._bind_claim(pvc)
        storage.reclaim(self.store)

    def _bind_claim(self, pvc: dict[str, Any]) -> None:
        """The PV controller and provisioners for a Pending claim: bind an Immediate class's claim now, a
        WaitForFirstConsumer one once the scheduler has chosen its node (or say that it waits)."""
        storage_class = storage.claim_class(self.store, pvc)
        selected = (pvc["metadata"].get("annotations") or {}).get(storage.SELECTED_NODE_ANNOTATION)
        if not pvc["spec"].get("storageClassName"):
            self._report_claim(pvc, "Normal", "FailedBinding",
                               "no persistent volumes available for this claim and no storage class is set")
        elif storage_class is None:
            self._report_claim(pvc, "Warning", "ProvisioningFailed",
                               f'storageclass.storage.k8s.io "{pvc["spec"]["storageClassName"]}" not found')
        elif storage_class.get("volumeBindingMode") != "WaitForFirstConsumer":
            self._provision(pvc, None)
        elif selected:
            node = self.store.find("nodes", "", selected)
            if node is not None:
                self._provision(pvc, node)
        else:
            self._report_claim(pvc, "Normal", "WaitForFirstConsumer", storage.WAITING_MESSAGE)

    def _provision(self, pvc: dict[str, Any], node: dict[str, Any] | None) -> None:
        if self.on_pvc_bound:
            self.on_pvc_bound(pvc)
        storage.provision(self.store, self.events, pvc, node)

    def _report_claim(self, pvc: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """One event per claim and reason, as the PV controller's recorder would aggregate them."""
        key = (pvc["metadata"]["uid"], reason)
        if key not in self._claim_reports:
            self._claim_reports.add(key)
            self.events.record(pvc, kind, reason, message, storage.PV_CONTROLLER)

    def _quotas(self) -> None:
        """The resource quota controller's sync: recount what each quota's namespace uses."""
        moment = now()
        for quota in self.store.scan("resourcequotas"):
            meta = quota["metadata"]
            status = quota_status(quota, self.store, moment)
            if status != quota.get("status"):
                current = copy.deepcopy(quota)
                current["status"] = status
                self.store.update(BY_PLURAL["resourcequotas"], meta["namespace"], meta["name"], current, "status")

    def _namespaces(self) -> None:
        for namespace in self.store.scan("namespaces"):
            if not namespace["metadata"].get("deletionTimestamp"):
                ensure_default_account(self.store, namespace["metadata"]["name"])
                continue
            name = namespace["metadata"]["name"]
            remaining = 0
            for plural, rtype in BY_PLURAL.items():
                if not rtype.namespaced:
                    continue
                for obj in self.store.scan(plural, name):
                    remaining += 1
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.store.delete(rtype, name, obj["metadata"]["name"], propagation="Background")
            if not remaining:
                self.store.finalize_namespace(name)

    def _expire_events(self) -> None:
        if now() < self._next_event_expiry:
            return
        self._next_event_expiry = now() + timedelta(minutes=1)
        cutoff = now() - EVENT_TTL
        for event in self.store.scan("events"):
            if parse_time(event["metadata"]["creationTimestamp"]) < cutoff:
                self.store.delete(BY_PLURAL["events"], event["metadata"]["namespace"], event["metadata"]["name"])

