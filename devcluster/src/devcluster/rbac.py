"""RBAC authorisation as kube-apiserver's RBAC authoriser decides it, with its 403 texts.

Every request is turned into authorisation attributes the way the API server's RequestInfoFactory
does (`staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`): resource requests under
`/api/v1` and `/apis/<group>/<version>` carry verb, API group, namespace, resource, subresource and
name (a namespace's own URL has that namespace; `list`/`watch` with `fieldSelector=metadata.name=x`
carry the name x); everything else is a non-resource request whose verb is the HTTP method in lower
case. The attributes are checked against the Roles, ClusterRoles and bindings in the store
(`plugin/pkg/auth/authorizer/rbac/rbac.go`, `pkg/apis/rbac/v1/evaluation_helpers.go`): a rule
matches on verb (or `*`), API group (or `*`), resource (exact `resource/subresource`, `*`, or
`*/subresource`; `pods/*` matches nothing but a subresource named `*`), resourceNames (empty: any;
otherwise the request must name one of them, so create, list without a name selector and
deletecollection never match), and non-resource URLs (exact, `*`, or a trailing-`*` prefix).
ClusterRoleBindings grant everywhere; RoleBindings only in their namespace, for a Role of that
namespace or a ClusterRole. A binding whose role is missing grants nothing and its not-found error
becomes the reason appended to the refusal (`: RBAC: role.rbac.authorization.k8s.io "x" not found`).
`system:masters` is allowed everything before RBAC is asked, as kube-apiserver's privileged-group
authoriser does.

The refusal is 403 Forbidden, reason `Forbidden`, with the message of `forbiddenMessage` and
`apierrors.NewForbidden` (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`).

Bootstrap policy: the ClusterRoles and ClusterRoleBindings every cluster starts with that matter to
clients here (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`): `cluster-admin` bound
to `system:masters`, `system:discovery` (discovery paths) bound to `system:authenticated`, and
`system:public-info-viewer` (health and version) bound to authenticated and unauthenticated users.
Left out: the aggregated `admin`/`edit`/`view` roles and aggregationRule, the controllers' and
nodes' roles (the stand-in's controllers and kubelet write to the store directly), the Node
authoriser, and escalation prevention (creating a Role or binding that grants more than the creator
holds is not refused: only the admin writes RBAC objects here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devcluster import errors
from devcluster.users import MASTERS, User

GROUP = "rbac.authorization.k8s.io"
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class Attributes:
    """What an authoriser decides on (authorizer.AttributesRecord): one request, or one admission check."""

    user: User
    verb: str
    resource_request: bool
    api_group: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


def request_attributes(user: User, method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The attributes kube-apiserver's RequestInfoFactory derives from a request."""
    parts = [p for p in path.split("/") if p]
    non_resource = Attributes(user, method.lower(), False, path=path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    group, rest = "", parts[1:]
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    rest = rest[1:]  # the version
    if rest[0] in ("watch", "proxy") and len(rest) >= 2:
        verb, rest = rest[0], rest[1:]
    else:
        verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "")
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        verb = "watch" if (query.get("watch") or "").lower() in ("1", "true") else "list"
        name = _exact_name(query.get("fieldSelector") or "")
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, True, group, namespace, resource, subresource, name, path)


def _exact_name(field_selector: str) -> str:
    """The name a `metadata.name=x` (or `==`) field selector requires, as RequiresExactMatch finds it."""
    for term in field_selector.split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and key.strip() == "metadata.name" and not key.endswith("!"):
            return value.strip()
    return ""


