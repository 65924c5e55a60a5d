"""Label and field selectors, parsed and matched the way the Kubernetes API server does.

Why our own parser: a selector that is silently ignored returns too many objects, and that is the
class of bug the stand-in exists to catch (kmock and mockernetes both ignore `!key` and `in (...)`).
Grammar (apimachinery `labels.Parse`): comma-separated requirements, each one of
`key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class SelectorError(ValueError):
    """A selector the API server would reject with 400 BadRequest."""


def label_key_error(key: str) -> str | None:
    """Why `key` is not a valid label key (prefix/name), or None when it is valid."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"prefix part of {key!r} must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            f"name part of {key!r} must be 63 characters or less, start and end with an alphanumeric "
            "character, and contain only alphanumerics, '-', '_' or '.'"
        )
    return None


def label_value_error(value: str) -> str | None:
    """Why `value` is not a valid label value, or None when it is valid."""
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            f"label value {value!r} must be 63 characters or less, empty or start and end with an "
            "alphanumeric character, and contain only alphanumerics, '-', '_' or '.'"
        )
    return None


@dataclass(frozen=True)
class Requirement:
    """One requirement of a label selector: `key <operator> values`."""

    key: str
    operator: str  # one of: exists, !, =, !=, in, notin
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels satisfies the requirement."""
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        # `!=` and `notin` also match objects that do not carry the key at all.
        return not present or labels[self.key] not in self.values


_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:  # pragma: no cover - the pattern accepts every non-blank character
            raise SelectorError(f"unable to parse requirement at {text[pos:]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string; an empty selector matches everything."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end of selector {text!r}")
        token = tokens[i]
        i += 1
        return token

    def key(token: str) -> str:
        if token in ("!=", "==", "=", "(", ")", ",", "!"):
            raise SelectorError(f"unable to parse requirement: found {token!r}, expected: identifier")
        error = label_key_error(token)
        if error:
            raise SelectorError(f"unable to parse requirement: invalid label key {token!r}: {error}")
        return token

    def value(token: str) -> str:
        if token in ("!=", "==", "=", "(", ")", ",", "!"):
            raise SelectorError(f"unable to parse requirement: found {token!r}, expected: value")
        error = label_value_error(token)
        if error:
            raise SelectorError(f"unable to parse requirement: invalid label value: {error}")
        return token

    while i < len(tokens):
        token = take()
        if token == "!":
            requirements.append(Requirement(key(take()), "!"))
        else:
            name = key(token)
            following = tokens[i] if i < len(tokens) else ","
            if following == ",":
                requirements.append(Requirement(name, "exists"))
            elif following in ("=", "==", "!="):
                i += 1
                nxt = tokens[i] if i < len(tokens) else ","
                if nxt == ",":
                    requirements.append(Requirement(name, "=" if following != "!=" else "!=", ("",)))
                else:
                    requirements.append(Requirement(name, "!=" if following == "!=" else "=", (value(take()),)))
            elif following in ("in", "notin"):
                i += 1
                if take() != "(":
                    raise SelectorError(f"unable to parse requirement: expected '(' after {following!r}")
                values: list[str] = []
                while True:
                    item = take()
                    if item == ")":
                        break
                    if item == ",":
                        continue
                    values.append(value(item))
                if not values:
                    raise SelectorError(
                        "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty"
                    )
                requirements.append(Requirement(name, following, tuple(values)))
            else:
                raise SelectorError(
                    f"unable to parse requirement: found {following!r}, expected: "
                    "in, notin, =, ==, !=, ',' or end of string"
                )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"unable to parse requirement: found {tokens[i]!r}, expected: ','")
            i += 1
            if i >= len(tokens):
                raise SelectorError(f"unable to parse requirement: selector {text!r} ends with ','")
    return requirements


def matches_labels(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    """Whether every requirement holds for `labels` (an empty list matches every object)."""
    present = labels or {}
    return all(r.matches(present) for r in requirements)


FieldGetter = Callable[[Mapping[str, Any]], str | None]

# Field selectors each resource supports; like the API server, anything else is a 400.
FIELD_PATHS: dict[str, dict[str, FieldGetter]] = {
    "*": {
        "metadata.name": lambda o: o["metadata"].get("name"),
        "metadata.namespace": lambda o: o["metadata"].get("namespace"),
    },
    "pods": {
        "status.phase": lambda o: (o.get("status") or {}).get("phase"),
        "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
        "spec.restartPolicy": lambda o: (o.get("spec") or {}).get("restartPolicy"),
    },
    "jobs": {"status.successful": lambda o: str((o.get("status") or {}).get("succeeded", 0))},
    "events": {
        "involvedObject.name": lambda o: (o.get("involvedObject") or {}).get("name"),
        "involvedObject.kind": lambda o: (o.get("involvedObject") or {}).get("kind"),
        "involvedObject.uid": lambda o: (o.get("involvedObject") or {}).get("uid"),
        "involvedObject.namespace": lambda o: (o.get("involvedObject") or {}).get("namespace"),
        "involvedObject.apiVersion": lambda o: (o.get("involvedObject") or {}).get("apiVersion"),
        "involvedObject.resourceVersion": lambda o: (o.get("involvedObject") or {}).get("resourceVersion"),
        "involvedObject.fieldPath": lambda o: (o.get("involvedObject") or {}).get("fieldPath"),
        "source": lambda o: (o.get("source") or {}).get("component"),
        "reason": lambda o: o.get("reason"),
        "type": lambda o: o.get("type"),
    },
}


@dataclass(frozen=True)
class FieldRequirement:
    """One `path=value` or `path!=value` term of a field selector."""

    getter: FieldGetter
    negate: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` satisfies this term."""
        found = self.getter(obj) or ""
        return (found != self.value) if self.negate else (found == self.value)


def parse_field_selector(text: str | None, resource: str) -> list[FieldRequirement]:
    """Parse a field selector for `resource`; unsupported fields are rejected as the API server does."""
    if not text or not text.strip():
        return []
    supported = {**FIELD_PATHS["*"], **FIELD_PATHS.get(resource, {})}
    out: list[FieldRequirement] = []
    for term in text.split(","):
        term = term.strip()
        match = re.match(r"^([^=!]+)(!=|==|=)(.*)$", term)
        if match is None:
            raise SelectorError(f"invalid field selector term {term!r}: expected 'field=value' or 'field!=value'")
        path, operator, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        if path not in supported:
            raise SelectorError(
                f'field label not supported: {path} (supported for {resource}: {", ".join(sorted(supported))})'
            )
        out.append(FieldRequirement(supported[path], operator == "!=", value))
    return out
