"""Turning workflow values into journal JSON and back."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from tether.errors import UsageError

__all__ = ["from_json", "to_json"]


def to_json(value: Any, *, what: str) -> Any:
    """The JSON-compatible form of ``value`` (pydantic models become dicts, tuples lists).

    ``what`` names the value in the error raised when it cannot be journaled.
    """
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise UsageError(
            f"{what} returned a {type(value).__name__}, which cannot be journaled as JSON; "
            "return JSON-compatible data or a pydantic model"
        ) from exc


def from_json(value: Any, result_type: Any = None) -> Any:
    """Rebuild a journaled value, validated into ``result_type`` when one is given."""
    if result_type is None or result_type is Any:
        return value
    return _adapter(result_type).validate_python(value)


@lru_cache(maxsize=512)
def _adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)
