"""Decode the Kubernetes protobuf bodies that kubectl's typed `create` commands send.

Why: `kubectl create job|configmap|secret|namespace|serviceaccount|token` posts
`application/vnd.kubernetes.protobuf` (accepting JSON back), with no fallback. The stand-in answers
in JSON and only needs to read these few message types, so this is a small wire-format reader with
the field numbers of the upstream `generated.proto` files for the fields those commands set.
Fields outside the table are skipped. As in Go, unset non-pointer fields arrive as zero values
("" / 0 / false) and are dropped; `?` marks pointer fields whose zero value is meaningful.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# message -> field number -> (json name, type). Types: string, bytes, int, bool, "msg:<Name>",
# "map" (string->string), "mapbytes" (string->bytes, base64 in JSON), "quantities" (string->Quantity).
# A leading "*" marks a repeated field, a trailing "?" a pointer field.
SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "msg:TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "string"),
                4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
                   11: ("labels", "map"), 12: ("annotations", "map"),
                   13: ("ownerReferences", "*msg:OwnerReference"), 14: ("finalizers", "*string")},
    "OwnerReference": {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                       5: ("apiVersion", "string"), 6: ("controller", "bool?"), 7: ("blockOwnerDeletion", "bool?")},
    "Job": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:JobSpec")},
    "JobSpec": {1: ("parallelism", "int?"), 2: ("completions", "int?"), 3: ("activeDeadlineSeconds", "int?"),
                5: ("manualSelector", "bool?"), 6: ("template", "msg:PodTemplateSpec"), 7: ("backoffLimit", "int?"),
                8: ("ttlSecondsAfterFinished", "int?"), 9: ("completionMode", "string?"), 10: ("suspend", "bool?")},
    "PodTemplateSpec": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:PodSpec")},
    "PodSpec": {2: ("containers", "*msg:Container"), 3: ("restartPolicy", "string"),
                4: ("terminationGracePeriodSeconds", "int?"), 5: ("activeDeadlineSeconds", "int?"),
                6: ("dnsPolicy", "string"), 7: ("nodeSelector", "map"), 8: ("serviceAccountName", "string"),
                20: ("initContainers", "*msg:Container"), 21: ("automountServiceAccountToken", "bool?")},
    "Container": {1: ("name", "string"), 2: ("image", "string"), 3: ("command", "*string"), 4: ("args", "*string"),
                  5: ("workingDir", "string"), 7: ("env", "*msg:EnvVar"), 8: ("resources", "msg:Resources"),
                  13: ("terminationMessagePath", "string"), 14: ("imagePullPolicy", "string"),
                  20: ("terminationMessagePolicy", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "Resources": {1: ("limits", "quantities"), 2: ("requests", "quantities")},
    "ConfigMap": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map"), 3: ("binaryData", "mapbytes"),
                  4: ("immutable", "bool?")},
    "Secret": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "mapbytes"), 3: ("type", "string"),
               4: ("stringData", "map"), 5: ("immutable", "bool?")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta")},
    "ServiceAccount": {1: ("metadata", "msg:ObjectMeta"), 4: ("automountServiceAccountToken", "bool?")},
    # authentication.k8s.io/v1, what `kubectl create token` posts to serviceaccounts/NAME/token
    "TokenRequest": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:TokenRequestSpec")},
    "TokenRequestSpec": {1: ("audiences", "*string"), 4: ("expirationSeconds", "int?")},
}
TOP_LEVEL = {"Job", "ConfigMap", "Secret", "Namespace", "ServiceAccount", "TokenRequest"}


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf envelope of a supported kind."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _map_entry(raw: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, _, item in _fields(raw):
        if number == 1:
            key = item.decode()
        elif number == 2:
            value = item
    return key, value


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    """Decode one message of the schema into its JSON form."""
    schema = SCHEMA[name]
    out: dict[str, Any] = {}
    for number, _, raw in _fields(data):
        if number not in schema:
            continue
        field, kind = schema[number]
        repeated = kind.startswith("*")
        kind = kind.lstrip("*")
        pointer = kind.endswith("?")
        kind = kind.rstrip("?")
        if kind == "string":
            value: Any = raw.decode()
        elif kind == "bytes":
            value = raw
        elif kind == "int":
            value = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif kind == "bool":
            value = bool(raw)
        elif kind.startswith("msg:"):
            value = decode_message(kind[4:], raw)
        else:
            key, item = _map_entry(raw)
            if kind == "map":
                out.setdefault(field, {})[key] = item.decode()
            elif kind == "mapbytes":
                out.setdefault(field, {})[key] = base64.b64encode(item).decode()
            else:
                out.setdefault(field, {})[key] = _quantity(item)
            continue
        if repeated:
            out.setdefault(field, []).append(value)
        elif pointer or value not in ("", 0, False, {}):
            out[field] = value
    return out


def _quantity(raw: bytes) -> str:
    for number, _, value in _fields(raw):
        if number == 1:
            return value.decode()
    return "0"


def decode(body: bytes) -> dict[str, Any]:
    """Decode a `k8s\\0`-prefixed protobuf body into the JSON object it encodes."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic number")
    envelope = decode_message("Unknown", body[len(MAGIC):])
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind not in TOP_LEVEL:
        raise ProtobufError(
            f"the stand-in cluster reads protobuf only for {', '.join(sorted(TOP_LEVEL))}; send {kind or 'this'} "
            "as JSON (Content-Type: application/json)"
        )
    obj = decode_message(kind, envelope.get("raw", b""))
    return {"apiVersion": type_meta.get("apiVersion"), "kind": kind, **obj}
