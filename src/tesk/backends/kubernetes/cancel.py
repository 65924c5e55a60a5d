"""The cancel protocol, in one place: the API and the controller label, the taskmaster reads.

A cancel is the label `tesk.io/cancel=requested` on the taskmaster Job and its pods, with who asked
and when in annotations. The API (on DELETE) and the controller (when the API's patch failed, or a
replacement pod appeared) set it with `label_cancel`; the taskmaster sees it on its own pod through
its watch, and through the Downward API `labels` file as a backup that needs no API call; the
controller gives the taskmaster `cancel_grace_seconds` from the annotated time before it deletes the
task's objects itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tesk.backends.kubernetes import labels as lb
from tesk.backends.kubernetes.kube import Conflict, Kube, NotFound, Obj

CANCEL_REQUESTED_AT = lb.PREFIX + "cancel-requested-at"


def requested(obj: Obj) -> bool:
    """Does this object carry the cancel label?"""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(lb.CANCEL) == lb.CANCEL_REQUESTED


def requested_by(labels: dict[str, str], annotations: dict[str, str]) -> str | None:
    """Who asked for the cancel these labels and annotations show, or None when there is none."""
    if labels.get(lb.CANCEL) != lb.CANCEL_REQUESTED:
        return None
    return annotations.get(lb.ANNOTATION_CANCELED_BY, "a user")


def seconds_since_request(obj: Obj, now: datetime) -> float:
    """How long ago the cancel was asked for (0 when the object does not say)."""
    asked = ((obj.get("metadata") or {}).get("annotations") or {}).get(CANCEL_REQUESTED_AT)
    return (now - datetime.fromisoformat(asked)).total_seconds() if asked else 0.0


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
        except NotFound:
            return None
        except Conflict:
            current = kube.get(kind, name)
    raise Conflict(409, f"could not label {kind} {name} for cancel: it kept changing")


def read_labels_file(path: Path) -> dict[str, str]:
    """A Downward API `labels` (or `annotations`) file: `key="value"` lines, values Go-quoted."""
    labels: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return labels
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            labels[key.strip()] = json.loads(value.strip())
        except ValueError:
            labels[key.strip()] = value.strip().strip('"')
    return labels

