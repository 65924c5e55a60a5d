"""Settings of the Kubernetes backend, shared by the API (which builds taskmaster Jobs) and the taskmaster.

The seed's variables keep their names and meaning (`TESK_API_TASKMASTER_*`, `TESK_API_K8S_NAMESPACE`,
every `TESK_API_TASKMASTER_ENVIRONMENT_*` handed to the taskmaster with the prefix stripped); what the
seed never had (PVC class, TTLs, grace times, leader election) is under `TESK_K8S_*`. The API passes
the variables the taskmaster needs into its Job's environment, so both read this same class.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import tesk
from tesk.config.values import comma_list

ENVIRONMENT_PREFIX = "TESK_API_TASKMASTER_ENVIRONMENT_"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""An RFC 1123 label (the body; the 63-character bound is checked apart)."""


def check_dns_label(value: str, what: str) -> str:
    """Object names we make (and namespaces) must be RFC 1123 labels: the API server refuses others."""
    if len(value) > 63 or not DNS_LABEL.match(value):
        raise ValueError(
            f"{what} must be at most 63 lower-case letters, digits and '-', starting and ending with a "
            f"letter or digit (got {value!r})"
        )
    return value


def passthrough_environment() -> dict[str, str]:
    """Every `TESK_API_TASKMASTER_ENVIRONMENT_X=v` of this process as `{"X": "v"}` (the seed's rule)."""
    return {
        key[len(ENVIRONMENT_PREFIX):]: value
        for key, value in sorted(os.environ.items())
        if key.startswith(ENVIRONMENT_PREFIX) and len(key) > len(ENVIRONMENT_PREFIX)
    }


