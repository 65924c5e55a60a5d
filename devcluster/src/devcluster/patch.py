"""The three patch flavours of the Kubernetes API: JSON merge, strategic merge and JSON patch.

Why all three: the official Python client sends a dict patch as strategic merge by default, while
other clients send merge or JSON patches; each treats lists differently (merge replaces a list,
strategic merge merges lists of objects by their merge key, JSON patch addresses elements by index
and can `test` a value), and code that works against one can break against another.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# Lists merged by key in strategic merge patches (the `patchMergeKey` of the Kubernetes types we serve).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "env": "name",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "tolerations": "key",
    "topologySpreadConstraints": "topologyKey",
}
# Lists of primitives merged as sets in strategic merge patches.
MERGED_PRIMITIVE_LISTS = {"finalizers"}


class PatchError(ValueError):
    """A patch the API server would reject (422 or 400) or whose `test` failed."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Kubernetes strategic merge: like merge patch, but lists of objects merge by their merge key.

    Supports the `$patch: replace|delete` directives on maps and list items and
    `$deleteFromPrimitiveList/<field>`; `$retainKeys` and `$setElementOrder` are accepted and ignored
    (they only affect ordering and cleanup of fields we do not model).
    """
    if isinstance(patch, list) and isinstance(target, list):
        return _merge_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge_patch(result.get(key), value, key)
        if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _merge_list(target: list[Any], patch: list[Any], field: str) -> list[Any]:
    merge_key = MERGE_KEYS.get(field)
    if field in MERGED_PRIMITIVE_LISTS:
        return list(target) + [v for v in patch if v not in target]
    if merge_key is None or not all(isinstance(item, dict) for item in patch):
        if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
            return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
        return copy.deepcopy(patch)
    if any(item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if "$patch" not in i]
    result = copy.deepcopy(target)
    for item in patch:
        if merge_key not in item:
            raise PatchError(f"strategic merge patch: an item of {field!r} lacks its merge key {merge_key!r}")
        position = next(
            (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del result[position]
        elif position is None:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            result[position] = strategic_merge_patch(result[position], item, field)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON patch: path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _resolve(document: Any, parts: list[str], path: str) -> Any:
    node = document
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"JSON patch: path {path!r} does not exist")
    return node


def _index(container: list[Any], part: str, path: str, adding: bool) -> int:
    if adding and part == "-":
        return len(container)
    if not part.isdigit():
        raise PatchError(f"JSON patch: {part!r} in {path!r} is not an array index")
    index = int(part)
    if index > len(container) or (not adding and index == len(container)):
        raise PatchError(f"JSON patch: index {index} in {path!r} is out of range")
    return index


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test; applied in order, all or nothing."""
    if not isinstance(operations, list):
        raise PatchError("JSON patch: the body must be a JSON array of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"JSON patch: invalid operation {operation!r}: needs 'op' and 'path'")
        op, path = operation["op"], operation["path"]
        parts = _pointer(path)
        if op == "test":
            if _resolve(result, parts, path) != operation.get("value"):
                raise PatchError(f"JSON patch: test failed at {path!r}")
            continue
        if op in ("move", "copy"):
            source = _pointer(operation["from"])
            value = copy.deepcopy(_resolve(result, source, operation["from"]))
            if op == "move":
                result = _remove(result, source, operation["from"])
            result = _add(result, parts, path, value)
        elif op == "add":
            result = _add(result, parts, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            result = _remove(result, parts, path)
        elif op == "replace":
            _resolve(result, parts, path)
            result = _add(_remove(result, parts, path), parts, path, copy.deepcopy(operation.get("value")))
        else:
            raise PatchError(f"JSON patch: unknown op {op!r}")
    return result


def _add(document: Any, parts: list[str], path: str, value: Any) -> Any:
    if not parts:
        return value
    parent = _resolve(document, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, adding=True), value)
    else:
        raise PatchError(f"JSON patch: parent of {path!r} is not an object or array")
    return document


def _remove(document: Any, parts: list[str], path: str) -> Any:
    if not parts:
        return None
    parent = _resolve(document, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"JSON patch: path {path!r} does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, path, adding=False)]
    else:
        raise PatchError(f"JSON patch: parent of {path!r} is not an object or array")
    return document


def apply_patch(document: dict[str, Any], content_type: str, body: Any) -> dict[str, Any]:
    """Apply a patch body of the given content type to a stored object (returns a new object)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == MERGE_PATCH:
        result = merge_patch(document, body)
    elif kind == STRATEGIC_MERGE_PATCH:
        result = strategic_merge_patch(document, body)
    elif kind == JSON_PATCH:
        result = json_patch(document, body)
    else:
        raise PatchError(
            f"the patch content type {kind!r} is not supported by the stand-in "
            f"(use {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH} or {JSON_PATCH}; server-side apply is not implemented)"
        )
    if not isinstance(result, dict):
        raise PatchError("the patch must leave an object")
    return result
