"""The HTTP side of the stand-in: Kubernetes REST paths, verbs, watch streams, logs and discovery.

A small ASGI (Starlette) app, so that every client library goes through its real serialisation and
HTTP code. Requests are authenticated by bearer token (unknown tokens get 401, no token is
`system:anonymous`), authorised by RBAC (devcluster.rbac; a refusal is 403 and is accounted),
passed through the fault rules, admitted (OwnerReferencesPermissionEnforcement, devcluster.ownerrefs),
answered from the store, and logged for accounting (verb, resource, client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from devcluster import discovery, errors, ownerrefs, protobuf, rbac, users
from devcluster.faults import Fault, Faults, RequestRecord
from devcluster.patch import PatchError, apply_patch
from devcluster.resources import BY_PATH, ResourceType
from devcluster.selectors import (
    FieldRequirement,
    Requirement,
    SelectorError,
    matches_labels,
    parse_field_selector,
    parse_label_selector,
)
from devcluster.store import Store, WatchEvent
from devcluster.users import ANONYMOUS, User

log = logging.getLogger(__name__)

_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


class NodeStats(Protocol):
    """What the API needs from the kubelets to serve `nodes/{name}/proxy/stats/summary`."""

    def stats_summary(self, node: str, only_cpu_and_memory: bool) -> dict[str, Any] | None:
        """The node's Summary API answer, or None when no kubelet serves that node."""
        ...


class LogReader(Protocol):
    """What the API needs from the kubelet to serve `pods/{name}/log`."""

    def read_log(self, pod: dict[str, Any], container: str, previous: bool) -> list[tuple[str, str, bytes]]:
        """(timestamp, stream, line bytes incl. newline) records of one container, oldest first."""
        ...

    def is_running(self, pod: dict[str, Any], container: str) -> bool:
        """Whether the container may still write more output (for `follow`)."""
        ...


@dataclass
class Target:
    """What a request addresses, parsed from its path."""

    rtype: ResourceType
    namespace: str
    name: str
    subresource: str
    proxy_path: str = ""  # a node proxy's path on the kubelet (`/stats/summary`)

    @property
    def resource(self) -> str:
        """Plural plus subresource, the unit of accounting and fault matching."""
        return f"{self.rtype.plural}/{self.subresource}" if self.subresource else self.rtype.plural