def _rule_allows(attributes: Attributes, rule: Mapping[str, Any]) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attributes.verb not in verbs:
        return False
    if not attributes.resource_request:
        return any(url == "*" or url == attributes.path or (url.endswith("*") and attributes.path.startswith(url[:-1]))
                   for url in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attributes.api_group not in groups:
        return False
    combined = f"{attributes.resource}/{attributes.subresource}" if attributes.subresource else attributes.resource
    if not any(r in ("*", combined) or (attributes.subresource and r == f"*/{attributes.subresource}")
               for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or attributes.name in names


def _applies_to(subject: Mapping[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


class Objects(Protocol):
    """What the authoriser reads from the store."""

    def scan(self, plural: str, namespace: str | None = None) -> Iterable[dict[str, Any]]:
        """The live objects of a resource (not copies: the authoriser only reads them), optionally of one
        namespace."""
        ...

    def peek(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One live object or None."""
        ...


class Authorizer:
    """Decides requests from the RBAC objects in the store (every decision reads them afresh, so a binding
    created or deleted through the API takes effect at once; kube-apiserver's informers lag slightly)."""

    def __init__(self, store: Objects) -> None:
        self.store = store

    def authorize(self, attributes: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason names bindings whose role is missing, as the RBAC authoriser does."""
        if MASTERS in attributes.user.groups:
            return True, ""
        missing: list[str] = []
        for binding in self.store.scan("clusterrolebindings"):
            if self._grants(binding, "", attributes, missing):
                return True, ""
        if attributes.namespace:
            for binding in self.store.scan("rolebindings", attributes.namespace):
                if self._grants(binding, attributes.namespace, attributes, missing):
                    return True, ""
        if not missing:
            return False, ""
        return False, "RBAC: " + (missing[0] if len(missing) == 1 else f"[{', '.join(missing)}]")

    def _grants(self, binding: dict[str, Any], namespace: str, attributes: Attributes, missing: list[str]) -> bool:
        if not any(_applies_to(s, attributes.user, namespace) for s in binding.get("subjects") or []):
            return False
        ref = binding.get("roleRef") or {}
        role_name = str(ref.get("name", ""))
        if ref.get("kind") == "Role":
            role = self.store.peek("roles", namespace, role_name) if namespace else None
        else:
            role = self.store.peek("clusterroles", "", role_name)
        if role is None:
            missing.append(f'{"role" if ref.get("kind") == "Role" else "clusterrole"}.{GROUP} "{role_name}" not found')
            return False
        return any(_rule_allows(attributes, rule) for rule in role.get("rules") or [])


def forbidden_message(attributes: Attributes, reason: str = "") -> str:
    """`forbiddenMessage` plus the authoriser's reason, as responsewriters.Forbidden words it."""
    who = attributes.user.name
    if not attributes.resource_request:
        text = f"User {quote(who)} cannot {attributes.verb} path {quote(attributes.path)}"
    else:
        resource = f"{attributes.resource}/{attributes.subresource}" if attributes.subresource else attributes.resource
        where = (f"in the namespace {quote(attributes.namespace)}" if attributes.namespace
                 else "at the cluster scope")
        text = (f"User {quote(who)} cannot {attributes.verb} resource {quote(resource)} in API group "
                f"{quote(attributes.api_group)} {where}")
    return f"{text}: {reason}" if reason else text


def refusal(attributes: Attributes, reason: str) -> errors.ApiError:
    """The 403 a refused request gets."""
    return errors.forbidden(attributes.api_group, attributes.resource, attributes.name,
                            forbidden_message(attributes, reason))


def quote(text: str) -> str:
    """Go's %q for the plain names found here (backslashes and double quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                   "/readyz", "/version", "/version/"]
_PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": rules}


def _cluster_binding(name: str, groups: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups]}


def bootstrap_policy() -> list[tuple[str, dict[str, Any]]]:
    """(plural, object) of the bootstrap ClusterRoles and ClusterRoleBindings the stand-in starts with."""
    return [
        ("clusterroles", _cluster_role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                                         {"nonResourceURLs": ["*"], "verbs": ["*"]}])),
        ("clusterroles", _cluster_role("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}])),
        ("clusterroles", _cluster_role("system:public-info-viewer",
                                       [{"nonResourceURLs": _PUBLIC_INFO_URLS, "verbs": ["get"]}])),
        ("clusterrolebindings", _cluster_binding("cluster-admin", [MASTERS])),
        ("clusterrolebindings", _cluster_binding("system:discovery", ["system:authenticated"])),
        ("clusterrolebindings", _cluster_binding("system:public-info-viewer",
                                                 ["system:authenticated", "system:unauthenticated"])),
    ]
