"""The composition root: the one place that picks the classes a server is made of.

`compose(config)` builds, from the configuration alone, the task store (timed, so every caller is
measured), the backend `config.server.backend` names, the access checks of the auth section, the
event hub with its consumers (metrics; callbacks when hosts are allowed) and the service-info body,
and returns them as `Services` for `tesk.api.app.create_app`. Tests hand in their own store, backend
or access object in place of the configured one; nothing is patched after it is built.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import tesk
from tesk.api.access import Access
from tesk.api.callbacks import CallbackNotifier
from tesk.api.hub import EventHub
from tesk.api.metrics import watch_task_events
from tesk.api.services import Services
from tesk.auth.fastapi import SwaggerOAuth, build_access, swagger_oauth
from tesk.backends import Backend, load_backend
from tesk.config import ServiceInfoSettings, TeskConfig
from tesk.config.filer import supported_schemes
from tesk.models import TES_VERSION, ServiceInfo, dump
from tesk.store import TaskStore
from tesk.store.sql import SqlTaskStore
from tesk.store.timed import TimedStore

SERVICE_CREATED_AT = "2026-11-27T00:00:00Z"


def compose(
    config: TeskConfig,
    *,
    store: TaskStore | None = None,
    backend: Backend | None = None,
    access: Access | None = None,
    oauth: SwaggerOAuth | None = None,
) -> Services:
    """The services of one API server. Without `access`, the auth section's access checks and its
    Swagger login; with `access`, Swagger UI has a login only when `oauth` is given."""
    timed: TaskStore = TimedStore(store or SqlTaskStore(config.database_url, busy_seconds=config.store.busy_seconds))
    if backend is None:
        backend = load_backend(config, timed)
    if access is None:
        access = build_access(config.auth)
        oauth = oauth or swagger_oauth(config.auth)
    hub = EventHub(timed)
    hub.add_consumer("metrics", watch_task_events)
    if config.callbacks.host_patterns():
        hub.add_consumer("callbacks", CallbackNotifier(config.callbacks).consume)
    service_info = build_service_info(config.service_info, backend, supported_schemes(config.filer))
    return Services(config=config, store=timed, backend=backend, access=access, hub=hub,
                    service_info=service_info, oauth=oauth)


def build_service_info(settings: ServiceInfoSettings, backend: Backend, storage: list[str]) -> dict[str, Any]:
    """service-info with every required field, overridable from YAML and `TESK_SERVICE_INFO_*`."""
    values: dict[str, Any] = {
        "id": "org.ga4gh.tesk",
        "name": "tesk",
        "description": f"GA4GH Task Execution Service running tasks on the {backend.name} backend",
        "organization": {"name": "tesk", "url": "https://github.com/elixir-cloud-aai/TESK"},
        "documentationUrl": "https://github.com/elixir-cloud-aai/TESK",
        "createdAt": SERVICE_CREATED_AT,
        "updatedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "environment": "dev",
        "version": tesk.__version__,
        "type": {"group": "org.ga4gh", "artifact": "tes", "version": TES_VERSION},
    }
    values.update(settings.overrides())
    values["storage"] = storage
    values["tesResources_backend_parameters"] = sorted(backend.backend_parameters)
    return dump(ServiceInfo.model_validate(values))
