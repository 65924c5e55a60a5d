"""Discovery documents (`/version`, `/api`, `/apis`, resource lists) and kubectl's Table output.

kubectl maps `get jobs,pods` to URLs through these documents and asks for `as=Table` so that the
server formats the columns; the Python clients only need `/version`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from devcluster.resources import RESOURCES, ResourceType
from devcluster.store import now, parse_time

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-tesk-devcluster",
                      "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                      "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc",
                      "platform": "linux/amd64"}


def groups() -> dict[str, list[ResourceType]]:
    """Resource types per API group ("" is the core group)."""
    out: dict[str, list[ResourceType]] = {}
    for rtype in RESOURCES:
        out.setdefault(rtype.group, []).append(rtype)
    return out


def api_versions(address: str) -> dict[str, Any]:
    """`GET /api`."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def api_group(group: str) -> dict[str, Any]:
    """One `APIGroup` entry."""
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [version],
            "preferredVersion": version}


def api_group_list() -> dict[str, Any]:
    """`GET /apis`."""
    entries = [api_group(g) for g in groups() if g]
    for entry in entries:
        entry.pop("kind")
        entry.pop("apiVersion")
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": entries}


def resource_list(group: str) -> dict[str, Any]:
    """`GET /api/v1` or `GET /apis/<group>/v1`: the resources and subresources of a group version."""
    resources: list[dict[str, Any]] = []
    for rtype in groups().get(group, []):
        entry: dict[str, Any] = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                                 "kind": rtype.kind, "verbs": list(rtype.verbs)}
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        for sub in rtype.subresources:
            verbs = {"status": ["get", "patch", "update"], "log": ["get"], "eviction": ["create"],
                     "token": ["create"], "proxy": ["create", "delete", "get", "patch", "update"]}[sub]
            kind = {"log": "Pod", "eviction": "Eviction", "token": "TokenRequest",
                    "proxy": "NodeProxyOptions"}.get(sub, rtype.kind)
            resources.append({"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                              "kind": kind, "verbs": verbs})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/v1" if group else "v1", "resources": resources}


def openapi_v3_root() -> dict[str, Any]:
    """`GET /openapi/v3`: where each group version's document lives."""
    paths = {}
    for group in groups():
        key = f"apis/{group}/v1" if group else "api/v1"
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=devcluster"}
    return {"paths": paths}


def openapi_v3_group(group: str) -> dict[str, Any]:
    """A minimal OpenAPI v3 document for one group version: the PATCH operations of every resource.

    kubectl reads it to learn that the server validates fields itself (`fieldValidation` is a
    query parameter of PATCH), and then sends objects without validating them client-side.
    Schemas are not served, so kubectl falls back to its compiled-in types where it needs them.
    """
    prefix = f"/apis/{group}/v1" if group else "/api/v1"
    paths: dict[str, Any] = {}
    for rtype in groups().get(group, []):
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        paths[f"{prefix}{scope}/{rtype.plural}/{{name}}"] = {"patch": {
            "operationId": f"patch{rtype.kind}",
            "x-kubernetes-group-version-kind": {"group": group, "version": "v1", "kind": rtype.kind},
            "x-kubernetes-action": "patch",
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                           {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}},
        }}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (devcluster stand-in)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}


def _age(created: str | None, moment: datetime) -> str:
    if not created:
        return "<unknown>"
    seconds = max(0, int((moment - parse_time(created)).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m" if seconds < 36000 else f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _pod_cells(pod: dict[str, Any], moment: datetime) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("reason") or status.get("phase", "Pending")
    for state in statuses:
        waiting = (state.get("state") or {}).get("waiting")
        terminated = (state.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
    for state in status.get("initContainerStatuses") or []:
        waiting = (state.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing"):
            reason = f"Init:{waiting['reason']}"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, restarts, _age(pod["metadata"].get("creationTimestamp"),
                                                                               moment)]


def _job_cells(job: dict[str, Any], moment: datetime) -> list[Any]:
    status = job.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
    state = "Running"
    for kind in ("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if kind in conditions:
            state = {"FailureTarget": "FailureTarget", "SuccessCriteriaMet": "SuccessCriteriaMet"}.get(kind, kind)
            break
    if job["metadata"].get("deletionTimestamp"):
        state = "Terminating"
    completions = f"{status.get('succeeded', 0)}/{(job.get('spec') or {}).get('completions', 1)}"
    duration = ""
    if status.get("startTime"):
        end = parse_time(status["completionTime"]) if status.get("completionTime") else moment
        duration = _age(status["startTime"], end)
    return [job["metadata"]["name"], state, completions, duration,
            _age(job["metadata"].get("creationTimestamp"), moment)]


_COLUMNS = {
    "pods": (("Name", "string"), ("Ready", "string"), ("Status", "string"), ("Restarts", "string"),
             ("Age", "string")),
    "jobs": (("Name", "string"), ("Status", "string"), ("Completions", "string"), ("Duration", "string"),
             ("Age", "string")),
}


def table(rtype: ResourceType, items: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """A `meta.k8s.io/v1 Table` for kubectl: server-side printing of a list."""
    moment = now()
    columns = _COLUMNS.get(rtype.plural, (("Name", "string"), ("Age", "string")))
    rows = []
    for item in items:
        if rtype.plural == "pods":
            cells = _pod_cells(item, moment)
        elif rtype.plural == "jobs":
            cells = _job_cells(item, moment)
        else:
            cells = [item["metadata"]["name"], _age(item["metadata"].get("creationTimestamp"), moment)]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": item["metadata"]}})
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
        "columnDefinitions": [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
                               "description": name, "priority": 0} for name, kind in columns],
        "rows": rows,
    }
