"""The whole configuration of a tesk server: one object, read once from the environment and flags.

`TeskConfig.read()` builds every section from the environment; the keyword arguments (what `tesk serve`'s
flags and tests pass) override single fields of a section without touching `os.environ`. Each section is
a pydantic-settings class in this package, so the configuration sits in the bottom layer and imports no
backend: the backends, the filer, auth and the API receive their section from the one object. The
variable names are the seed's (`TESK_API_TASKMASTER_*`, `SPRING_PROFILES_ACTIVE`, `HOST_BASE_PATH`, ...)
and tesk's own (`TESK_*`), unchanged; `describe_environment()` lists them all for `tesk serve --help`.

Processes that are not the server (`tesk taskmaster`, `tesk filer`, `tesk worker`) read only the section
they need, from the environment the server gave them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic_settings import BaseSettings

from tesk.config.auth import AuthSettings
from tesk.config.callbacks import CallbackSettings
from tesk.config.filer import FilerSettings
from tesk.config.kubernetes import KubernetesSettings
from tesk.config.local import LocalSettings
from tesk.config.server import ServerSettings
from tesk.config.service_info import ServiceInfoSettings
from tesk.config.slurm import SlurmSettings
from tesk.config.store import StoreSettings
from tesk.config.values import comma_list, default_data_dir

__all__ = [
    "AuthSettings", "CallbackSettings", "FilerSettings", "KubernetesSettings", "LocalSettings", "ServerSettings",
    "ServiceInfoSettings", "SlurmSettings", "StoreSettings", "TeskConfig", "comma_list", "default_data_dir",
    "describe_environment", "environment_variable", "section_classes",
]


@dataclass(frozen=True)
class TeskConfig:
    """Every section of the configuration; the field's type is the section's settings class."""

    server: ServerSettings
    store: StoreSettings
    auth: AuthSettings
    callbacks: CallbackSettings
    filer: FilerSettings
    local: LocalSettings
    kubernetes: KubernetesSettings
    slurm: SlurmSettings
    service_info: ServiceInfoSettings

    @classmethod
    def read(cls, **overrides: Mapping[str, Any]) -> TeskConfig:
        """Every section from the environment, with `overrides[section]`'s fields on top
        (`TeskConfig.read(server={"port": 9000})`); an unknown section name is a TypeError."""
        unknown = set(overrides) - set(section_classes())
        if unknown:
            raise TypeError(f"no configuration section {', '.join(sorted(unknown))}")
        return cls(**{name: kind(**overrides.get(name, {})) for name, kind in section_classes().items()})

    def replace(self, **sections: BaseSettings) -> TeskConfig:
        """A copy with whole sections swapped (tests build a section by hand)."""
        return dataclasses.replace(self, **sections)

    @property
    def database_url(self) -> str:
        """The task store's URL: the store section's, or SQLite in the server's data folder."""
        return self.store.url(self.server.data_dir)


def section_classes() -> dict[str, type[BaseSettings]]:
    """Section name -> its settings class, in the order of `TeskConfig`'s fields."""
    hints = get_type_hints(TeskConfig)
    return {field.name: hints[field.name] for field in dataclasses.fields(TeskConfig)}


def environment_variable(kind: type[BaseSettings], name: str) -> str:
    """The variable a field of a section is read from: its upper-case alias, else prefix + name."""
    field = kind.model_fields[name]
    if field.alias and field.alias.isupper():
        return field.alias
    return f"{kind.model_config.get('env_prefix', '')}{name}".upper()


def describe_environment() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for every field of every section, for `--help` and the README."""
    rows: list[tuple[str, str, str]] = []
    for kind in section_classes().values():
        for name, field in kind.model_fields.items():
            default = "" if field.is_required() or field.default is None else str(field.default)
            if field.default_factory is not None:
                default = "(computed)"
            rows.append((environment_variable(kind, name), default, field.description or ""))
    return rows
