"""Names, labels and annotations of every object a task owns, and the checks Kubernetes would apply.

One prefix (`tesk.io/`) marks our keys; `app.kubernetes.io/managed-by=tesk` is the one selector the
controller, clean-up scripts and quotas use. Every object of a task, pod templates included, carries
the task id and a role, so `kubectl delete jobs,pods,pvc,cm -l tesk.io/task-id=<id>` finds all of it
(TESK's filer Jobs had no labels at all). User and group names are not label-safe in general
(`alice@example.org`), so labels hold a sanitised form and the raw value goes in an annotation.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from tesk.config.kubernetes import DNS_LABEL, check_dns_label

PREFIX = "tesk.io/"
MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "app.kubernetes.io/name"
MANAGER = "tesk"

TASK_ID = PREFIX + "task-id"
ROLE = PREFIX + "role"
EXECUTOR = PREFIX + "executor"
CREATOR_USER = PREFIX + "creator-user-id"
CREATOR_GROUP = PREFIX + "creator-group-name"
CANCEL = PREFIX + "cancel"
"""Set to `requested` by the API on the taskmaster Job and its pods; the taskmaster reacts."""
CANCEL_REQUESTED = "requested"

ANNOTATION_NAME = PREFIX + "task-name"
ANNOTATION_USER = PREFIX + "creator-user"
ANNOTATION_GROUP = PREFIX + "creator-group"
ANNOTATION_CANCELED_BY = PREFIX + "canceled-by"

MAX_TASK_ID = 47
"""`<id>-outputs` plus the 6 characters the Job controller adds to pod names must stay within 63."""


class Role(StrEnum):
    TASKMASTER = "taskmaster"
    SPEC = "spec"
    RESULT = "result"
    DATA = "data"
    INPUTS = "inputs-filer"
    EXECUTOR = "executor"
    OUTPUTS = "outputs-filer"


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def is_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def label_safe(value: str) -> str:
    """A label value standing for `value`: itself when already valid, else a readable form plus a hash.

    The hash keeps two different users from sharing a label (`a@b.org` and `a_b.org` differ), and
    the readable part keeps `kubectl get -l` usable for people.
    """
    if is_label_value(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("_", value)[: 63 - len(digest) - 1].strip("_.-")
    return f"{readable}-{digest}" if readable else digest


def child_name(task_id: str, role: Role, index: int | None = None) -> str:
    """Deterministic names, so a restarted taskmaster finds (409 -> adopt) what it made before."""
    suffix = {
        Role.TASKMASTER: "",
        Role.SPEC: "-spec",
        Role.RESULT: "-result",
        Role.DATA: "-data",
        Role.INPUTS: "-inputs",
        Role.OUTPUTS: "-outputs",
    }.get(role)
    if role is Role.EXECUTOR:
        if index is None:
            raise ValueError("an executor Job name needs the executor index")
        suffix = f"-ex-{index}"
    assert suffix is not None
    return task_id + suffix


def check_task_id(task_id: str) -> str:
    check_dns_label(task_id, "task id")
    if len(task_id) > MAX_TASK_ID:
        raise ValueError(f"task id {task_id!r} is longer than {MAX_TASK_ID} characters")
    return task_id


def task_labels(task_id: str, role: Role, index: int | None = None) -> dict[str, str]:
    """The labels every object of a task carries (pod templates included)."""
    labels = {MANAGED_BY: MANAGER, APP_NAME: MANAGER, TASK_ID: task_id, ROLE: role.value}
    if index is not None:
        labels[EXECUTOR] = str(index)
    return labels


def creator_labels(user: str, group: str | None) -> dict[str, str]:
    labels = {CREATOR_USER: label_safe(user)}
    if group:
        labels[CREATOR_GROUP] = label_safe(group)
    return labels


def selector(labels: dict[str, str]) -> str:
    """A label selector string from equality terms (the one form we need)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


MANAGED_SELECTOR = selector({MANAGED_BY: MANAGER})


def check_object_names(obj: dict[str, object]) -> list[str]:
    """What the API server would refuse in names and labels and kubernetes-validate does not check.

    Returns readable problems (empty when the object is fine); walks pod templates too.
    """
    problems: list[str] = []

    def walk(meta: dict[str, object] | None, where: str, named: bool) -> None:
        if not isinstance(meta, dict):
            return
        name = meta.get("name")
        if named:
            if not isinstance(name, str):
                problems.append(f"{where}: no metadata.name")
            elif len(name) > 63 or not DNS_LABEL.match(name):
                problems.append(f"{where}: name {name!r} is not a DNS-1123 label")
        labels = meta.get("labels") or {}
        assert isinstance(labels, dict)
        for key, value in labels.items():
            if not is_label_key(str(key)):
                problems.append(f"{where}: label key {key!r} is invalid")
            if not isinstance(value, str) or not is_label_value(value):
                problems.append(f"{where}: label {key}={value!r} has an invalid value")
        annotations = meta.get("annotations") or {}
        assert isinstance(annotations, dict)
        size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
        if size > 256 * 1024:
            problems.append(f"{where}: annotations total {size} bytes, over the 256 KiB limit")

    walk(obj.get("metadata"), str(obj.get("kind")), named=True)  # type: ignore[arg-type]
    spec = obj.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        walk(spec["template"].get("metadata"), f"{obj.get('kind')} pod template", named=False)
    return problems
