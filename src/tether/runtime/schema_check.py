"""Check a JSON value against a JSON Schema, as pydantic writes schemas.

A client tool's result arrives in another process than the one that declared the tool (the
caller continues an execution through any runtime on the store), so it is checked against the
result schema journaled with the request, not against a Python type. This covers what pydantic
emits for models, lists, dicts, unions, enums and literals: ``type``, ``properties``,
``required``, ``additionalProperties``, ``pattern``, ``items``, ``prefixItems``, ``enum``,
``const``, ``anyOf`` / ``oneOf`` / ``allOf``, local ``$ref`` (``#/$defs/...``) and the numeric,
length and size bounds. Annotations (``title``, ``description``, ``default``, ``format`` …)
are ignored.

>>> problems({"type": "object", "properties": {"id": {"type": "string"}},
...           "required": ["id"]}, {"id": 3})
['$.id: expected string, found int 3']
>>> problems({"type": "integer"}, 7)
[]
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["problems"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list, tuple), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def problems(schema: dict[str, Any], value: Any) -> list[str]:
    """Every way ``value`` breaks ``schema``, each naming its JSON path; empty if it fits."""
    found: list[str] = []
    _check(schema, value, "$", schema, found)
    return found


def _check(schema: Any, value: Any, path: str, root: dict[str, Any], out: list[str]) -> None:
    if schema is True or not isinstance(schema, dict):
        return
    if schema is False:  # pragma: no cover - dict check above; kept for readers
        out.append(f"{path}: no value is allowed here")
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        _check(_resolve(ref, root), value, path, root, out)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and not any(_fits(o, value, root) for o in options):
            out.append(f"{path}: {_show(value)} matches none of the allowed shapes")
    for option in schema.get("allOf") or ():
        _check(option, value, path, root, out)
    if "const" in schema and not _equal(value, schema["const"]):
        out.append(f"{path}: expected {schema['const']!r}, found {_show(value)}")
    if "enum" in schema and not any(_equal(value, v) for v in schema["enum"]):
        out.append(f"{path}: expected one of {schema['enum']!r}, found {_show(value)}")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is(value, k) for k in kinds):
            out.append(f"{path}: expected {' or '.join(kinds)}, found {_show(value)}")
            return
    if isinstance(value, dict):
        _check_object(schema, value, path, root, out)
    elif isinstance(value, list | tuple):
        _check_array(schema, list(value), path, root, out)
    elif isinstance(value, str):
        _bounds(len(value), schema, "minLength", "maxLength", f"{path} (length)", out)
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and re.search(pattern, value) is None:
            out.append(f"{path}: {_show(value)} does not match the pattern {pattern!r}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _bounds(value, schema, "minimum", "maximum", path, out)
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            out.append(f"{path}: must be > {schema['exclusiveMinimum']}, found {value!r}")
        if "exclusiveMaximum" in schema and not value < schema["exclusiveMaximum"]:
            out.append(f"{path}: must be < {schema['exclusiveMaximum']}, found {value!r}")


def _check_object(schema: dict[str, Any], value: dict[str, Any], path: str,
                  root: dict[str, Any], out: list[str]) -> None:
    props = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in value:
            out.append(f"{path}: missing required field {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = f"{path}.{name}"
        if name in props:
            _check(props[name], item, where, root, out)
        elif extra is False:
            out.append(f"{path}: unexpected field {name!r}")
        elif isinstance(extra, dict):
            _check(extra, item, where, root, out)


def _check_array(schema: dict[str, Any], value: list[Any], path: str, root: dict[str, Any],
                 out: list[str]) -> None:
    _bounds(len(value), schema, "minItems", "maxItems", f"{path} (items)", out)
    prefix = schema.get("prefixItems") or []
    for i, item in enumerate(value):
        if i < len(prefix):
            _check(prefix[i], item, f"{path}[{i}]", root, out)
        elif isinstance(schema.get("items"), dict):
            _check(schema["items"], item, f"{path}[{i}]", root, out)
        elif schema.get("items") is False:
            out.append(f"{path}: at most {len(prefix)} items, found {len(value)}")
            break


def _bounds(size: float, schema: dict[str, Any], low: str, high: str, path: str,
            out: list[str]) -> None:
    if low in schema and size < schema[low]:
        out.append(f"{path}: must be at least {schema[low]}, found {size!r}")
    if high in schema and size > schema[high]:
        out.append(f"{path}: must be at most {schema[high]}, found {size!r}")


def _fits(schema: Any, value: Any, root: dict[str, Any]) -> bool:
    found: list[str] = []
    _check(schema, value, "$", root, found)
    return not found


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False  # JSON keeps booleans apart from numbers; Python does not
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(kind, (object,)))


def _equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#/"):
        # A remote reference cannot be followed here; refusing is safer than accepting blind.
        return {"not-resolvable": ref, "enum": []}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(
            node, dict) else None
    return node if isinstance(node, dict) else {"enum": []}


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
