"""A simulated service's answer as JSON-ready data: what its API would put on the wire.

Below the environment (whose clients answer with it) and the wire faces (which serialize with
it), so that neither imports the other for it.

>>> from datetime import date
>>> plain({"on": date(2026, 1, 2), "ids": ("a", "b")})
{'on': '2026-01-02', 'ids': ['a', 'b']}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

__all__ = ["plain"]


def plain(value: Any) -> Any:
    """A service's answer as JSON-ready data (what its API would put on the wire)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    # Decimals, dates, bytes, sets …: what a JSON client would have put on the wire.
    return to_jsonable_python(value, fallback=str)
