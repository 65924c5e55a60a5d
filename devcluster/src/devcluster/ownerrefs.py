"""The OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift), as
`plugin/pkg/admission/gc/gc_admission.go` enforces it on create and update (patches are updates).

- An update that changes `metadata.ownerReferences` (any difference, in order or content) needs
  `delete` on the object itself (same resource, subresource, namespace and name): "cannot set an
  ownerRef on a resource you can't delete". A create does not: since Kubernetes 1.11
  (kubernetes#63403) the creator may name owners freely, because it "had the power to never create it".
- A reference whose `blockOwnerDeletion` becomes true (new, or false/unset before) needs `update` on
  the owner's `finalizers` subresource (the owner's namespace is the object's; a cluster-scoped
  owner is checked at the cluster scope): "cannot set blockOwnerDeletion if an ownerReference refers
  to a resource you can't set finalizers on". An owner kind the API does not serve cannot be mapped
  to a resource: "cannot set blockOwnerDeletion in this case because cannot find RESTMapping for
  APIVersion ... Kind ...". This holds on create too.
- `pods/status` is exempt.

The texts end with `: <reason>, <err>` as the plugin formats them (`%v, %v` of the authoriser's
reason and a nil error: `: , <nil>` when RBAC gave no reason). The refusal is admission.NewForbidden:
403 `<resource> "<name>" is forbidden: ...`, the name being the object's, else its generateName,
else "Unknown".
"""

from __future__ import annotations

from typing import Any

from devcluster import errors, rbac
from devcluster.resources import RESOURCES, ResourceType
from devcluster.users import User

_EXEMPT = (("pods", "status"),)


def _refs(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("metadata") or {}).get("ownerReferences") or [])


def _newly_blocking(new: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, Any]]:
    """References that block owner deletion now and did not before (matched by uid)."""
    before = {ref.get("uid"): ref for ref in _refs(old)}
    return [ref for ref in _refs(new) if ref.get("blockOwnerDeletion") is True
            and (before.get(ref.get("uid")) or {}).get("blockOwnerDeletion") is not True]


def _owner_type(ref: dict[str, Any]) -> ResourceType | None:
    api_version = str(ref.get("apiVersion") or "")
    group, _, version = api_version.rpartition("/")
    return next((r for r in RESOURCES if r.group == group and r.version == version and r.kind == ref.get("kind")),
                None)


def admit(authorizer: rbac.Authorizer, user: User, rtype: ResourceType, subresource: str, namespace: str,
          new: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Refuse (403) a create (`old` None) or update that sets owner references its author may not set."""
    if (rtype.plural, subresource) in _EXEMPT or _refs(new) == _refs(old):
        return
    metadata = new.get("metadata") or {}
    name = metadata.get("name") or metadata.get("generateName") or "Unknown"

    def refuse(why: str) -> errors.ApiError:
        return errors.forbidden(rtype.group, rtype.plural, name, why)

    if old is not None:
        allowed, reason = authorizer.authorize(rbac.Attributes(
            user, "delete", True, rtype.group, namespace, rtype.plural, subresource, old["metadata"]["name"]))
        if not allowed:
            raise refuse(f"cannot set an ownerRef on a resource you can't delete: {reason}, <nil>")
    for ref in _newly_blocking(new, old):
        owner = _owner_type(ref)
        if owner is None:
            raise refuse(f"cannot set blockOwnerDeletion in this case because cannot find RESTMapping for APIVersion "
                         f"{ref.get('apiVersion')} Kind {ref.get('kind')}: no matches for kind "
                         f"{rbac.quote(str(ref.get('kind')))} in version {rbac.quote(str(ref.get('apiVersion')))}")
        allowed, reason = authorizer.authorize(rbac.Attributes(
            user, "update", True, owner.group, namespace if owner.namespaced else "", owner.plural, "finalizers",
            str(ref.get("name") or "")))
        if not allowed:
            raise refuse("cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set "
                         f"finalizers on: {reason}, <nil>")