class KubernetesSettings(BaseSettings):
    """Where and how tasks become Kubernetes objects."""

    model_config = SettingsConfigDict(env_prefix="TESK_K8S_", extra="ignore", populate_by_name=True)

    # -- the seed's variables -------------------------------------------------------------------
    namespace: str = Field("default", alias="TESK_API_K8S_NAMESPACE",
                           description="Namespace of every task object (Jobs, Pods, PVCs, ConfigMaps).")
    taskmaster_image_name: str = Field("tesk", alias="TESK_API_TASKMASTER_IMAGE_NAME",
                                       description="Image of the taskmaster (runs `tesk taskmaster`).")
    taskmaster_image_version: str = Field(tesk.__version__, alias="TESK_API_TASKMASTER_IMAGE_VERSION",
                                          description="Tag of the taskmaster image.")
    filer_image_name: str = Field("tesk", alias="TESK_API_TASKMASTER_FILER_IMAGE_NAME",
                                  description="Image of the inputs/outputs filer Jobs (runs `tesk filer`).")
    filer_image_version: str = Field(tesk.__version__, alias="TESK_API_TASKMASTER_FILER_IMAGE_VERSION",
                                     description="Tag of the filer image.")
    service_account_name: str = Field("tesk-taskmaster", alias="TESK_API_TASKMASTER_SERVICE_ACCOUNT_NAME",
                                      description="Service account of taskmaster pods (needs the taskmaster Role).")
    debug: bool = Field(False, alias="TESK_API_TASKMASTER_DEBUG",
                        description="Debug logging in taskmaster and filer pods, and `imagePullPolicy: Always`.")
    ftp_secret_name: str | None = Field(
        None, alias="TESK_API_TASKMASTER_FTP_SECRET_NAME",
        description="Secret with `username`/`password` keys, given to filer pods as TESK_FTP_USERNAME/PASSWORD "
        "(by reference: the values never appear in a Job).")
    executor_secret_name: str | None = Field(
        None, alias="TESK_API_TASKMASTER_EXECUTOR_SECRET_NAME",
        description="Secret mounted read-only into every executor pod.")
    executor_secret_mount_path: str = Field("/secret", alias="TESK_API_TASKMASTER_EXECUTOR_SECRET_MOUNT_PATH",
                                            description="Where the executor secret is mounted.")
    environment: dict[str, str] = Field(
        default_factory=passthrough_environment, alias="TESK_API_TASKMASTER_ENVIRONMENT_",
        description="Every `TESK_API_TASKMASTER_ENVIRONMENT_<NAME>` is set as `<NAME>` in the taskmaster: "
        "EXECUTOR_BACKOFF_LIMIT, FILER_BACKOFF_LIMIT, TRANSFER_PVC_NAME, HOST_BASE_PATH, CONTAINER_BASE_PATH, "
        "STORAGE_CLASS_NAME.")

    # -- ours -----------------------------------------------------------------------------------
    kubeconfig: Path | None = Field(
        None, description="Kubeconfig file of the API server. Unset: `$KUBECONFIG`, then the in-cluster "
        "service account, then `~/.kube/config`.")
    context: str | None = Field(None, description="Kubeconfig context (default: the file's current context).")
    storage_class: str | None = Field(
        None, description="Storage class of task PVCs (default: the seed's STORAGE_CLASS_NAME, else the "
        "cluster default).")
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        "ReadWriteOnce", description="Access mode of task PVCs. With ReadWriteOnce(Pod) every step after the first "
        "is pinned to the first step's node (a block volume is attached to one node at a time); ReadWriteMany "
        "lets each step run on any node.")
    default_disk_gb: float = Field(1.0, gt=0, description="PVC size when a task gives no `disk_gb`.")
    job_ttl_seconds: int = Field(
        3600, ge=0, description="`ttlSecondsAfterFinished` of taskmaster Jobs: how long a finished task's "
        "cluster objects stay (the store keeps the task for good).")
    taskmaster_backoff_limit: int = Field(
        2, ge=0, description="Restarts of a taskmaster pod that crashed; a restarted taskmaster resumes.")
    unschedulable_grace_seconds: float = Field(
        300, ge=0, description="How long a pod may stay Unschedulable before its task ends as SYSTEM_ERROR.")
    image_pull_grace_seconds: float = Field(
        300, ge=0, description="How long a pod may wait on ErrImagePull/ImagePullBackOff (the kubelet retries "
        "the pull meanwhile: registry rate limits pass) before its task ends.")
    create_container_grace_seconds: float = Field(
        120, ge=0, description="How long a pod may wait on CreateContainerError (often transient, retried by the "
        "kubelet) before its task ends.")
    failed_create_grace_seconds: float = Field(
        60, ge=0, description="How long a Job may go without a live pod while Kubernetes refuses to create one "
        "(`FailedCreate` Events: Pod Security, ResourceQuota, LimitRange, webhooks, SCCs) before its task ends "
        "SYSTEM_ERROR with the refusal's message.")
    scale_up_grace_seconds: float = Field(
        1800, ge=0, description="How long an unschedulable pod may wait once the cluster autoscaler has said it "
        "is adding a node (`TriggeredScaleUp`); `NotTriggerScaleUp` ends the wait at once.")
    cancel_grace_seconds: float = Field(
        60, ge=0, description="After a cancel, how long the taskmaster has to clean up before the controller "
        "deletes the task's Job (and with it every pod).")
    log_tail_bytes: int = Field(64 * 1024, ge=1024, description="Bytes kept of each executor's stdout and stderr.")
    split_log_streams: bool | None = Field(
        None, description="Read executor stdout and stderr apart with the pod log `stream` parameter "
        "(PodLogsQuerySplitStreams). Unset: the API finds out from the first taskmaster pod's log; false: "
        "stdout holds both streams and stderr is empty.")
    usage_sample_seconds: float = Field(
        10, ge=0, description="How often the taskmaster samples a running executor's memory and CPU time from "
        "its node's kubelet (Summary API through the node proxy; needs the optional `get` on `nodes/proxy`, "
        "deploy/kustomize/components/usage-sampling). The kubelet refreshes its figures every 10 s, so sampling "
        "faster gains little. 0: no sampling, and no peak memory or CPU time on this backend.")
    taskmaster_cpu: str = Field("100m", description="CPU request of taskmaster pods.")
    taskmaster_memory: str = Field("256Mi", description="Memory request and limit of taskmaster pods.")
    filer_cpu: str = Field("100m", description="CPU request of filer pods.")
    filer_memory: str = Field("256Mi", description="Memory request and limit of filer pods.")
    filer_secret_name: str | None = Field(
        None, description="Secret whose keys become environment variables of filer pods (for example "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for S3), by reference.")
    run_as_user: int | None = Field(
        10001, ge=1, description="uid and gid of taskmaster and filer pods (the image's USER). Empty where the "
        "platform assigns one (OpenShift's restricted-v2 SCC picks a uid from the namespace's range).")
    fs_group: int | None = Field(
        10001, ge=1, description="fsGroup of filer pods: the kubelet gives the task PVC this group (setgid, "
        "group-writable) so the filer can write into a fresh block volume whose root is root:root 0755. "
        "Empty where the platform assigns one (OpenShift).")
    executor_run_as_user: int | None = Field(
        None, ge=0, description="uid executors run as. Unset: the image's own user (root for most images).")
    executor_run_as_group: int | None = Field(
        None, ge=0, description="Primary gid of executors. Unset: the image's own group.")
    executor_fs_group: int | None = Field(
        None, ge=0, description="fsGroup of executor pods (a supplementary group of every executor process). "
        "Unset: the filer pods' fsGroup when `executor_run_as_user` is set (so a non-root executor can "
        "write where the filer wrote), else none.")
    executor_run_as_non_root: bool = Field(
        False, description="Set `runAsNonRoot` on executor pods: the kubelet refuses images that would run "
        "as root.")
    image_pull_secrets: str = Field(
        "", description="Comma-separated Secret names (in the task namespace) for pulling the taskmaster, "
        "filer and executor images from private registries (`imagePullSecrets` of every task pod).")
    lease_name: str = Field("tesk-controller", description="Lease that elects the one acting controller.")
    lease_seconds: float = Field(15, gt=1, description="Lease duration; a dead leader is replaced after it.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return check_dns_label(v, "TESK_API_K8S_NAMESPACE")

    @field_validator("run_as_user", "fs_group", "executor_run_as_user", "executor_run_as_group",
                     "executor_fs_group", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        """`TESK_K8S_RUN_AS_USER=` (empty) means "let the platform choose", not an error."""
        return None if isinstance(v, str) and not v.strip() else v

    @property
    def taskmaster_image(self) -> str:
        return f"{self.taskmaster_image_name}:{self.taskmaster_image_version}"

    @property
    def filer_image(self) -> str:
        return f"{self.filer_image_name}:{self.filer_image_version}"

    def pull_secrets(self) -> list[str]:
        return comma_list(self.image_pull_secrets)

    def effective_storage_class(self) -> str | None:
        return self.storage_class or self.environment.get("STORAGE_CLASS_NAME") or None

    def backoff_limit(self, which: Literal["EXECUTOR", "FILER"]) -> int:
        """The seed's EXECUTOR_BACKOFF_LIMIT / FILER_BACKOFF_LIMIT; executors default to 0 (TES: a
        failed executor is final, never silently re-run), filers to 2 (transfers may be retried)."""
        raw = self.environment.get(f"{which}_BACKOFF_LIMIT")
        default = 0 if which == "EXECUTOR" else 2
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(
                f"TESK_API_TASKMASTER_ENVIRONMENT_{which}_BACKOFF_LIMIT must be a whole number (got {raw!r})"
            ) from None
        if value < 0:
            raise ValueError(f"TESK_API_TASKMASTER_ENVIRONMENT_{which}_BACKOFF_LIMIT must not be negative")
        return value

    def taskmaster_env(self) -> dict[str, str]:
        """The variables a taskmaster pod needs to rebuild these settings (no kubeconfig: it runs in-cluster)."""
        keep = ("namespace", "filer_image_name", "filer_image_version", "debug", "ftp_secret_name",
                "executor_secret_name", "executor_secret_mount_path", "storage_class", "access_mode",
                "default_disk_gb", "unschedulable_grace_seconds", "image_pull_grace_seconds",
                "create_container_grace_seconds", "failed_create_grace_seconds", "scale_up_grace_seconds", "log_tail_bytes",
                "usage_sample_seconds",
                "split_log_streams", "filer_cpu", "filer_memory", "filer_secret_name", "run_as_user", "fs_group",
                "executor_run_as_user", "executor_run_as_group", "executor_fs_group", "executor_run_as_non_root",
                "image_pull_secrets")
        env: dict[str, str] = {}
        for name in keep:
            value = getattr(self, name)
            if value is None:  # an empty value still overrides a default that is not None
                if type(self).model_fields[name].default is None:
                    continue
                value = ""
            field = type(self).model_fields[name]
            variable = field.alias or f"TESK_K8S_{name.upper()}"
            env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
        env.update({ENVIRONMENT_PREFIX + k: v for k, v in self.environment.items()})
        return env
