"""A small synchronous layer over the official `kubernetes` client that speaks plain dicts.

Objects stay JSON dicts end to end (the manifests are dicts, the controller keeps trimmed dicts), so
every call asks the client for the raw response instead of its generated models. Transient failures
(429, 5xx, dropped connections) are retried with jittered backoff; everything else surfaces as a
`KubeError` carrying the status code and the API server's message, of a subclass callers can catch
by meaning (`NotFound`, `Conflict`, `Gone`, `Forbidden`, `Throttled`, `Unreachable`) instead of
comparing status codes. Callers in async code run these methods with `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines
from urllib3.connection import HTTPConnection

log = logging.getLogger("tesk.kubernetes")

Obj = dict[str, Any]
Objects = list[Obj]  # (named: inside `Kube`, `list` is its method)


class KubeError(Exception):
    """A Kubernetes request failed; `status` is the HTTP status (0 when the server was not reached).

    Build one with `KubeError.of` (or `from_api`) to get the subclass that names what happened.
    """

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def transient(self) -> bool:
        """Trying again later may help: the server was unreachable, throttled us, or failed itself."""
        return self.status in (0, 429) or self.status >= 500

    @staticmethod
    def of(status: int, message: str, reason: str = "") -> KubeError:
        """The subclass for this status (plain `KubeError` for the rest)."""
        return _BY_STATUS.get(status, KubeError)(status, message, reason)

    @staticmethod
    def from_response(status: int, body: bytes, what: str) -> KubeError:
        """From an error answer: the API server's Status message and reason when the body is one."""
        message, reason = body.decode("utf-8", errors="replace")[:500], ""
        try:
            status_body = json.loads(body or b"{}")
            message = status_body.get("message") or message
            reason = status_body.get("reason") or ""
        except (ValueError, TypeError, AttributeError):
            pass
        return KubeError.of(status, f"{what}: {message} (HTTP {status})", reason)


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class Conflict(KubeError):
    """409: the name is taken (create), or the object changed since the resourceVersion we sent."""


class Gone(KubeError):
    """410: the resourceVersion a watch or a list's `continue` resumed from is gone: list again."""


class Forbidden(KubeError):
    """403: RBAC or an admission plugin refused the request."""


class Throttled(KubeError):
    """429 after every retry: the API server is shedding load (priority and fairness, or a limit)."""


class Unreachable(KubeError):
    """No HTTP answer at all (connection refused or dropped, timed out) after every retry."""


_BY_STATUS: dict[int, type[KubeError]] = {0: Unreachable, 403: Forbidden, 404: NotFound, 409: Conflict,
                                          410: Gone, 429: Throttled}


@dataclass(frozen=True)
class Kind:
    group_version: str  # "v1" for the core group
    plural: str

    def path(self, namespace: str, name: str = "", subresource: str = "") -> str:
        """The REST path of the collection, or of one object (and its subresource)."""
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        path = f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        if name:
            path += f"/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path


KINDS: dict[str, Kind] = {
    "Job": Kind("batch/v1", "jobs"),
    "Pod": Kind("v1", "pods"),
    "ConfigMap": Kind("v1", "configmaps"),
    "PersistentVolumeClaim": Kind("v1", "persistentvolumeclaims"),
    "Lease": Kind("coordination.k8s.io/v1", "leases"),
    "Event": Kind("v1", "events"),
}

Observe = Callable[[str, str, int], None]
"""observe(verb, resource, HTTP status), called once per request sent (0: no answer)."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LOG_TAIL_ATTEMPTS = 7
"""Cut reads for one tail at most (1000 lines, a quarter as many each time, down to one line)."""
REQUEST_TIMEOUT = (10.0, 60.0)
"""Client-side (connect, read) timeouts: `timeout_seconds` is the server's promise, and a half-open
connection keeps no promises."""


def load_api_client(kubeconfig: Path | None = None, context: str | None = None) -> client.ApiClient:
    """Kubeconfig when given, else in-cluster service account, else `$KUBECONFIG`/`~/.kube/config`."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(str(kubeconfig), context=context, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(context=context, client_configuration=configuration)
    configuration.retries = False  # `Kube._call` retries; urllib3's own retries would multiply its timeouts
    api_client = client.ApiClient(configuration)
    keep_alive(api_client)
    return api_client


