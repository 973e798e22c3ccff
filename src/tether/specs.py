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
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tether import yamlsafe
from tether.errors import UsageError

__all__ = ["StrictNumbers", "describe", "explain", "key_path", "load_yaml", "one_of", "short_repr"]

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
    if kind == "coerced":
        # An item's own path ("[0]: expected …") joins the key path: on_call[0].
        while message.startswith("[") and "]: " in message:
            item, message = message.split(": ", 1)
            full += item
        return UsageError(f"{where}: {full}: {message}")
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



_NUMBERS = (int, float)


def _coerced(annotation: Any, value: Any) -> str | None:
    """What is wrong when ``value`` would only fit ``annotation`` by coercion (a boolean or a
    string taken for a number, a number taken for a boolean), or None."""
    annotation = _unwrap_annotated(annotation)
    origin = get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool) and isinstance(value, int | float | str):
            return (f"expected a boolean (true or false), found {describe(value)} "
                    f"{short_repr(value)}")
        return None
    if annotation in _NUMBERS:
        # A string that is no number fails pydantic's own check; one that is ("25") would pass.
        if isinstance(value, bool) or (isinstance(value, str) and _numeric(value)):
            kind = "an integer" if annotation is int else "a number"
            hint = ""
            if isinstance(value, str):
                hint = ("; YAML reads 1e5 as text: write 1.0e+5" if "e" in value.lower()
                        else "; write the number without quotes")
            return f"expected {kind}, found {describe(value)} {short_repr(value)}{hint}"
        return None
    if origin in (Union, UnionType):
        arms = [_unwrap_annotated(a) for a in get_args(annotation)]
        if value is None and type(None) in arms:
            return None
        given = [a for a in arms if a is not type(None)]
        if len(given) == 1:  # X | None: judged as X
            return _coerced(given[0], value)
        # Only a union of numbers and booleans is judged here; one with a string, a date or a
        # model arm accepts what that arm accepts.
        if not all(a in (int, float, bool, type(None)) for a in arms):
            return None
        if isinstance(value, bool) and bool in arms:
            return None
        for arm in arms:
            if arm is not type(None) and _coerced(arm, value) is None:
                return None
        return f"expected a number, found {describe(value)} {short_repr(value)}"
    args = get_args(annotation)
    if origin in (list, tuple, set, frozenset) and args and isinstance(value, list | tuple):
        for index, item in enumerate(value):
            arm = args[0] if origin is not tuple or args[-1] is Ellipsis else (
                args[index] if index < len(args) else None)
            problem = _coerced(arm, item) if arm is not None else None
            if problem is not None:
                return f"[{index}]: {problem}"
        return None
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        for key, item in value.items():
            problem = _coerced(args[1], item)
            if problem is not None:
                return f"{short_repr(key)}: {problem}"
    return None


def _numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _unwrap_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


class StrictNumbers(BaseModel):
    """A model whose numbers are numbers: a boolean or a numeric string where a count, an
    amount or a probability is expected is refused, as is a number where a boolean is (pydantic
    would coerce ``true`` to 1 and ``"25"`` to 25). Strings stay the form of dates and times."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        field = cls.model_fields.get(info.field_name)
        if field is None:
            return value
        problem = _coerced(field.annotation, value)
        if problem is not None:
            # Its own error type: the message already says what was found (explain adds no
            # second "found").
            raise PydanticCustomError("coerced", problem)
        return value
