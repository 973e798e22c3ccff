"""Reading YAML specification files (policies, scenarios) with errors that say where and what.

Every error names the file, the path inside it (``rules[2].argument_limit.max``), what was
expected and what was found, and nothing is half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tether.errors import UsageError

__all__ = ["describe", "explain", "load_yaml", "one_of"]

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | Path, what: str) -> Any:
    """Parse ``path`` as YAML; ``what`` names the kind of file in errors."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} file ({exc.strerror})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from exc


def explain(where: str, prefix: str, exc: ValidationError) -> UsageError:
    """The first validation error as one line: file, key path, expectation, what was found."""
    first = exc.errors()[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    full = (prefix + (path if path.startswith("[") else f".{path}") if prefix and path
            else prefix or path) or "(top)"
    found = first.get("input")
    shown = "" if isinstance(found, dict | list) else f" {found!r}"
    return UsageError(f"{where}: {full}: {first['msg'].lower()} (found {describe(found)}{shown})")


def describe(value: Any) -> str:
    """What kind of YAML value ``value`` is, in words."""
    kinds = {dict: "a mapping", list: "a list", str: "a string", int: "a number",
             float: "a number", bool: "a boolean", type(None): "nothing"}
    return kinds.get(type(value), type(value).__name__)


def one_of(item: Any, kinds: Mapping[str, type[M]], *, where: str, at: str,
           noun: str) -> tuple[str, M]:
    """Read a one-key mapping ``{kind: settings}`` (a policy rule, a scenario invariant):
    the kind and its settings validated by ``kinds[kind]``, or a UsageError saying where."""
    if not isinstance(item, dict) or len(item) != 1:
        found = f"keys {sorted(item) or 'none'}" if isinstance(item, dict) else describe(item)
        raise UsageError(f"{where}: {at}: expected a mapping with one key (the {noun}: "
                         f"{', '.join(kinds)}), found {found}")
    ((kind, settings),) = item.items()
    if kind not in kinds:
        raise UsageError(f"{where}: {at}: unknown {noun} {kind!r}; expected one of "
                         f"{', '.join(kinds)}")
    try:
        return kind, kinds[kind].model_validate(settings if settings is not None else {})
    except ValidationError as exc:
        raise explain(where, f"{at}.{kind}", exc) from exc

