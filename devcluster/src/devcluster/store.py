"""The object store behind the stand-in API server: etcd-like versions, watch history and deletion.

Every write bumps one cluster-wide `resourceVersion` counter (as etcd's revision does), records a
watch event in a bounded history (older versions are "compacted": a watch or a `continue` token
from before the history answers 410 Gone), and notifies the subscribers (open watch streams and
the controllers). All methods run on the server's event loop thread, so no locking is needed.

Deletion follows the API server: finalizers and graceful pod termination set `deletionTimestamp`
and keep the object until the finalizers are gone; `propagationPolicy` adds the `orphan` or
`foregroundDeletion` finalizer that the garbage collector (controllers.py) acts on.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from devcluster import errors
from devcluster.defaults import DEFAULTERS
from devcluster.resources import BY_PLURAL, ResourceType, validate, validate_update
from devcluster.storage import default_class_name
from devcluster.selectors import FieldRequirement, Requirement, matches_labels

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    """An RFC 3339 timestamp with second precision, as Kubernetes writes `metav1.Time`."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse a Kubernetes timestamp back into an aware datetime."""
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


@dataclass(frozen=True)
class WatchEvent:
    """One change: ADDED, MODIFIED or DELETED, with the object as it was after the change."""

    resource_version: int
    plural: str
    type: str
    object: dict[str, Any]
    old: dict[str, Any] | None = None  # the object before a MODIFIED change (for selector transitions)


Subscriber = Callable[[WatchEvent], None]


class AdmissionChain(Protocol):
    """What the store asks of admission (devcluster.admission): defaults before validation, a verdict after."""

    def mutate(self, rtype: ResourceType, namespace: str, obj: dict[str, Any]) -> None: ...

    def validate(self, rtype: ResourceType, namespace: str, obj: dict[str, Any], old: dict[str, Any] | None,
                 dry_run: bool) -> None: ...


