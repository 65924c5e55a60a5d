"""`KubernetesBackend`: submit creates a taskmaster Job and its spec ConfigMap; cancel labels them.

The API writes the task to the store first, then calls `submit`. Two writes reach the cluster: the
taskmaster Job, then the spec ConfigMap owned by it (so deleting the Job removes everything). If the
cluster refuses either, whatever was made is deleted and the API answers with the reason; the task
ends SYSTEM_ERROR in the store rather than staying QUEUED. The controller (one list+watch) keeps the
store's state, logs and times in step with the cluster afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tesk.backends import BackendError
from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes import manifests
from tesk.backends.kubernetes.cancel import label_cancel
from tesk.backends.kubernetes.controller import Controller
from tesk.backends.kubernetes.kube import Kube, KubeError, Obj, load_api_client
from tesk.config import KubernetesSettings, TeskConfig
from tesk.limits import TIME_LIMIT_PARAMETERS
from tesk.models import State, Task, TaskLog
from tesk.store import StoredTask, TaskStore
from tesk.telemetry import count_kubernetes_request

log = logging.getLogger("tesk.kubernetes")

PROBE_INTERVAL = 2.0
"""Seconds between looks for a taskmaster pod to ask about split log streams (no request when none)."""


class KubernetesBackend:
    name = "kubernetes"
    backend_parameters: frozenset[str] = TIME_LIMIT_PARAMETERS
    replica_id: str | None = None
    """The cluster runs the tasks: no server replica holds them."""

    @classmethod
    def from_config(cls, config: TeskConfig, store: TaskStore) -> KubernetesBackend:
        """The backend of `tesk serve`: the kubernetes section, a client from its kubeconfig or in-cluster."""
        return cls(store, config.kubernetes, default_time_limit=config.server.task_time_limit_seconds)

    def __init__(self, store: TaskStore, k8s: KubernetesSettings, kube: Kube | None = None, elect: bool = True,
                 default_time_limit: int | None = None) -> None:
        """`default_time_limit`: TESK_TASK_TIME_LIMIT_SECONDS, the limit of a task without its own."""
        self.default_time_limit = default_time_limit
        self.settings = k8s
        self.store = store
        if kube is None:
            kube = Kube(load_api_client(self.settings.kubeconfig, self.settings.context), self.settings.namespace,
                        observe=count_kubernetes_request)
        self.kube = kube
        self._probe: asyncio.Task[None] | None = None
        self.controller = Controller(self.settings, self.kube, store, elect=elect,
                                     tick_seconds=min(2.0, max(0.2, self.settings.unschedulable_grace_seconds / 4)))

    async def start(self) -> None:
        try:
            await self.controller.start()
        except KubeError as exc:
            raise RuntimeError(f"the Kubernetes backend could not start: {exc}") from None
        log.info("kubernetes backend: namespace %s, taskmaster image %s", self.settings.namespace,
                 self.settings.taskmaster_image)
        if self.settings.split_log_streams is None:
            self._probe = asyncio.create_task(self._find_out_log_streams(), name="tesk-log-stream-probe")

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.controller.stop()

    async def _find_out_log_streams(self) -> None:
        """Can this cluster give a container's stdout and stderr apart? Asked once, of the first
        taskmaster pod that has logged (its log is all stderr); later taskmasters are told the answer."""
        while self.settings.split_log_streams is None:
            for pod in self._started_taskmaster_pods():
                try:
                    answer = await asyncio.to_thread(split_streams_supported, self.kube, pod["metadata"]["name"])
                except KubeError as exc:
                    log.info("could not ask pod %s about split log streams: %s", pod["metadata"]["name"], exc)
                    continue
                if answer is not None:
                    self.settings = self.settings.model_copy(update={"split_log_streams": answer})
                    log.info("executor stdout and stderr are %s", "read apart" if answer else
                             "read together (this cluster's pod log API cannot split them)")
                    return
            await asyncio.sleep(PROBE_INTERVAL)

    def _started_taskmaster_pods(self) -> list[Obj]:
        """Taskmaster pods that have started (Running or finished)."""
        return [p for p in self.controller.cache.all("Pod")
                if (p["metadata"].get("labels") or {}).get(lb.ROLE) == lb.Role.TASKMASTER.value
                and (p.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")]

    async def submit(self, stored: StoredTask, notes: Sequence[str]) -> None:
        """The taskmaster Job of the task. `notes` need not travel with it: the controller keeps the
        stored notes first when it folds the taskmaster's log into the store (`state.merge_logs`)."""
        task = stored.task
        try:
            job = manifests.taskmaster_job(self.settings, task, stored.owner, stored.team, self.default_time_limit)
            documents = manifests.check_task(task)
        except ValueError as exc:
            raise BackendError(str(exc), 400) from None
        await asyncio.to_thread(self._create, job, task, documents)

    def _create(self, job: manifests.Manifest, task: Task, documents: dict[str, bytes]) -> None:
        task_id = job["metadata"]["name"]
        try:
            created = self.kube.create(job)
        except KubeError as exc:
            raise BackendError(f"Kubernetes refused the taskmaster Job of task {task_id}: {exc}",
                               _status(exc)) from None
        self.controller.cache.put("Job", created)
        owner = manifests.Owner.of(created["metadata"]["name"], created["metadata"]["uid"],
                                   created["metadata"].get("labels"))
        try:
            self.kube.create(manifests.spec_configmap(task, owner, documents))
        except KubeError as exc:
            try:
                self.kube.delete("Job", task_id, "Background")
            except KubeError as cleanup:
                log.error("task %s: could not delete its taskmaster Job after a failed create (%s); "
                          "the controller will end it", task_id, cleanup, extra={"task_id": task_id})
            raise BackendError(f"Kubernetes refused the spec ConfigMap of task {task_id}: {exc}",
                               _status(exc)) from None

    async def cancel(self, stored: StoredTask, by: str) -> None:
        """Label the taskmaster Job and its pods (resourceVersion preconditions); the taskmaster stops.

        When no taskmaster pod runs (still Pending, or between restarts), the controller deletes the
        Job instead, so a cancel always wins and no pod survives it.
        """
        task_id = stored.id
        job = self.controller.cache.job(task_id) or await asyncio.to_thread(self.kube.get, "Job", task_id)
        if job is None:
            await self.store.update(task_id, state=State.CANCELED, logs=_with_line(
                stored, f"cancelled by {by} before its taskmaster Job existed"))
            return
        try:
            labelled = await asyncio.to_thread(label_cancel, self.kube, "Job", job, by)
            if labelled is not None:
                self.controller.cache.put("Job", labelled)
            for pod in self.controller.cache.pods(task_id):
                labels = pod["metadata"].get("labels") or {}
                phase = (pod.get("status") or {}).get("phase")
                if labels.get(lb.ROLE) == lb.Role.TASKMASTER.value and phase in (None, "Pending", "Running"):
                    await asyncio.to_thread(label_cancel, self.kube, "Pod", pod, by)
        except KubeError as exc:
            log.warning("task %s: labelling it for cancel failed (%s); the controller will delete its Job",
                        task_id, exc, extra={"task_id": task_id})
        self.controller.notify({task_id})


def split_streams_supported(kube: Kube, pod: str) -> bool | None:
    """True when the pod log `stream` parameter works, False when it is refused or ignored, None
    when the pod has logged nothing yet. A taskmaster writes only to stderr, so its stdout must be
    empty where streams are split, and equal to the whole log where the parameter is ignored."""
    whole = kube.read_log(pod, "taskmaster", 2048)
    if not whole.strip():
        return None
    try:
        stdout = kube.read_log(pod, "taskmaster", 2048, "Stdout")
    except KubeError as exc:
        if exc.transient:
            raise
        return False
    return not stdout.strip()


def _status(exc: KubeError) -> int:
    """503 when trying again later may help (unreachable, throttled, server errors), else 500."""
    return 503 if exc.transient else 500


def _with_line(stored: StoredTask, line: str) -> list[TaskLog]:
    logs = [log.model_copy(deep=True) for log in (stored.task.logs or [])] or [TaskLog()]
    logs[0].system_logs = [*(logs[0].system_logs or []), line]
    return logs
