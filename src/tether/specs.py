"""Reading YAML specification files (policies, scenarios) with errors that say where and what.

Every error names the file, the path inside it (``rules[2].argument_limit.max``), what was
expected and what was found, and nothing is half-loaded. Files are parsed by
:mod:`tether.yamlsafe` (bounded size, depth and alias expansion; string keys, each once).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from tether import yamlsafe
from tether.errors import UsageError

__all__ = ["describe", "explain", "key_path", "load_yaml", "one_of", "short_repr"]

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | Path, what: str) -> Any:
    """Parse ``path`` as YAML within :mod:`tether.yamlsafe`'s bounds; ``what`` names the kind
    of file in errors."""
    return yamlsafe.load_file(path, what)


def explain(where: str, prefix: str, exc: ValidationError,
            model: type[BaseModel] | None = None) -> UsageError:
    """The first validation error as one line: file, key path, expectation, what was found.
    With the ``model`` that was validated, an unknown key's message lists the known ones."""
    first = exc.errors(include_url=False)[0]
    # A union's member appears in the location under its class name (notes[0]._SeedNote.text);
    # the private schema classes are no key a user wrote, so they are left out of the path.
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and _MEMBER.fullmatch(p)))
    full = key_path(prefix, loc)
    kind = first["type"]
    if kind == "missing":
        return UsageError(f"{where}: {full}: field required (the key is missing)")
    message = " ".join(str(first["msg"]).split()).removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "input should be a mapping"  # not pydantic's name for the class
    elif kind == "extra_forbidden" and model is not None:
        known = _model_at(model, loc[:-1])
        if known is not None:
            message += f"; expected one of {', '.join(known.model_fields)}"
    message = message[:1].lower() + message[1:]
    found = first.get("input")
    shown = "" if isinstance(found, dict | list | tuple) or found is None else \
        f" {short_repr(found)}"
    return UsageError(f"{where}: {full}: {message} (found {describe(found)}{shown})")


_MEMBER = re.compile(r"_[A-Z]\w*")


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that validated the mapping at ``loc`` inside ``model``, when one did."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
            continue
        origin, args = get_origin(current), get_args(current)
        if origin in (list, tuple) and isinstance(part, int) and args:
            current = args[0] if origin is list or len(args) <= part else args[part]
        elif origin is dict and isinstance(part, str) and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``X | None``."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def key_path(prefix: str, loc: Iterable[int | str]) -> str:
    """``prefix`` and a location (``("faults", 2, "rate")``) as ``faults[2].rate``."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top)"


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a huge number or string says no more)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        return f"<a number of about {value.bit_length() * 3 // 10} digits>"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def describe(value: Any) -> str:
    """What kind of YAML value ``value`` is, in words."""
    kinds = {dict: "a mapping", list: "a list", tuple: "a list", str: "a string",
             int: "a number", float: "a number", bool: "a boolean", type(None): "nothing"}
    return kinds.get(type(value), type(value).__name__)


def one_of(item: Any, kinds: Mapping[str, type[M]], *, where: str, at: str,
           noun: str) -> tuple[str, M]:
    """Read a one-key mapping ``{kind: settings}`` (a policy rule, a scenario invariant):
    the kind and its settings validated by ``kinds[kind]``, or a UsageError saying where."""
    if not isinstance(item, dict) or len(item) != 1:
        found = f"keys {short_repr(sorted(map(str, item))) if item else 'none'}" \
            if isinstance(item, dict) else describe(item)
        raise UsageError(f"{where}: {at}: expected a mapping with one key (the {noun}: "
                         f"{', '.join(kinds)}), found {found}")
    ((kind, settings),) = item.items()
    if kind not in kinds:
        raise UsageError(f"{where}: {at}: unknown {noun} {short_repr(kind)}; expected one of "
                         f"{', '.join(kinds)}")
    try:
        return kind, kinds[kind].model_validate(settings if settings is not None else {})
    except ValidationError as exc:
        raise explain(where, f"{at}.{kind}", exc, kinds[kind]) from exc