class Store:
    """In-memory objects keyed by resource, namespace and name."""

    def __init__(self, history_size: int = 4096) -> None:
        self.revision = 0
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {r.plural: {} for r in BY_PLURAL.values()}
        self._history: deque[WatchEvent] = deque(maxlen=history_size)
        self.compacted = 0
        self._subscribers: list[Subscriber] = []
        self._released_pods: set[str] = set()  # uids of pods whose containers the kubelet has stopped
        self.admission: AdmissionChain | None = None  # set by the cluster; None admits everything

    # -- subscriptions and history ---------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` for every future change; returns the function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def compact(self) -> None:
        """Forget the whole history, so every older resourceVersion answers 410 Gone (fault injection)."""
        self._history.clear()
        self.compacted = self.revision

    def events_since(self, plural: str, version: int) -> list[WatchEvent]:
        """History events of `plural` newer than `version`; 410 when that part was compacted."""
        if version < self.compacted:
            raise errors.gone(f"too old resource version: {version} ({self.compacted})")
        return [e for e in self._history if e.resource_version > version and e.plural == plural]

    def _record(self, plural: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        if len(self._history) == self._history.maxlen:
            self.compacted = self._history[0].resource_version
        if kind == "DELETED" and plural == "pods":
            self._released_pods.discard(obj["metadata"]["uid"])
        event = WatchEvent(self.revision, plural, kind, copy.deepcopy(obj), copy.deepcopy(old) if old else None)
        self._history.append(event)
        for callback in list(self._subscribers):
            callback(event)

    def _bump(self, obj: dict[str, Any]) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)

    # -- reads --------------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        """One object (a copy); 404 NotFound when absent."""
        found = self._objects[rtype.plural].get((namespace if rtype.namespaced else "", name))
        if found is None:
            raise errors.not_found(rtype.group, rtype.plural, name)
        return copy.deepcopy(found)

    def find(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object (a copy) or None, for controllers."""
        found = self._objects[plural].get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def iter(self, plural: str, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Copies of all objects of a resource, optionally in one namespace, sorted by namespace/name."""
        for key in sorted(self._objects[plural]):
            if namespace is None or key[0] == namespace:
                yield copy.deepcopy(self._objects[plural][key])

    def peek(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One live object itself (no copy) or None, for controllers' read-only passes (as `scan`)."""
        return self._objects[plural].get((namespace, name))

    def scan(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The live objects themselves (no copies, unsorted), for controllers' read-only passes.

        Callers must not modify them: change an object through `find` + `update`.
        """
        objects = self._objects[plural]
        if namespace is None:
            return list(objects.values())
        return [o for (ns, _), o in objects.items() if ns == namespace]

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        limit: int | None = None,
        continue_token: str | None = None,
        copies: bool = True,
    ) -> dict[str, Any]:
        """A list response: matching items in name order, paged with `limit` and `continue`.

        `copies=False` puts the live objects themselves in it, for a caller that renders the response
        before the loop runs anything else (the API's list): a copy of every item cost more than the
        rest of a list of thousands of pods together."""
        start_after: tuple[str, str] | None = None
        if continue_token:
            try:
                state = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start_after = (state["start"][0], state["start"][1])
                token_version = int(state["rv"])
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise errors.bad_request(f"continue key is not valid: {exc}") from exc
            if token_version < self.compacted:
                raise errors.gone(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
        items: list[dict[str, Any]] = []
        remaining = 0
        last_key: tuple[str, str] | None = None
        for key in sorted(self._objects[rtype.plural]):
            if namespace is not None and key[0] != namespace:
                continue
            if start_after is not None and key <= start_after:
                continue
            obj = self._objects[rtype.plural][key]
            if not matches_labels(labels, obj["metadata"].get("labels")) or not all(f.matches(obj) for f in fields):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                if labels or fields:  # more exist; how many is not known (nor said) under a selector
                    break
                continue
            items.append(copy.deepcopy(obj) if copies else obj)
            last_key = key
        metadata: dict[str, Any] = {"resourceVersion": str(self.revision)}
        if remaining and last_key is not None:
            token = json.dumps({"rv": self.revision, "start": list(last_key)})
            metadata["continue"] = base64.urlsafe_b64encode(token.encode()).decode()
            if not (labels or fields):
                # As kube-apiserver: with a label or field selector the number left is unknown, so unset.
                metadata["remainingItemCount"] = remaining
        return {"kind": rtype.list_kind, "apiVersion": rtype.api_version, "metadata": metadata, "items": items}

    # -- writes -------------------------------------------------------------------------------------

    def create(self, rtype: ResourceType, namespace: str, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Create an object: name or generateName, uid, timestamps, defaults, validation, 409 if taken."""
        if not isinstance(obj, dict):
            raise errors.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = metadata
        if obj.get("kind") not in (None, rtype.kind):
            raise errors.bad_request(f"the body is a {obj.get('kind')}, but the URL is for {rtype.kind} objects")
        if rtype.namespaced:
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
            ns = self._objects["namespaces"].get(("", namespace))
            if ns is None:
                raise errors.not_found("", "namespaces", namespace)
            if ns["metadata"].get("deletionTimestamp"):
                raise errors.forbidden(
                    rtype.group, rtype.plural, metadata.get("name") or metadata.get("generateName") or "",
                    f"unable to create new content in namespace {namespace} because it is being terminated")
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise errors.invalid(rtype.group, rtype.kind, "", [
                    ("metadata.name", "Required value: name or generateName is required")])
            metadata["name"] = prefix + "".join(random.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
        key = (namespace if rtype.namespaced else "", metadata["name"])
        for server_field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            metadata.pop(server_field, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = timestamp()
        if rtype.plural in ("jobs", "pods"):
            metadata["generation"] = 1
        obj["apiVersion"] = rtype.api_version
        obj["kind"] = rtype.kind
        defaulter = DEFAULTERS.get(rtype.plural)
        if defaulter is not None:
            defaulter(obj)
        if rtype.plural == "persistentvolumeclaims" and obj["spec"].get("storageClassName") is None:
            default_class = default_class_name(list(self._objects["storageclasses"].values()))
            if default_class is not None:  # the DefaultStorageClass admission plugin
                obj["spec"]["storageClassName"] = default_class
        if self.admission is not None:
            self.admission.mutate(rtype, namespace, obj)
        validate(rtype, obj)
        if self.admission is not None:
            self.admission.validate(rtype, namespace, obj, None, dry_run)
        if key in self._objects[rtype.plural]:
            raise errors.already_exists(rtype.group, rtype.plural, metadata["name"])
        if dry_run:
            return obj
        self._bump(obj)
        self._objects[rtype.plural][key] = obj
        self._record(rtype.plural, "ADDED", obj)
        return copy.deepcopy(obj)

    def update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an object (PUT semantics): optimistic concurrency on resourceVersion, status split.

        The main resource ignores `status`; the `status` subresource changes only `status`.
        A resourceVersion that is set and stale gives 409 Conflict; an unset one is unconditional.
        """
        key = (namespace if rtype.namespaced else "", name)
        current = self._objects[rtype.plural].get(key)
        if current is None:
            raise errors.not_found(rtype.group, rtype.plural, name)
        self._check_preconditions(rtype, name, current, obj)
        if subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = copy.deepcopy(obj.get("status") or {})
        else:
            new = self._replacement(rtype, name, current, obj)
            if self.admission is not None:
                self.admission.validate(rtype, namespace, new, current, dry_run)
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if new == current:
            return copy.deepcopy(current)  # a no-op write keeps the resourceVersion, as on a cluster
        self._commit(rtype, key, current, new)
        return copy.deepcopy(new)

    @staticmethod
    def _check_preconditions(rtype: ResourceType, name: str, current: dict[str, Any], obj: Any) -> None:
        """Refuse a body that is not an object, names another object, or carries a stale resourceVersion or
        another uid."""
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request("the request body must be a JSON object with an object `metadata`")
        metadata = obj.get("metadata") or {}
        if metadata.get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({metadata.get('name')}) does not match the name "
                                     f"on the URL ({name})")
        sent_version = metadata.get("resourceVersion")
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            raise errors.conflict(
                rtype.group, rtype.plural, name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if metadata.get("uid") and metadata["uid"] != current["metadata"]["uid"]:
            raise errors.conflict(rtype.group, rtype.plural, name, "Precondition failed: UID in precondition: "
                                  f"{metadata['uid']}, UID in object meta: {current['metadata']['uid']}")

    @staticmethod
    def _replacement(rtype: ResourceType, name: str, current: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        """The main resource as a PUT makes it: the server-owned metadata and the status kept, validated,
        the generation bumped on a spec change, no finalizer added once deletion started."""
        new = copy.deepcopy(obj)
        new.setdefault("metadata", {})
        for immutable in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
            if immutable in current["metadata"]:
                new["metadata"][immutable] = current["metadata"][immutable]
            else:
                new["metadata"].pop(immutable, None)
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        if "status" in current and rtype.subresources and "status" in rtype.subresources:
            new["status"] = copy.deepcopy(current["status"])
        if rtype.plural == "secrets":
            DEFAULTERS["secrets"](new)
        validate(rtype, new)
        validate_update(rtype, current, new)
        if new.get("spec") != current.get("spec") and "generation" in current["metadata"]:
            new["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if current["metadata"].get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or []) - set(current["metadata"].get("finalizers") or [])
            if added:
                raise errors.invalid(rtype.group, rtype.kind, name, [(
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted")])
        return new

    def _commit(self, rtype: ResourceType, key: tuple[str, str], current: dict[str, Any], new: dict[str, Any]) -> None:
        """Store the new version; an object being deleted whose last finalizer went is removed instead."""
        self._bump(new)
        self._objects[rtype.plural][key] = new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and not (
            rtype.plural == "pods" and not self._may_vanish(new)
        ):
            del self._objects[rtype.plural][key]
            self._record(rtype.plural, "DELETED", new, current)
        else:
            self._record(rtype.plural, "MODIFIED", new, current)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        grace_period: int | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete an object as the API server does; returns the object (final or marked for deletion)."""
        key = (namespace if rtype.namespaced else "", name)
        current = self._objects[rtype.plural].get(key)
        if current is None:
            raise errors.not_found(rtype.group, rtype.plural, name)
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != current["metadata"]["uid"]:
            raise errors.conflict(
                rtype.group, rtype.plural, name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {current['metadata']['uid']}",
            )
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != current["metadata"][
                "resourceVersion"]:
            raise errors.conflict(
                rtype.group, rtype.plural, name,
                f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, "
                f"ResourceVersion in object meta: {current['metadata']['resourceVersion']}",
            )
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f"propagationPolicy {propagation!r} is not one of Orphan, Background, Foreground")
        if propagation is None:
            # batch/v1 Jobs orphan their pods by default (kept for backwards compatibility by Kubernetes).
            propagation = "Orphan" if rtype.plural == "jobs" else "Background"
        if dry_run:
            return copy.deepcopy(current)
        new = copy.deepcopy(current)
        meta = new["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        already_deleting = bool(meta.get("deletionTimestamp"))
        if not already_deleting:
            if propagation == "Orphan" and ORPHAN_FINALIZER not in finalizers:
                finalizers.append(ORPHAN_FINALIZER)
            elif propagation == "Foreground" and FOREGROUND_FINALIZER not in finalizers:
                finalizers.append(FOREGROUND_FINALIZER)
        graceful = False
        if rtype.plural == "pods" and not self._may_vanish(new):
            grace = grace_period if grace_period is not None else new["spec"].get("terminationGracePeriodSeconds", 30)
            graceful = grace > 0
            if already_deleting:
                meta["deletionGracePeriodSeconds"] = min(meta.get("deletionGracePeriodSeconds", grace), grace)
            else:
                meta["deletionGracePeriodSeconds"] = grace
        if rtype.plural == "namespaces":
            # The namespace controller empties a terminating namespace, then calls finalize_namespace.
            new.setdefault("status", {})["phase"] = "Terminating"
            graceful = True
        if not finalizers and not graceful:
            del self._objects[rtype.plural][key]
            self._bump(new)
            self._record(rtype.plural, "DELETED", new)
            return copy.deepcopy(new)
        if finalizers:
            meta["finalizers"] = finalizers
        if not already_deleting:
            grace_seconds = meta.get("deletionGracePeriodSeconds", 0)
            meta["deletionTimestamp"] = timestamp(now() + timedelta(seconds=grace_seconds))
            meta.setdefault("deletionGracePeriodSeconds", 0)
        if new == current:
            return copy.deepcopy(current)
        self._bump(new)
        self._objects[rtype.plural][key] = new
        self._record(rtype.plural, "MODIFIED", new, current)
        return copy.deepcopy(new)

    def finish_pod_termination(self, namespace: str, name: str) -> None:
        """The kubelet's final delete (grace 0) after a pod's containers stopped."""
        current = self._objects["pods"].get((namespace, name))
        if current is None or not current["metadata"].get("deletionTimestamp"):
            return
        self._released_pods.add(current["metadata"]["uid"])
        new = copy.deepcopy(current)
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        if new["metadata"].get("finalizers"):
            self._bump(new)
            self._objects["pods"][(namespace, name)] = new
            self._record("pods", "MODIFIED", new, current)
            return
        del self._objects["pods"][(namespace, name)]
        self._bump(new)
        self._record("pods", "DELETED", new)

    def bind_pod(self, namespace: str, name: str, node: str) -> None:
        """The scheduler's `pods/binding`: set `spec.nodeName` (the only spec change a pod allows)."""
        current = self._objects["pods"].get((namespace, name))
        if current is None or current["spec"].get("nodeName"):
            return
        new = copy.deepcopy(current)
        new["spec"]["nodeName"] = node
        self._bump(new)
        self._objects["pods"][(namespace, name)] = new
        self._record("pods", "MODIFIED", new, current)

    def finalize_namespace(self, name: str) -> None:
        """Remove a terminating namespace once the namespace controller has emptied it."""
        current = self._objects["namespaces"].pop(("", name), None)
        if current is not None:
            self._bump(current)
            self._record("namespaces", "DELETED", current)

    def _may_vanish(self, pod: dict[str, Any]) -> bool:
        """A pod can go away without a grace period when nothing runs: unbound, finished or released."""
        status = pod.get("status") or {}
        return (
            not (pod.get("spec") or {}).get("nodeName")
            or status.get("phase") in ("Succeeded", "Failed")
            or pod["metadata"]["uid"] in self._released_pods
            or pod["metadata"].get("deletionGracePeriodSeconds") == 0
        )

    def remove_finalizer(self, plural: str, namespace: str, name: str, finalizer: str) -> None:
        """Drop one finalizer (controllers), completing the deletion when it was the last one."""
        current = self._objects[plural].get((namespace, name))
        if current is None or finalizer not in (current["metadata"].get("finalizers") or []):
            return
        new = copy.deepcopy(current)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != finalizer]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self.update(BY_PLURAL[plural], namespace, name, new)