def keep_alive(api_client: client.ApiClient, idle: int = 30, interval: int = 15, count: int = 4) -> None:
    """TCP keepalive on every connection the client opens (pools are made lazily, so before the first
    request is soon enough): a peer that vanished without closing (a load balancer's idle drop, an
    API server failover) is noticed in idle + interval * count seconds even on a quiet watch."""
    options = [*HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        if hasattr(socket, name):  # Linux; other systems keep their own timings
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    api_client.rest_client.pool_manager.connection_pool_kw["socket_options"] = options


class Kube:
    """Namespaced CRUD, list, watch and pod logs for the kinds a task uses.

    Requests go out through the client's connection pool (its TLS, proxy, client certificates and
    keepalive) with the client's credentials, but not through its generated API classes: importing
    those costs about a second, which every taskmaster pod would pay before its first request.
    """

    def __init__(self, api_client: client.ApiClient, namespace: str, attempts: int = 5,
                 request_timeout: tuple[float, float] = REQUEST_TIMEOUT, observe: Observe | None = None) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.attempts = attempts
        self.request_timeout = request_timeout
        """(connect, read) seconds for every request; a watch reads for its own timeout plus `read`."""
        self.observe = observe

    def _headers(self, content_type: str | None) -> dict[str, str]:
        """Accept, content type and the credentials the client's configuration holds (a token read
        through its refresh hook, so rotated service-account and exec-plugin tokens are used)."""
        headers = {"Accept": "application/json", "User-Agent": str(self.api_client.user_agent)}
        if content_type:
            headers["Content-Type"] = content_type
        for setting in self.api_client.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    def _send(self, verb: str, resource: str, method: str, path: str, query: dict[str, Any] | None = None,
              body: Obj | None = None, content_type: str = "application/json",
              timeout: tuple[float, float] | None = None) -> Any:
        """One HTTP request; the urllib3 response, unread (a watch streams it)."""
        url = self.api_client.configuration.host + path
        params = {k: ("true" if v is True else v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        connect, read = timeout or self.request_timeout
        status = 0
        try:
            response = self.api_client.rest_client.pool_manager.request(
                method, url, body=None if body is None else json.dumps(body).encode(),
                headers=self._headers(content_type if body is not None else None), preload_content=False,
                timeout=urllib3.Timeout(connect=connect, read=read), retries=False)
            status = int(response.status)
            return response
        finally:
            if self.observe is not None:
                self.observe(verb, resource, status)

    def _call(self, what: str, verb: str, method: str, kind: str, name: str = "", subresource: str = "",
              query: dict[str, Any] | None = None, body: Obj | None = None,
              content_type: str = "application/json", keep_last: int | None = None) -> bytes:
        """A request with retries of transient failures; the answer's body (with `keep_last`, only its
        last that many bytes, read as it streams in: memory stays bounded), or a KubeError."""
        spec = KINDS[kind]
        resource = f"{spec.plural}/{subresource}" if subresource else spec.plural
        return self._request(what, verb, resource, method, spec.path(self.namespace, name, subresource), query, body,
                             content_type, keep_last)

    def _request(self, what: str, verb: str, resource: str, method: str, path: str,
                 query: dict[str, Any] | None = None, body: Obj | None = None,
                 content_type: str = "application/json", keep_last: int | None = None) -> bytes:
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._send(verb, resource, method, path, query, body, content_type)
                try:
                    data = bytes(response.data) if keep_last is None or response.status >= 400 \
                        else _last_bytes(response, keep_last)
                finally:
                    response.release_conn()
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt < self.attempts:
                    log.warning("%s: %s, retrying in %.1fs", what, exc, delay)
                    time.sleep(delay * (0.8 + 0.4 * random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                raise Unreachable(0, f"{what}: the Kubernetes API server could not be reached ({exc})") from None
            if response.status < 400:
                return data
            if response.status in RETRY_STATUSES and attempt < self.attempts:
                retry_after = response.headers.get("Retry-After") or ""
                pause = float(retry_after) if retry_after.isdigit() else delay
                log.warning("%s: HTTP %s, retrying in %.1fs", what, response.status, pause)
                time.sleep(pause * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, 5.0)
                continue
            raise KubeError.from_response(int(response.status), data, what)
        raise AssertionError("unreachable")

    def create(self, body: Obj) -> Obj:
        kind = body["kind"]
        what = f"create {kind} {body['metadata'].get('name')}"
        return _json(self._call(what, "create", "POST", kind, body=body))

    def get(self, kind: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return _json(self._call(f"get {kind} {name}", "get", "GET", kind, name))
        except NotFound:
            return None

    def patch(self, kind: str, name: str, patch: Obj) -> Obj:
        """JSON merge patch; a `metadata.resourceVersion` in it makes it conditional (409 when stale)."""
        return _json(self._call(f"patch {kind} {name}", "patch", "PATCH", kind, name, body=patch,
                                content_type="application/merge-patch+json"))

    def replace(self, kind: str, name: str, body: Obj) -> Obj:
        return _json(self._call(f"replace {kind} {name}", "update", "PUT", kind, name, body=body))

    def delete(self, kind: str, name: str, propagation: str = "Background",
               grace_seconds: int | None = None) -> bool:
        """Delete; False when it was already gone (NotFound is success: someone else won the race)."""
        try:
            self._call(f"delete {kind} {name}", "delete", "DELETE", kind, name,
                       body=_delete_options(propagation, grace_seconds))
        except NotFound:
            return False
        return True

    def delete_collection(self, kind: str, label_selector: str, propagation: str = "Background",
                          grace_seconds: int | None = None) -> None:
        self._call(f"delete {KINDS[kind].plural} {label_selector}", "deletecollection", "DELETE", kind,
                   query={"labelSelector": label_selector}, body=_delete_options(propagation, grace_seconds))

    def list(self, kind: str, label_selector: str, page: int = 500,
             transform: Callable[[Obj], Obj] | None = None, field_selector: str = "") -> tuple[Objects, str]:
        """Every object matching the selector, and the list's resourceVersion to watch from.

        Read in pages of `page` objects (`limit`/`continue`); `transform` (say, a trim) is applied
        to each page as it arrives, so whole untrimmed lists are never held.
        """
        items: Objects = []
        token: str | None = None
        while True:
            query = {"labelSelector": label_selector or None, "fieldSelector": field_selector or None,
                     "limit": page, "continue": token}
            body = _json(self._call(f"list {KINDS[kind].plural} {label_selector}", "list", "GET", kind,
                                    query=query))
            page_items = body.pop("items", None) or []
            items.extend(map(transform, page_items) if transform else page_items)
            del page_items
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def node_summary(self, node: str) -> Obj:
        """The kubelet's Summary API of `node`, CPU and memory only, through the API server's node proxy
        (`get` on `nodes/proxy`, a cluster-wide grant: `Forbidden` without it)."""
        path = f"/api/v1/nodes/{quote(node, safe='')}/proxy/stats/summary"
        return _json(self._request(f"read the stats summary of node {node}", "get", "nodes/proxy", "GET", path,
                                   {"only_cpu_and_memory": "true"}))

    def events_of(self, kind: str, name: str) -> Objects:
        """The Events about one object (why a Job has no pod, what an autoscaler said of a pod)."""
        return self.list("Event", "", field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")[0]

    def watch(self, kind: str, label_selector: str, resource_version: str | None, timeout_seconds: int,
              stop: threading.Event, on_response: Callable[[Any], None] | None = None) -> Iterator[tuple[str, Obj]]:
        """Events `(type, object)` until the server ends the stream or `stop` is set.

        Without a resourceVersion the server first sends the current objects as ADDED (one request
        instead of a list plus a watch). Raises `Gone` on 410, whether the server answers the request
        with it or sends it as an ERROR event in the stream.
        """
        spec = KINDS[kind]
        query = {"labelSelector": label_selector, "watch": True, "timeoutSeconds": timeout_seconds,
                 "allowWatchBookmarks": True, "resourceVersion": resource_version or None}
        connect, read = self.request_timeout
        what = f"watch {spec.plural}"
        try:
            response = self._send("watch", spec.plural, "GET", spec.path(self.namespace), query,
                                  timeout=(connect, timeout_seconds + read))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(0, f"{what}: the Kubernetes API server could not be reached ({exc})") from None
        if response.status >= 400:
            try:
                raise KubeError.from_response(int(response.status), bytes(response.data), what)
            finally:
                response.release_conn()
        if on_response is not None:
            on_response(response)
        try:
            for line in iter_resp_lines(response):
                if stop.is_set():
                    return
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise KubeError.of(int(obj.get("code") or 0), f"watch {KINDS[kind].plural}: {obj.get('message')}",
                                       str(obj.get("reason") or ""))
                yield event["type"], obj
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if not stop.is_set():
                log.info("watch of %s ended early (%s); resuming", KINDS[kind].plural, exc)
        finally:
            response.release_conn()

    def read_log(self, pod: str, container: str, limit_bytes: int, stream: str | None = None) -> str:
        """The last `limit_bytes` of a container's log: of one stream (`stream`: Stdout or Stderr), else
        of stdout and stderr together.

        The API server has no "last bytes": `limitBytes` counts from the start of what it sends, and
        `tailLines` may not be combined with one stream ("`tailLines` and specific `stream` are
        mutually exclusive"). So one stream is read whole and only its end kept, as it arrives; the
        combined log is asked for its last lines (a kubelet counts the parts the runtime split a long
        line into as lines), fewer while they are cut and more while they fall short of `limit_bytes`;
        where no count fits between the two, the fewest lines that were cut are read whole, keeping
        their end.
        """
        what = f"read log of pod {pod}"
        if stream:
            query = {"container": container, "stream": stream}
            return self._call(what, "get", "GET", "Pod", pod, "log", query=query,
                              keep_last=limit_bytes).decode("utf-8", errors="replace")
        cap = 4 * limit_bytes
        lines, grown, cut_at = 1000, False, 0
        for _ in range(LOG_TAIL_ATTEMPTS):
            data = self._call(what, "get", "GET", "Pod", pod, "log",
                              query={"container": container, "tailLines": lines, "limitBytes": cap})
            if len(data) < cap:  # all of the last `lines` lines
                if len(data) >= limit_bytes or cut_at:
                    break
                if data.count(b"\n") < lines or grown:  # the whole log
                    return data.decode("utf-8", errors="replace")
                lines, grown = lines * 16, True
                continue
            cut_at = lines  # more than `cap`: fewer lines may still hold `limit_bytes`
            if lines == 1:
                break
            lines = max(1, lines // 4)
        if not limit_bytes <= len(data) < cap:  # cut at one line, or short of it while more are cut:
            # the fewest lines known to hold more than `cap`, read whole, keeping the end as it arrives
            data = self._call(what, "get", "GET", "Pod", pod, "log",
                              query={"container": container, "tailLines": cut_at}, keep_last=limit_bytes)
        return data[-limit_bytes:].decode("utf-8", errors="replace")


def _last_bytes(response: Any, keep: int) -> bytes:
    """The last `keep` bytes of a response body, read in chunks (never more than `keep` + a chunk held)."""
    tail = bytearray()
    for chunk in response.stream(64 * 1024):
        tail += chunk
        if len(tail) > keep:
            del tail[:len(tail) - keep]
    return bytes(tail)


def _json(data: bytes) -> Obj:
    return json.loads(data) if data else {}


def _delete_options(propagation: str, grace_seconds: int | None) -> Obj:
    options: Obj = {"propagationPolicy": propagation}
    if grace_seconds is not None:
        options["gracePeriodSeconds"] = grace_seconds
    return options