def parse_path(path: str) -> Target | None:
    """Map `/api/v1/...` and `/apis/<group>/<version>/...` onto a resource type; None if not a resource."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) in (1, 2) and rest[0] == "namespaces":
        rtype = BY_PATH.get((group, version, "namespaces"))
        return Target(rtype, "", rest[1] if len(rest) == 2 else "", "") if rtype else None
    if not namespace and len(rest) >= 3 and rest[2] == "proxy" and (group, rest[0]) == ("", "nodes"):
        return Target(BY_PATH[(group, version, "nodes")], "", rest[1], "proxy", "/" + "/".join(rest[3:]))
    if not rest or len(rest) > 3:
        return None
    rtype = BY_PATH.get((group, version, rest[0]))
    if rtype is None:
        return None
    if rtype.namespaced is False and namespace:
        return None
    name = rest[1] if len(rest) >= 2 else ""
    sub = rest[2] if len(rest) == 3 else ""
    if sub and sub not in rtype.subresources:
        return None
    return Target(rtype, namespace, name, sub)


def _error_response(error: errors.ApiError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return JSONResponse(error.status(), status_code=error.code, headers=headers)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class ApiServer:
    """The ASGI application plus the state it serves."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        logs: LogReader,
        tokens: dict[str, User],
        *,
        node_stats: NodeStats,
        evict: Callable[[str, str, dict[str, Any]], dict[str, Any]],
        bookmark_interval: float = 60.0,
        watch_delays: dict[str, float] | None = None,
        max_watch_seconds: float = 1800.0,
        split_log_streams: bool = False,
        rbac_enabled: bool = True,
        owner_references_permission_enforcement: bool = True,
    ) -> None:
        self.store = store
        self.faults = faults
        self.logs = logs
        self.node_stats = node_stats
        self.tokens = tokens
        self.evict = evict
        self.bookmark_interval = bookmark_interval
        self.watch_delays = dict(watch_delays or {})
        self.max_watch_seconds = max_watch_seconds
        self.split_log_streams = split_log_streams
        self.rbac = rbac_enabled
        self.owner_references_permission_enforcement = owner_references_permission_enforcement
        self.authorizer = rbac.Authorizer(store)
        self.address = "127.0.0.1:0"
        self.app = Starlette(routes=[Route("/{path:path}", self.handle,
                                           methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])

    # -- entry point --------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Authenticate, authorise, account, inject faults, dispatch."""
        path = request.url.path
        user_agent = request.headers.get("user-agent", "")
        auth = request.headers.get("authorization", "")
        user = ANONYMOUS
        if auth.lower().startswith("bearer "):
            known = self.tokens.get(auth[7:].strip())
            if known is None:
                return JSONResponse(errors.ApiError(401, "Unauthorized", "Unauthorized").status(), status_code=401)
            user = known
        attributes = rbac.request_attributes(user, request.method, path, request.query_params)
        allowed, reason = self.authorizer.authorize(attributes) if self.rbac else (True, "")
        target = parse_path(path)
        if target is None:
            return self._non_resource(path) if allowed else _error_response(rbac.refusal(attributes, reason))
        verb, client = attributes.verb, user.name

        def record(code: int) -> None:
            self.faults.record(RequestRecord(verb, target.resource, target.namespace, target.name, client,
                                             user_agent, code, time.monotonic()))

        if not allowed:
            record(403)
            return _error_response(rbac.refusal(attributes, reason))
        fault = self.faults.take(verb, target.resource, target.namespace, target.name, client, user_agent)

        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status and not (verb == "watch" and fault.status == 410):
                error = errors.ApiError(fault.status, _REASONS.get(fault.status, "InternalError"), fault.message,
                                        retry_after=fault.retry_after,
                                        details={"retryAfterSeconds": fault.retry_after} if fault.retry_after else None)
                record(fault.status)
                return _error_response(error)
        try:
            response = await self._dispatch(request, target, verb, fault, user)
        except errors.ApiError as error:
            record(error.code)
            return _error_response(error)
        except Exception as exc:  # a stand-in bug: answer like the API server does, and log it for the developer
            log.exception("devcluster: %s %s failed", request.method, path)
            record(500)
            return _error_response(errors.ApiError(500, "InternalError", f"Internal error occurred: {exc}"))
        record(response.status_code)
        return response

    def _non_resource(self, path: str) -> Response:
        stripped = path.rstrip("/") or "/"
        if stripped == "/version":
            return JSONResponse(discovery.KUBERNETES_VERSION)
        if stripped == "/api":
            return JSONResponse(discovery.api_versions(self.address))
        if stripped == "/apis":
            return JSONResponse(discovery.api_group_list())
        if stripped == "/api/v1":
            return JSONResponse(discovery.resource_list(""))
        parts = [p for p in stripped.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in discovery.groups():
            return JSONResponse(discovery.api_group(parts[1]))
        if len(parts) == 3 and parts[0] == "apis" and parts[1] in discovery.groups() and parts[2] == "v1":
            return JSONResponse(discovery.resource_list(parts[1]))
        if stripped == "/openapi/v3":
            return JSONResponse(discovery.openapi_v3_root())
        if stripped.startswith("/openapi/v3/"):
            key = stripped.removeprefix("/openapi/v3/")
            group = "" if key == "api/v1" else key.removeprefix("apis/").removesuffix("/v1")
            if group in discovery.groups() and key in (f"apis/{group}/v1", "api/v1"):
                return JSONResponse(discovery.openapi_v3_group(group))
        if stripped in ("/healthz", "/readyz", "/livez"):
            return PlainTextResponse("ok")
        return _error_response(errors.ApiError(404, "NotFound", "the server could not find the requested resource"))

    async def _dispatch(self, request: Request, target: Target, verb: str, fault: Fault | None,
                        user: User) -> Response:
        query = request.query_params
        dry_run = query.get("dryRun") == "All"
        rtype = target.rtype
        if rtype.namespaced and not target.namespace and verb not in ("list", "watch"):
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if rtype.read_only and verb not in ("get", "list", "watch"):
            raise errors.ApiError(405, "MethodNotAllowed", f"{rtype.plural} are read-only in the stand-in cluster")
        namespace = target.namespace if rtype.namespaced else ""
        if verb in ("list", "watch"):
            labels, fields = self._selectors(query.get("labelSelector"), query.get("fieldSelector"), rtype)
            if verb == "watch":
                return self._watch(request, target, labels, fields, fault)
            listing = self.store.list(rtype, namespace or None, labels, fields,
                                      int(query["limit"]) if query.get("limit") else None, query.get("continue"),
                                      copies=False)  # rendered below, before anything can change them
            if "as=Table" in request.headers.get("accept", ""):
                return JSONResponse(discovery.table(rtype, listing["items"], listing["metadata"]))
            return JSONResponse(listing)
        if verb == "get":
            return await self._get(request, target, namespace)
        body = await self._body(request)
        if verb in ("create", "update", "patch"):
            return self._write(request, target, verb, namespace, body, dry_run, user)
        return self._delete(request, target, verb, namespace, body, dry_run)

    async def _get(self, request: Request, target: Target, namespace: str) -> Response:
        """GET of one object (as a Table for kubectl) or of a pod's log."""
        rtype = target.rtype
        if target.subresource == "log":
            return await self._log(request, namespace, target.name)
        if target.subresource == "proxy":
            return self._node_proxy(request, target)
        obj = self.store.get(rtype, namespace, target.name)
        if "as=Table" in request.headers.get("accept", ""):
            return JSONResponse(discovery.table(rtype, [obj], {"resourceVersion": obj["metadata"][
                "resourceVersion"]}))
        return JSONResponse(obj)

    def _write(self, request: Request, target: Target, verb: str, namespace: str, body: Any,
               dry_run: bool, user: User) -> Response:
        """create (or a pod eviction, or a service account's TokenRequest), update and patch, each after the
        OwnerReferencesPermissionEnforcement admission."""
        rtype = target.rtype
        if verb == "create":
            if target.subresource == "eviction":
                self.store.get(rtype, namespace, target.name)
                self.evict(namespace, target.name, (body or {}).get("deleteOptions") or {})
                return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                     "code": 201}, status_code=201)
            if target.subresource == "token":
                return JSONResponse(self._token_request(namespace, target.name, body, dry_run), status_code=201)
            if isinstance(body, dict):
                self._admit(user, target, namespace, body, None)
            return JSONResponse(self.store.create(rtype, namespace, body, dry_run), status_code=201)
        current = self.store.get(rtype, namespace, target.name)
        if verb == "update":
            if isinstance(body, dict):
                self._admit(user, target, namespace, body, current)
            return JSONResponse(self.store.update(rtype, namespace, target.name, body, target.subresource or None,
                                                  dry_run))
        try:
            patched = apply_patch(current, request.headers.get("content-type", ""), body)
        except PatchError as exc:
            raise errors.ApiError(422, "Invalid", str(exc)) from exc
        self._admit(user, target, namespace, patched, current)
        if "resourceVersion" not in (patched.get("metadata") or {}):
            patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return JSONResponse(self.store.update(rtype, namespace, target.name, patched, target.subresource or None,
                                              dry_run))

    def _admit(self, user: User, target: Target, namespace: str, new: dict[str, Any],
               old: dict[str, Any] | None) -> None:
        if self.owner_references_permission_enforcement:
            ownerrefs.admit(self.authorizer, user, target.rtype, target.subresource, namespace, new, old)

    def _token_request(self, namespace: str, name: str, body: Any, dry_run: bool) -> dict[str, Any]:
        """`serviceaccounts/token` (TokenRequest, what `kubectl create token` sends): a token that
        authenticates as the account. The expiry is reported but not enforced; audiences are echoed."""
        account = self.store.get(BY_PATH[("", "v1", "serviceaccounts")], namespace, name)
        spec = dict((body or {}).get("spec") or {}) if isinstance(body, dict) else {}
        seconds = int(spec.get("expirationSeconds") or 3600)
        if seconds < 600:
            raise errors.invalid("authentication.k8s.io", "TokenRequest", name, [
                ("spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration less than 10 minutes")])
        spec.update(expirationSeconds=seconds, audiences=spec.get("audiences") or ["https://kubernetes.default.svc"])
        token = "" if dry_run else users.mint(self.tokens, users.service_account(namespace, name))
        expires = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None,
                             "uid": account["metadata"]["uid"]},
                "spec": spec, "status": {"token": token, "expirationTimestamp": expires}}

    def _delete(self, request: Request, target: Target, verb: str, namespace: str, body: Any,
                dry_run: bool) -> Response:
        """delete of one object, or deletecollection, with the DeleteOptions of the query or the body."""
        query = request.query_params
        rtype = target.rtype
        options = body if isinstance(body, dict) else {}
        propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
        if propagation is None and (options.get("orphanDependents") or _flag(query.get("orphanDependents"))):
            propagation = "Orphan"
        grace = query.get("gracePeriodSeconds") or options.get("gracePeriodSeconds")
        grace_value = int(grace) if grace is not None else None
        if verb == "delete":
            return JSONResponse(self.store.delete(rtype, namespace, target.name, propagation=propagation,
                                                  grace_period=grace_value,
                                                  preconditions=options.get("preconditions"), dry_run=dry_run))
        labels, fields = self._selectors(query.get("labelSelector"), query.get("fieldSelector"), rtype)
        listing = self.store.list(rtype, namespace or None, labels, fields)
        deleted = [
            self.store.delete(rtype, item["metadata"].get("namespace", ""), item["metadata"]["name"],
                              propagation=propagation, grace_period=grace_value, dry_run=dry_run)
            for item in listing["items"]
        ]
        return JSONResponse({**listing, "items": deleted})

    @staticmethod
    def _selectors(label_text: str | None, field_text: str | None, rtype: ResourceType
                   ) -> tuple[list[Requirement], list[FieldRequirement]]:
        try:
            return parse_label_selector(label_text), parse_field_selector(field_text, rtype.plural)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc

    def _node_proxy(self, request: Request, target: Target) -> Response:
        """`nodes/{name}/proxy/...`: the API server passes the request to the node's kubelet, which serves
        `/stats/summary` here and answers any other path as its mux does (404, plain text)."""
        self.store.get(target.rtype, "", target.name)  # NotFound for a node that does not exist
        only_cpu_and_memory = request.query_params.get("only_cpu_and_memory") == "true"
        summary = self.node_stats.stats_summary(target.name, only_cpu_and_memory) \
            if target.proxy_path == "/stats/summary" else None
        if summary is None:
            return PlainTextResponse("404 page not found\n", status_code=404)
        return JSONResponse(summary)

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return None
        if request.headers.get("content-type", "").startswith(protobuf.CONTENT_TYPE):
            try:
                return protobuf.decode(raw)
            except (protobuf.ProtobufError, UnicodeDecodeError, KeyError) as exc:
                raise errors.ApiError(415, "UnsupportedMediaType", str(exc)) from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from exc

    # -- watch --------------------------------------------------------------------------------------

    def _watch(self, request: Request, target: Target, labels: list[Requirement], fields: list[FieldRequirement],
               fault: Fault | None) -> Response:
        query = request.query_params
        rtype = target.rtype
        timeout = min(float(query.get("timeoutSeconds") or self.max_watch_seconds), self.max_watch_seconds)
        if fault is not None and fault.drop_after is not None:
            timeout = min(timeout, fault.drop_after)
        view = _WatchView(rtype, target.namespace if rtype.namespaced else "", labels, fields,
                          "as=Table" in request.headers.get("accept", ""))
        watch = _Watch(self, view, query.get("resourceVersion") or "", timeout, _flag(query.get("allowWatchBookmarks")),
                       self.watch_delays.get(rtype.plural, 0.0), fault)
        return StreamingResponse(watch.stream(), media_type="application/json",
                                 headers={"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})

    # -- logs ---------------------------------------------------------------------------------------

    @staticmethod
    def _log_container(pod: dict[str, Any], container: str, previous: bool) -> str:
        """The container whose log is asked for, refused as kube-apiserver refuses it: unnamed in a pod of
        several, unknown, still waiting to start, or with no previous instance."""
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        init_containers = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                    + (f" or one of the init containers: [{' '.join(init_containers)}]" if init_containers else ""))
            container = containers[0]
        if container not in containers + init_containers:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        statuses = (pod.get("status") or {}).get("containerStatuses", []) + (pod.get("status") or {}).get(
            "initContainerStatuses", [])
        state = next((s for s in statuses if s.get("name") == container), None)
        waiting = ((state or {}).get("state") or {}).get("waiting")
        if state is None or (waiting is not None and not state.get("lastState") and not previous):
            reason = (waiting or {}).get("reason") or (
                "PodInitializing" if container not in init_containers and init_containers else "ContainerCreating")
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        if previous and not state.get("lastState"):
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return container

    async def _log(self, request: Request, namespace: str, name: str) -> Response:
        pod = self.store.get(BY_PATH[("", "v1", "pods")], namespace, name)
        options = _LogOptions.parse(request.query_params, name, self.split_log_streams)
        container = self._log_container(pod, request.query_params.get("container") or "", options.previous)
        lines = options.select(self.logs.read_log(pod, container, options.previous))
        if options.tail is not None:
            lines = lines[-options.tail:] if options.tail > 0 else []
        if not options.follow or options.previous:
            data = b"".join(lines)
            return Response(data[:options.limit] if options.limit is not None else data, media_type="text/plain")
        followed = self._followed_log(pod, container, options, lines)
        return StreamingResponse(_limited(followed, options.limit), media_type="text/plain")

    async def _followed_log(self, pod: dict[str, Any], container: str, options: _LogOptions,
                            lines: list[bytes]) -> AsyncGenerator[bytes, None]:
        """The lines so far, then each new one as the container writes it, until the container stops."""
        meta = pod["metadata"]
        seen = len(self.logs.read_log(pod, container, options.previous))
        for line in lines:
            yield line
        while True:
            try:
                current = self.store.get(BY_PATH[("", "v1", "pods")], meta["namespace"], meta["name"])
            except errors.ApiError:
                return
            running = self.logs.is_running(current, container)
            records = self.logs.read_log(current, container, False)
            for line in options.select(records[seen:]):
                yield line
            seen = len(records)
            if not running:
                return
            await asyncio.sleep(0.1)


async def _limited(source: AsyncGenerator[bytes, None], limit: int | None) -> AsyncIterator[bytes]:
    """`source` cut at `limit` bytes (a followed log's limitBytes)."""
    sent = 0
    async with aclosing(source):
        async for line in source:
            chunk = line if limit is None else line[: max(0, limit - sent)]
            sent += len(chunk)
            if chunk:
                yield chunk
            if limit is not None and sent >= limit:
                return


@dataclass(frozen=True)
class _LogOptions:
    """A pod log request's options (PodLogOptions), checked as kube-apiserver checks them."""

    previous: bool
    follow: bool
    timestamps: bool
    tail: int | None
    limit: int | None
    since: int | None
    stream: str | None
    """Only "stdout" or "stderr" when one stream is asked for and the split is served; None: both."""

    @classmethod
    def parse(cls, query: Any, name: str, split_streams: bool) -> _LogOptions:
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        if limit is not None and limit <= 0:
            raise errors.invalid("", "PodLogOptions", name, [("limitBytes", "Invalid value: must be greater than 0")])
        # Without the PodLogsQuerySplitStreams gate (1.29-1.31 know no `stream`; 1.32+ has it off by default)
        # the parameter is dropped and the combined log is served. With it, ValidatePodLogOptions checks it.
        asked = (query.get("stream") if split_streams else None) or "All"
        if asked not in ("Stdout", "Stderr", "All"):
            raise errors.invalid("", "PodLogOptions", name, [
                ("stream", f'Unsupported value: "{asked}": supported values: "Stdout", "Stderr", "All"')])
        if asked != "All" and query.get("tailLines"):
            raise errors.invalid("", "PodLogOptions", name, [
                ("", "Forbidden: `tailLines` and specific `stream` are mutually exclusive for now")])
        stream = {"Stdout": "stdout", "Stderr": "stderr"}.get(asked)
        return cls(previous=_flag(query.get("previous")), follow=_flag(query.get("follow")),
                   timestamps=_flag(query.get("timestamps")),
                   tail=int(query["tailLines"]) if query.get("tailLines") else None, limit=limit,
                   since=int(query["sinceSeconds"]) if query.get("sinceSeconds") else None, stream=stream)

    def select(self, records: list[tuple[str, str, bytes]]) -> list[bytes]:
        """The records (timestamp, stream, line) this request shows, as lines to send."""
        if self.stream:
            records = [r for r in records if r[1] == self.stream]
        if self.since is not None:
            cutoff = timestamp_ago(self.since)
            records = [r for r in records if r[0] >= cutoff]
        return [(f"{r[0]} ".encode() if self.timestamps else b"") + r[2] for r in records]


class _WatchRefused(Exception):
    """The starting point cannot be served (a compacted or invalid resourceVersion): sent as an ERROR event."""

    def __init__(self, error: errors.ApiError) -> None:
        self.error = error


class _Watch:
    """One watch stream: the starting point (the current objects, or the history since a resourceVersion),
    then live events, each delayed by its resource's watch-cache delay, with bookmarks, until the timeout,
    a dropped-watches fault, or the client leaving."""

    def __init__(self, server: ApiServer, view: _WatchView, since: str, timeout: float, bookmarks: bool,
                 delay: float, fault: Fault | None) -> None:
        self.server, self.view, self.since, self.timeout = server, view, since, timeout
        self.bookmarks, self.delay, self.fault = bookmarks, delay, fault
        self.queue: asyncio.Queue[tuple[float, WatchEvent]] = asyncio.Queue()
        plural = view.rtype.plural
        # Subscribed before the starting point is read, so no change falls between the two.
        self.unsubscribe = server.store.subscribe(
            lambda e: self.queue.put_nowait((time.monotonic(), e)) if e.plural == plural else None)
        self.generation = server.faults.watch_generation
        self.last = server.store.revision  # set again when the stream starts

    async def stream(self) -> AsyncIterator[bytes]:
        # The starting point is read in this same step of the loop as `last`: a change made after the
        # request arrived but before the stream started is then either in it or after it, never both.
        self.last = self.server.store.revision
        try:
            if self.fault is not None and self.fault.half_open:
                await asyncio.Event().wait()  # until the client gives up (or the cluster stops)
            if self.fault is not None and self.fault.status == 410:
                yield self.view.encode("ERROR", errors.gone(
                    f"too old resource version: {self.since} ({self.server.store.revision})").status())
                return
            try:
                for line in self._start():
                    yield line
            except _WatchRefused as refused:
                yield self.view.encode("ERROR", refused.error.status())
                return
            async for line in self._follow():
                yield line
        finally:
            self.unsubscribe()

    def _start(self) -> Iterator[bytes]:
        """The current objects as ADDED (no resourceVersion, or 0), else the history since it."""
        store, view = self.server.store, self.view
        if self.since in ("", "0"):
            # Copied whole before the first line is sent: the stream waits on the client between lines, and
            # an object changed or deleted meanwhile must not show up in the listing (it comes as an event).
            current = [obj for obj in store.iter(view.rtype.plural, view.namespace or None) if view.wanted(obj)]
            for obj in current:
                yield view.encode("ADDED", obj)
            return
        try:
            backlog = store.events_since(view.rtype.plural, int(self.since))
        except ValueError:
            raise _WatchRefused(errors.bad_request(f"invalid resourceVersion {self.since!r}")) from None
        except errors.ApiError as error:
            raise _WatchRefused(error) from None
        for event in backlog:
            if event.resource_version <= self.last and (line := view.translate(event)):
                yield line

    async def _follow(self) -> AsyncIterator[bytes]:
        """Live events after the starting point, and bookmarks when asked for."""
        interval = self.server.bookmark_interval
        deadline = time.monotonic() + self.timeout
        next_bookmark = time.monotonic() + interval
        while (remaining := deadline - time.monotonic()) > 0 and self.server.faults.watch_generation == self.generation:
            wait = min(remaining, 0.25, max(0.0, next_bookmark - time.monotonic()) if self.bookmarks else 0.25)
            try:
                committed, event = await asyncio.wait_for(self.queue.get(), timeout=max(wait, 0.01))
            except TimeoutError:
                if self.bookmarks and time.monotonic() >= next_bookmark:
                    next_bookmark = time.monotonic() + interval
                    yield self.view.encode("BOOKMARK", {
                        "kind": self.view.rtype.kind, "apiVersion": self.view.rtype.api_version,
                        "metadata": {"resourceVersion": str(self.server.store.revision)}})
                continue
            if event.resource_version <= self.last:
                continue
            if (late := committed + self.delay - time.monotonic()) > 0:
                await asyncio.sleep(late)  # this resource's watch cache is that far behind
            if line := self.view.translate(event):
                yield line


class _WatchView:
    """What one watch shows: the objects its namespace and selectors match, encoded as watch events (one-row
    Tables for `kubectl get -w`), with a change that moves an object in or out of the selection sent as
    ADDED or DELETED, as kube-apiserver's watch cache does."""

    def __init__(self, rtype: ResourceType, namespace: str, labels: list[Requirement],
                 fields: list[FieldRequirement], as_table: bool) -> None:
        self.rtype, self.namespace, self.labels, self.fields, self.as_table = rtype, namespace, labels, fields, as_table
        self._first_table = True

    def wanted(self, obj: dict[str, Any]) -> bool:
        if self.namespace and obj["metadata"].get("namespace") != self.namespace:
            return False
        return matches_labels(self.labels, obj["metadata"].get("labels")) and all(f.matches(obj) for f in self.fields)

    def encode(self, kind: str, obj: dict[str, Any]) -> bytes:
        if self.as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
            # kubectl get -w: each event carries a one-row Table; the columns come with the first one.
            obj = discovery.table(self.rtype, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")})
            if not self._first_table:
                obj["columnDefinitions"] = []
            self._first_table = False
        return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()

    def translate(self, event: WatchEvent) -> bytes | None:
        now_in = self.wanted(event.object)
        was_in = event.old is not None and self.wanted(event.old)
        if event.type == "MODIFIED":
            if now_in and was_in:
                return self.encode("MODIFIED", event.object)
            if now_in:
                return self.encode("ADDED", event.object)
            if was_in:
                return self.encode("DELETED", event.object)
            return None
        return self.encode(event.type, event.object) if now_in else None


def timestamp_ago(seconds: int) -> str:
    """The RFC 3339 (nanosecond) log timestamp `seconds` ago, for `sinceSeconds` comparisons."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")

