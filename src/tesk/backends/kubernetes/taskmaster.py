"""`tesk taskmaster`: runs one task inside the cluster with the shared runner.

`KubernetesRuntime` does each step as Kubernetes objects (PVC, inputs filer Job, one Job per executor,
outputs filer Job) and learns how they end from ONE label-selected list+watch of the task's pods
(`informer.Informer`, the loop the API's controller uses too), never by polling. Every step is
create-or-adopt by deterministic name, so a taskmaster pod that died and was restarted by its Job
picks up where it stopped: finished executors are not run again.

`ResultReporter` publishes the task's log (executor results, bounded stdout/stderr tails, outputs,
system logs) and state in the task's result ConfigMap, which the API's controller watches. To keep
the request count low it writes when something new is worth showing, at most every few seconds, and
always at the end; INITIALIZING and RUNNING need no write at all (the controller sees the pods).

Resource use: while an executor runs, `usage.UsageSampler` samples its container from the kubelet's
Summary API through the node proxy (optional: `usage_sample_seconds`, and a grant deployments add).

Cancel (the protocol is in `cancel`): the API labels this pod; the watch (or the Downward API labels
file) shows it, the runner is aborted, the running Job is deleted with foreground propagation, and
the task ends CANCELED.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes import manifests
from tesk.backends.kubernetes.cancel import read_labels_file, requested_by
from tesk.backends.kubernetes.informer import KEEP_META, Cache, Informer
from tesk.backends.kubernetes.kube import Conflict, Kube, KubeError, Obj
from tesk.backends.kubernetes.labels import Role
from tesk.backends.kubernetes.usage import Usage, UsageSampler
from tesk.config.kubernetes import KubernetesSettings
from tesk.backends.kubernetes.state import (
    DEADLINE_EXCEEDED,
    Graces,
    condition,
    decode_result,
    disrupted,
    encode_result,
    failed_create,
    idle_since,
    parse_time,
    pod_blocker,
    terminated,
    unschedulable,
)
from tesk.failures import FailureReason, refusal_reason
from tesk.filer.report import REPORT_BYTES
from tesk.limits import TimeLimits
from tesk.models import OutputFileLog, State, Task, TaskLog
from tesk.runner import ExecutorOutcome, Note, TaskFailure, TaskRunner, describe_executor

log = logging.getLogger("tesk.taskmaster")

PUBLISH_INTERVAL = 5.0
REPORT_LOG_BYTES = 4 * 1024 * 1024
"""How much of a filer's log end is searched for its report when its termination message has none."""
NO_POD_GRACE = 60.0
"""A Job that never had a pod is read after this long: whether it failed or was deleted (a refused pod
create shows only in its Events, read after the FailedCreate grace)."""
EVENT_READ_INTERVAL = 5.0
"""Seconds between reads of a waiting Job's or unschedulable pod's Events."""
PODS_GONE_CHECK = 3.0
"""How often a Job whose pods have all gone is read, until a new pod appears or the Job says why."""
DEADLINE_SLACK = 5.0
"""Seconds past an executor's time limit after which the taskmaster stops it itself: the Job
controller's deadline deletes the pod with its grace period, which a command ignoring SIGTERM sits out."""
KILLED = 128 + 9
"""The exit code given to an executor stopped at its time limit whose container's own end was not seen."""


class DeadlineExceeded(TaskFailure):
    """The step's Job ran past its activeDeadlineSeconds."""


