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

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.connection import HTTPConnection

log = logging.getLogger("tesk.kubernetes")

Obj = dict[str, Any]


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
    def from_api(exc: ApiException, what: str) -> KubeError:
        message = exc.reason or ""
        reason = ""
        try:
            body = json.loads(exc.body or "{}")
            message = body.get("message") or message
            reason = body.get("reason") or ""
        except (ValueError, TypeError):
            pass
        return KubeError.of(int(exc.status or 0), f"{what}: {message} (HTTP {exc.status})", reason)


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
    api: str
    plural: str
    method: str


KINDS: dict[str, Kind] = {
    "Job": Kind("batch", "jobs", "namespaced_job"),
    "Pod": Kind("core", "pods", "namespaced_pod"),
    "ConfigMap": Kind("core", "configmaps", "namespaced_config_map"),
    "PersistentVolumeClaim": Kind("core", "persistentvolumeclaims", "namespaced_persistent_volume_claim"),
    "Lease": Kind("coordination", "leases", "namespaced_lease"),
    "Event": Kind("core", "events", "namespaced_event"),
}

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
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
    """Namespaced CRUD, list, watch and pod logs for the kinds a task uses."""

    def __init__(self, api_client: client.ApiClient, namespace: str, attempts: int = 5,
                 request_timeout: tuple[float, float] = REQUEST_TIMEOUT) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.attempts = attempts
        self.request_timeout = request_timeout
        """(connect, read) seconds for every request; a watch reads for its own timeout plus `read`."""
        self._apis: dict[str, Any] = {"batch": client.BatchV1Api(api_client), "core": client.CoreV1Api(api_client),
                      "coordination": client.CoordinationV1Api(api_client)}

    def _method(self, kind: str, verb: str) -> Callable[..., Any]:
        spec = KINDS[kind]
        return getattr(self._apis[spec.api], f"{verb}_{spec.method}")  # type: ignore[no-any-return]

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs)
            except ApiException as exc:
                if exc.status in RETRY_STATUSES and attempt < self.attempts:
                    retry_after = (exc.headers or {}).get("Retry-After") if exc.headers else None
                    pause = float(retry_after) if retry_after and retry_after.isdigit() else delay
                    log.warning("%s: HTTP %s, retrying in %.1fs", what, exc.status, pause)
                    time.sleep(pause * (0.8 + 0.4 * random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                raise KubeError.from_api(exc, what) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt < self.attempts:
                    log.warning("%s: %s, retrying in %.1fs", what, exc, delay)
                    time.sleep(delay * (0.8 + 0.4 * random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                raise Unreachable(0, f"{what}: the Kubernetes API server could not be reached ({exc})") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _json(response: Any) -> Obj:
        data = response.data
        return json.loads(data) if data else {}

    def create(self, body: Obj) -> Obj:
        kind = body["kind"]
        what = f"create {kind} {body['metadata'].get('name')}"
        return self._json(self._call(what, self._method(kind, "create"), self.namespace, body))

    def get(self, kind: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return self._json(self._call(f"get {kind} {name}", self._method(kind, "read"), name, self.namespace))
        except NotFound:
            return None

    def patch(self, kind: str, name: str, patch: Obj) -> Obj:
        """JSON merge patch; a `metadata.resourceVersion` in it makes it conditional (409 when stale)."""
        fn = self._method(kind, "patch")
        return self._json(self._call(f"patch {kind} {name}", fn, name, self.namespace, patch,
                                     _content_type="application/merge-patch+json"))

    def replace(self, kind: str, name: str, body: Obj) -> Obj:
        return self._json(self._call(f"replace {kind} {name}", self._method(kind, "replace"), name,
                                     self.namespace, body))

    def delete(self, kind: str, name: str, propagation: str = "Background",
               grace_seconds: int | None = None) -> bool:
        """Delete; False when it was already gone (NotFound is success: someone else won the race)."""
        body = {"propagationPolicy": propagation}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds  # type: ignore[assignment]
        try:
            self._call(f"delete {kind} {name}", self._method(kind, "delete"), name, self.namespace, body=body)
        except NotFound:
            return False
        return True

    def delete_collection(self, kind: str, label_selector: str, propagation: str = "Background",
                          grace_seconds: int | None = None) -> None:
        fn = self._method(kind, "delete_collection")
        body: dict[str, Any] = {"propagationPolicy": propagation}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        self._call(f"delete {KINDS[kind].plural} {label_selector}", fn, self.namespace,
                   label_selector=label_selector, body=body)

    def list(self, kind: str, label_selector: str, page: int = 500,
             transform: Callable[[Obj], Obj] | None = None, field_selector: str = "") -> tuple[list[Obj], str]:
        """Every object matching the selector, and the list's resourceVersion to watch from.

        Read in pages of `page` objects (`limit`/`continue`); `transform` (say, a trim) is applied
        to each page as it arrives, so whole untrimmed lists are never held.
        """
        items: list[Obj] = []
        token: str | None = None
        fn = self._method(kind, "list")
        while True:
            kwargs: dict[str, Any] = {"label_selector": label_selector, "limit": page}
            if field_selector:
                kwargs["field_selector"] = field_selector
            if token:
                kwargs["_continue"] = token
            body = self._json(self._call(f"list {KINDS[kind].plural} {label_selector}", fn, self.namespace,
                                         **kwargs))
            page_items = body.pop("items", None) or []
            items.extend(map(transform, page_items) if transform else page_items)
            del page_items
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def events_of(self, kind: str, name: str) -> list[Obj]:
        """The Events about one object (why a Job has no pod, what an autoscaler said of a pod)."""
        return self.list("Event", "", field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")[0]

    def watch(self, kind: str, label_selector: str, resource_version: str | None, timeout_seconds: int,
              stop: threading.Event, on_response: Callable[[Any], None] | None = None) -> Iterator[tuple[str, Obj]]:
        """Events `(type, object)` until the server ends the stream or `stop` is set.

        Without a resourceVersion the server first sends the current objects as ADDED (one request
        instead of a list plus a watch). Raises `Gone` on 410, whether the server answers the request
        with it or sends it as an ERROR event in the stream.
        """
        kwargs: dict[str, Any] = {"label_selector": label_selector, "watch": True,
                                  "timeout_seconds": timeout_seconds, "allow_watch_bookmarks": True}
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            connect, read = self.request_timeout
            response = self._method(kind, "list")(self.namespace, _preload_content=False,
                                                  _request_timeout=(connect, timeout_seconds + read), **kwargs)
        except ApiException as exc:
            raise KubeError.from_api(exc, f"watch {KINDS[kind].plural}") from None
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
        """About the last `limit_bytes` of a container's log (`stream`: Stdout or Stderr, else both).

        The server caps bytes from the *start* of what it sends, so we ask for the last lines (or,
        for one stream, where tailLines is not allowed, a bounded read) and keep the end ourselves.
        """
        kwargs: dict[str, Any] = {"container": container, "limit_bytes": 4 * limit_bytes}
        if stream:
            kwargs["stream"] = stream
        else:
            kwargs["tail_lines"] = 1000
        response = self._call(f"read log of pod {pod}", self._apis["core"].read_namespaced_pod_log, pod,
                              self.namespace, **kwargs)
        data = bytes(response.data)[-limit_bytes:]
        return data.decode("utf-8", errors="replace")