class TaskPods:
    """The task's pods, kept current by the wing's one list+watch loop (`informer.Informer`).

    The list comes first, so a restarted taskmaster knows every earlier pod of its task before it
    decides anything; the loop's thread wakes the event loop on each change.
    """

    def __init__(self, kube: Kube, task_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.cache = Cache(("Pod",), keep_meta=(*KEEP_META, "ownerReferences"))
        self.informer = Informer(kube, "Pod", lb.selector({lb.TASK_ID: task_id}), self.cache,
                                 lambda _ids: self._notify())
        self.synced = self.informer.synced
        self.changed = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    def _notify(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.changed.set()
        for listener in self.listeners:
            listener()

    def get(self, name: str) -> Obj | None:
        return self.cache.get("Pod", name)

    def of_job(self, job: str) -> list[Obj]:
        pods = [p for p in self.cache.all("Pod")
                if any(ref.get("name") == job for ref in p["metadata"].get("ownerReferences") or [])]
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def volume_node(self) -> str | None:
        """The node the task's first scheduled step pod ran on (its volume is there), if any yet.

        Read from the watched pods, so a restarted taskmaster finds it too."""
        steps = [p for p in self.cache.all("Pod") if (p.get("spec") or {}).get("nodeName")
                 and (p["metadata"].get("labels") or {}).get(lb.ROLE) != Role.TASKMASTER.value]
        first = min(steps, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)
        return str(first["spec"]["nodeName"]) if first else None

    async def changes(self, timeout: float) -> None:
        """Return on the next change, or after `timeout` (grace times are checked on each wake-up)."""
        self.changed.clear()
        try:
            # Not wait_for: on Python 3.11 it swallows a cancel (our abort) that lands in the same
            # loop pass as the change that woke it, and a cancelled executor would then run on.
            async with asyncio.timeout(timeout):
                await self.changed.wait()
        except TimeoutError:
            pass


class KubernetesRuntime:
    """The runner's `Runtime`: each step a Kubernetes object, owned by the taskmaster Job."""

    def __init__(self, kube: Kube, settings: KubernetesSettings, owner: manifests.Owner, watch: TaskPods,
                 abort: Any) -> None:
        self.kube, self.settings, self.owner, self.watch = kube, settings, owner, watch
        self.abort = abort
        self.has_volume = False
        self.usage = UsageSampler(kube, settings.usage_sample_seconds) if settings.usage_sample_seconds > 0 else None

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run a blocking request in a thread. A cancel (abort) waits for the request to finish first:
        a create still in flight would otherwise land after `release` cleaned up, and run on."""
        request = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            await asyncio.wait([request])
            raise

    async def _create(self, body: Obj) -> None:
        """Create, or adopt what a previous taskmaster of this task made (same deterministic name)."""
        try:
            await self._call(self.kube.create, body)
        except Conflict:
            log.info("%s %s already exists (made before a restart): adopting it", body["kind"],
                     body["metadata"]["name"])
        except KubeError as exc:
            raise TaskFailure(f"Kubernetes refused {body['kind']} {body['metadata']['name']}: {exc}",
                              refusal_reason(exc.status) if exc.status else None) from None

    def _placed(self, body: Obj) -> Obj:
        """Pin a step to the node of the task's earlier steps while they share a one-node volume (R9)."""
        if not self.has_volume or self.settings.access_mode == "ReadWriteMany":
            return body
        node = self.watch.volume_node()
        return manifests.pin_to_node(body, node) if node else body

    async def prepare(self, task: Task, note: Note) -> None:
        if manifests.needs_volume(task):
            await self._create(manifests.data_pvc(self.settings, task, self.owner))
            self.has_volume = True

    async def stage_inputs(self, task: Task, note: Note) -> None:
        if task.inputs:
            await self._filer(task, "inputs", note)

    async def stage_outputs(self, task: Task, note: Note) -> list[OutputFileLog]:
        if not task.outputs:
            return []
        result = await self._filer(task, "outputs", note)
        return [OutputFileLog.model_validate(o) for o in result.get("outputs") or []]

    async def _filer(self, task: Task, direction: Literal["inputs", "outputs"], note: Note) -> dict[str, Any]:
        body = self._placed(manifests.filer_job(self.settings, task, direction, self.owner))
        name = body["metadata"]["name"]
        await self._create(body)
        pod, term = await self._wait(name, "filer", self.settings.backoff_limit("FILER"),
                                     f"the {direction} filer")
        report = await self._report(pod, term, f"the {direction} filer", direction == "outputs")
        error = report.get("error")
        for line in report.get("system_logs") or []:
            if line != error:
                note(line)
        if term.get("exitCode") != 0:
            error = error or (term.get("message") or "").strip()[-500:] or f"exit code {term.get('exitCode')}"
            raise TaskFailure(f"staging {direction} failed: {error}")
        return report

    async def _report(self, pod: Obj, term: Obj, what: str, needed: bool) -> dict[str, Any]:
        """A filer's report, from its termination message (`tesk.filer.report`); one too big for that is
        read back from the end of its log, exactly its size. A filer that died before writing one
        leaves the end of its log there (FallbackToLogsOnError), which may still hold it; one that
        succeeded without (its message could not be written) is looked for at the end of its log.
        A `needed` report (the outputs') that does not come back whole fails the step: outputs are
        never dropped unsaid."""
        name = pod["metadata"]["name"]
        stream = "Stdout" if self.settings.split_log_streams is True else None
        report = _last_json(term.get("message") or "")
        size = (report or {}).get(REPORT_BYTES)
        if isinstance(size, int):
            text = await self._call(self.kube.read_log, name, "filer", size + 1, stream)
            report = _last_json(text)
            if report is None or len(text.strip().encode()) != size:
                raise TaskFailure(f"{what}'s report ({size} bytes) could not be read back whole from the log of "
                                  f"pod {name}")
        elif report is None and term.get("exitCode") == 0 and needed:
            report = _last_json(await self._call(self.kube.read_log, name, "filer", REPORT_LOG_BYTES, stream))
            if report is None:
                raise TaskFailure(f"{what} ended without a report, neither in its termination message nor at the "
                                  f"end of the log of pod {name}")
        return report or {}

    async def run_executor(self, task: Task, index: int, note: Note, time_limit: float | None) -> ExecutorOutcome:
        """Run the executor's Job; a `time_limit` is its activeDeadlineSeconds, and the taskmaster
        stops it itself `DEADLINE_SLACK` later should the Job controller's deletion still be waiting."""
        body = self._placed(manifests.executor_job(self.settings, task, index, self.owner, time_limit))
        name = body["metadata"]["name"]
        created = datetime.now(UTC)
        await self._create(body)
        what = describe_executor(task, index)
        usage: dict[str, Usage] = {}
        sampling = asyncio.create_task(self.usage.follow(f"task {task.id}: {what}", lambda: self.watch.of_job(name),
                                                         "executor", usage)) if self.usage else None
        try:
            async with asyncio.timeout(None if time_limit is None else time_limit + DEADLINE_SLACK):
                pod, term = await self._wait(name, "executor", self.settings.backoff_limit("EXECUTOR"), what)
        except (TimeoutError, DeadlineExceeded):
            return await self._stopped_at_limit(name, what, created, usage)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_job(name, what))
            raise
        finally:
            if sampling is not None:
                sampling.cancel()
        stdout, stderr = await self._logs(pod["metadata"]["name"])
        start = parse_time(term.get("startedAt")) or datetime.now(UTC)
        timed_out = time_limit is not None and term.get("exitCode") != 0 and await self._past_deadline(name)
        used = usage.get(pod["metadata"]["name"]) or Usage()
        return ExecutorOutcome(exit_code=int(term.get("exitCode") or 0), start_time=start,
                               end_time=parse_time(term.get("finishedAt")) or start, stdout=stdout, stderr=stderr,
                               oom_killed=term.get("reason") == "OOMKilled", timed_out=timed_out,
                               peak_memory_bytes=used.peak_memory_bytes, cpu_seconds=used.cpu_seconds)

    async def _past_deadline(self, job: str) -> bool:
        """Whether the Job failed for its activeDeadlineSeconds (its pod was deleted at the deadline)."""
        current = await self._call(self.kube.get, "Job", job) or {}
        cond = condition(current, "Failed") or condition(current, "FailureTarget") or {}
        return cond.get("reason") == DEADLINE_EXCEEDED

    async def _stopped_at_limit(self, job: str, what: str, created: datetime,
                                usage: dict[str, Usage]) -> ExecutorOutcome:
        """The outcome of an executor past its time limit whose pod had not ended yet (or was gone):
        its log and use as far as it got, then the Job and pods deleted at once."""
        pods = self.watch.of_job(job)
        term = terminated(pods[-1], "executor") if pods else None
        stdout, stderr = await self._logs(pods[-1]["metadata"]["name"]) if pods else ("", "")
        await asyncio.shield(self._stop_job(job, what))
        exit_code = int(term.get("exitCode") or KILLED) if term else KILLED
        used = (usage.get(pods[-1]["metadata"]["name"]) if pods else None) or Usage()
        return ExecutorOutcome(exit_code=exit_code, start_time=created, end_time=datetime.now(UTC),
                               stdout=stdout, stderr=stderr, timed_out=True,
                               peak_memory_bytes=used.peak_memory_bytes, cpu_seconds=used.cpu_seconds)

    async def _stop_job(self, name: str, what: str) -> None:
        """Foreground-delete the Job (no replacement pods), then its pods at once: a user command that
        ignores SIGTERM must not run on for the pod's whole grace period after a cancel."""
        log.info("stopping %s: deleting Job %s and its pods", what, name)
        await self._call(self.kube.delete, "Job", name, "Foreground", 0)
        for pod in self.watch.of_job(name):
            await self._call(self.kube.delete, "Pod", pod["metadata"]["name"], "Background", 0)

    async def _logs(self, pod: str) -> tuple[str, str]:
        limit = self.settings.log_tail_bytes
        try:
            if self.settings.split_log_streams is True:
                out = await self._call(self.kube.read_log, pod, "executor", limit, "Stdout")
                err = await self._call(self.kube.read_log, pod, "executor", limit, "Stderr")
                return out, err
            return await self._call(self.kube.read_log, pod, "executor", limit), ""
        except KubeError as exc:
            log.warning("could not read the log of pod %s: %s", pod, exc)
            return "", ""

    async def _wait(self, job: str, container: str, backoff_limit: int, what: str) -> tuple[Obj, Obj]:
        """Wait (on the pod watch) until the Job's pod ends for good; return that pod and its end.

        Raises TaskFailure for what no retry fixes: a pod that cannot start past its grace, or a
        Job that failed or vanished; aborts as PREEMPTED when Kubernetes evicted or preempted the pod.
        A disrupted pod may vanish without ever showing phase Failed (evicted before it was bound or
        started, or force-deleted), so its `DisruptionTarget` condition alone is enough, and a Job
        whose pods are all gone is read again every few seconds rather than once after a minute.
        """
        next_job_check = time.monotonic() + NO_POD_GRACE
        had_pods = False
        graces = Graces.of(self.settings)
        events: dict[str, list[Obj]] = {}
        events_read_at = 0.0
        started = datetime.now(UTC)
        while True:
            pods = self.watch.of_job(job)
            failed = []
            for pod in pods:
                phase = (pod.get("status") or {}).get("phase")
                term = terminated(pod, container)
                if phase == "Succeeded" and term:
                    return pod, term
                reason = disrupted(pod)
                if reason:
                    await self._preempted(what, reason, reason.reason)
                if phase == "Failed":
                    if term is None:
                        status = pod.get("status") or {}
                        raise TaskFailure(f"{what}: pod {pod['metadata']['name']} failed before its container ran "
                                          f"({status.get('reason') or 'Failed'}: {status.get('message') or ''})",
                                          FailureReason.EVICTED if status.get("reason") == "Evicted" else None)
                    failed.append((pod, term))
                blocker = pod_blocker(pod, datetime.now(UTC), graces, events.get(pod["metadata"]["name"]))
                if blocker and unschedulable(pod) and time.monotonic() - events_read_at > 1.0:
                    events_read_at = 0.0  # one fresh look at what the autoscaler said, before giving up
                elif blocker:
                    raise TaskFailure(f"{what} could not start: {blocker}", blocker.reason)
            if len(failed) > backoff_limit:
                return failed[-1]
            idle = idle_since(started, pods)
            idle_seconds = (datetime.now(UTC) - idle).total_seconds() if idle else 0.0
            # Events say what no object shows: a pod create refused (FailedCreate on the Job, no
            # condition ever) or the autoscaler's word on an unschedulable pod. Read only then.
            waiting = [p["metadata"]["name"] for p in pods
                       if (p.get("status") or {}).get("phase") in (None, "Pending") and unschedulable(p)]
            if idle is not None and idle_seconds >= graces.failed_create:
                waiting.append(job)
            if waiting and time.monotonic() - events_read_at >= EVENT_READ_INTERVAL:
                events_read_at = time.monotonic()
                try:
                    events = {name: await self._call(self.kube.events_of, "Job" if name == job else "Pod", name)
                              for name in waiting}
                except KubeError as exc:
                    log.warning("%s: could not read the Events of %s (%s)", what, ", ".join(waiting), exc)
                # only refusals since the Job went idle (event times have whole seconds)
                refused = failed_create(job, idle_seconds, events.get(job, []), graces,
                                        idle - timedelta(seconds=1)) if idle else None
                if refused:
                    raise TaskFailure(f"{what} could not start: {refused}", refused.reason)
                continue
            if pods:
                had_pods = True
            elif had_pods:
                had_pods = False
                next_job_check = min(next_job_check, time.monotonic() + PODS_GONE_CHECK)
            if not pods and time.monotonic() >= next_job_check:
                next_job_check = time.monotonic() + PODS_GONE_CHECK
                await self._check_job(job, what)
            await self.watch.changes(timeout=1.0)

    async def _preempted(self, what: str, reason: str, failure: FailureReason | None = None) -> None:
        """End the task as PREEMPTED, with the pod's disruption as Preempted or Evicted (None: the pod
        and its DisruptionTarget are gone, and PREEMPTED's own reason stands); returns only through
        the cancel that the abort sends."""
        self.abort(State.PREEMPTED, f"{what} was stopped by Kubernetes ({reason})", failure)
        await asyncio.Event().wait()

    async def _check_job(self, job: str, what: str) -> None:
        """Read a Job that has no pod: raise (or abort) if it has failed or is gone, else return."""
        current = await self._call(self.kube.get, "Job", job)
        if current is None:
            raise TaskFailure(f"{what}: its Job {job} was deleted by someone else")
        for cond in (current.get("status") or {}).get("conditions") or []:
            if cond.get("type") in ("Failed", "FailureTarget") and cond.get("status") == "True":
                message = f"{cond.get('reason')}: {cond.get('message')}"
                if cond.get("reason") == "PodFailurePolicy" and "DisruptionTarget" in str(cond.get("message")):
                    await self._preempted(what, message)
                if cond.get("reason") == DEADLINE_EXCEEDED:
                    raise DeadlineExceeded(f"{what}: Job {job} failed: {message}", FailureReason.TIME_LIMIT_EXCEEDED)
                raise TaskFailure(f"{what}: Job {job} failed: {message}")

    async def release(self, task: Task, final_state: State) -> None:
        """Child Jobs first (their pods hold the PVC), then the PVC; the rest goes with the Job's TTL."""
        selector = lb.selector({lb.TASK_ID: task.id or ""}) + f",{lb.ROLE}!={Role.TASKMASTER.value}"
        stopped = final_state in (State.CANCELED, State.SYSTEM_ERROR, State.PREEMPTED)
        try:
            if self.has_volume or stopped:
                await self._call(self.kube.delete_collection, "Job", selector, "Background")
            if stopped:  # a Job created just as the task was stopped may already have a pod: no grace
                await self._call(self.kube.delete_collection, "Pod", selector, "Background", 0)
            if self.has_volume:
                await self._call(self.kube.delete, "PersistentVolumeClaim",
                                 lb.child_name(task.id or "", Role.DATA), "Background")
        except KubeError as exc:
            log.error("releasing the task's Jobs and PVC failed (%s); they go when the taskmaster Job "
                      "expires", exc)


class ResultReporter:
    """The runner's `Reporter`: the result ConfigMap, created on first write, merge-patched after."""

    def __init__(self, kube: Kube, task_id: str, owner: manifests.Owner, interval: float = PUBLISH_INTERVAL) -> None:
        self.kube, self.task_id, self.owner, self.interval = kube, task_id, owner, interval
        self.cancelled = False
        self._created = False
        self._published = (-1, -1)
        self._last = time.monotonic()  # the first write waits an interval too: short tasks write once

    async def update(self, state: State, log: TaskLog) -> bool:
        if self.cancelled:
            return False
        progress = (len(log.logs), len(log.system_logs or []))
        if progress != self._published and time.monotonic() - self._last >= self.interval and log.logs:
            await self._publish(state, log)
        return not self.cancelled

    async def finish(self, state: State, log: TaskLog) -> None:
        await self._publish(state, log)

    async def _publish(self, state: State, log: TaskLog) -> None:
        data = encode_result(state, log)
        self._published = (len(log.logs), len(log.system_logs or []))
        self._last = time.monotonic()
        await asyncio.to_thread(self._write, data)

    def _write(self, data: dict[str, str]) -> None:
        name = lb.child_name(self.task_id, Role.RESULT)
        if not self._created:
            try:
                self.kube.create(manifests.result_configmap(self.task_id, self.owner, data))
                self._created = True
                return
            except Conflict:
                self._created = True
        self.kube.patch("ConfigMap", name, {"data": data})


def _last_json(text: str) -> dict[str, Any] | None:
    """The filer's report: the last line of its output that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


async def run_taskmaster(kube: Kube, settings: KubernetesSettings, task_id: str, spec: Path,
                         labels_file: Path | None, pod_name: str | None,
                         default_time_limit: int | None = None) -> State | None:
    """Run (or resume) the task; the final state, or None when a previous run had already finished it.

    The task's time limits (`tesk.limits`, with the server's default) count from this taskmaster's
    start: one restarted after a crash counts afresh, and its Job's activeDeadlineSeconds (the task's
    limit plus a grace) still bounds the whole."""
    loop = asyncio.get_running_loop()
    watch = TaskPods(kube, task_id, loop)
    watch.start()
    log.info("task %s: taskmaster %s starting", task_id, pod_name)
    try:
        await asyncio.to_thread(watch.synced.wait, 30)
        log.info("task %s: watching its pods", task_id)
        me = watch.get(pod_name or "")
        owner = _owner_from_pod(me) or await _owner_from_job(kube, task_id)
        others = [p for p in watch.of_job(task_id) if p["metadata"]["name"] != pod_name]
        if others:  # a restart: a previous taskmaster may have finished the task already
            cm = await asyncio.to_thread(kube.get, "ConfigMap", lb.child_name(task_id, Role.RESULT))
            done = decode_result((cm or {}).get("data"))
            if done is not None and done[0].is_terminal:
                log.info("task %s already ended %s in an earlier taskmaster pod", task_id, done[0].value)
                return None
        task = await _read_spec(kube, task_id, spec)
        log.info("task %s: %d executor(s), running", task_id, len(task.executors))
        reporter = ResultReporter(kube, task_id, owner)
        runner: TaskRunner | None = None

        def check_cancel() -> None:
            pod = watch.get(pod_name or "") or {}
            labels = dict(pod.get("metadata", {}).get("labels") or {})
            annotations = dict(pod.get("metadata", {}).get("annotations") or {})
            if labels_file is not None:
                labels |= read_labels_file(labels_file)
                annotations |= read_labels_file(labels_file.with_name("annotations"))
            by = requested_by(labels, annotations)
            if by is not None and not reporter.cancelled:
                reporter.cancelled = True
                log.info("task %s: cancel requested by %s", task_id, by)
                if runner is not None:
                    runner.abort(State.CANCELED, f"cancelled by {by}")

        def abort(state: State, reason: str, failure: FailureReason | None = None) -> None:
            if runner is not None:
                runner.abort(state, reason, failure)

        runtime = KubernetesRuntime(kube, settings, owner, watch, abort)
        runner = TaskRunner(task, runtime, reporter, limits=TimeLimits.of(task, default_time_limit))
        watch.listeners.append(check_cancel)
        check_cancel()

        async def poll_labels_file() -> None:
            while True:  # the Downward API file: a second signal that needs no API call
                await asyncio.sleep(1)
                check_cancel()

        poller = asyncio.create_task(poll_labels_file())
        try:
            return await runner.run()
        finally:
            poller.cancel()
    finally:
        watch.stop()


async def _read_spec(kube: Kube, task_id: str, spec: Path) -> Task:
    """The task spec from its file, or from the spec ConfigMap when the (optional) volume was mounted
    before the API had created it."""
    try:
        if spec.exists():
            return manifests.decode_spec(spec.read_bytes())
        cm = await asyncio.to_thread(kube.get, "ConfigMap", lb.child_name(task_id, Role.SPEC))
        data = ((cm or {}).get("binaryData") or {}).get(spec.name)
        if data is None:
            raise OSError(f"neither {spec} nor the spec ConfigMap {lb.child_name(task_id, Role.SPEC)} holds it")
        return manifests.decode_spec(base64.b64decode(data))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"tesk taskmaster: cannot read the task spec of task {task_id}: {exc}") from None


def _owner_from_pod(pod: Obj | None) -> manifests.Owner | None:
    meta = (pod or {}).get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return manifests.Owner.of(ref["name"], ref["uid"], meta.get("labels"))
    return None


async def _owner_from_job(kube: Kube, task_id: str) -> manifests.Owner:
    job = await asyncio.to_thread(kube.get, "Job", task_id)
    if job is None:
        raise SystemExit(f"tesk taskmaster: the taskmaster Job {task_id} does not exist")
    return manifests.Owner.of(job["metadata"]["name"], job["metadata"]["uid"], job["metadata"].get("labels"))
