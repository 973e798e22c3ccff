"""Turning workflow values into journal JSON and back, so that a replay sees what the live run saw.

Every value a durable call returns (a step's result, a tool's result, a workflow's input and
result, a resolution, a decision's data) is journaled in the form :func:`to_json` gives, and the
live call returns that same form — never the original object — so a resumed run, reading the
journal from any store, gets an equal value. Per kind of value:

=======================  ===========================================================================
value                    journaled as
=======================  ===========================================================================
lists, dicts, tuples     lists and dicts (a tuple is journaled as a list; subclasses such as
                         ``OrderedDict`` as the plain container)
dict keys                text as itself (made valid, as strings are below); an integer (or an
                         enum whose value is text or an integer) as its decimal text, which is
                         what JSON does and what a ``result_type`` of ``dict[int, …]`` reads
                         back; any other key (``True``, ``None``, a float, a tuple …) is
                         rejected, and so are two keys that would be journaled as the same text
                         (``1`` and ``"1"``, or texts differing only in lone surrogates): the
                         journal never silently drops or renames an entry
pydantic models,         their JSON form (dicts, lists, strings), as pydantic serializes them,
dataclasses, enums,      with their declared types' rules (a ``set`` field is a list there, read
datetimes, bytes …       back into a set by ``result_type``; bytes must be UTF-8)
``-0.0``, huge floats    themselves (the event encoding keeps the sign and every bit)
``inf``, ``-inf``,       themselves: the event encoding writes the constants ``Infinity`` and
``nan``                  ``NaN``, which :func:`tether.events.decode` reads back (no string tag, so
                         nothing a user returns can be mistaken for one)
ints                     themselves, up to :data:`MAX_INT_BITS` bits (about 4,200 digits, which
                         every Python reads back); larger ones are rejected
strings                  themselves when they are valid Unicode; a lone surrogate (half of a
                         UTF-16 pair, which UTF-8 cannot hold) becomes U+FFFD, and a pair split
                         into two code points is joined — what a UTF-16 decoder does
nesting                  up to :data:`MAX_DEPTH` levels of lists and dicts; deeper is rejected
sets, frozensets         rejected: their order is hash order, which differs between processes,
                         so the same run would journal different bytes; return a sorted list
anything else            rejected (bytes that are not UTF-8, cycles, arbitrary objects …)
=======================  ===========================================================================

A rejection is a :class:`~tether.errors.UsageError` naming the call and the path inside the value
(``step 'x' returned an integer of 20001 bits at value['a'][2] …``).
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from tether.errors import UsageError

__all__ = ["MAX_DEPTH", "MAX_INT_BITS", "from_json", "to_json"]

#: The deepest nesting of lists and dicts journaled. Far beyond real data, and far enough below
#: the recursion limits of the JSON parsers that read journals back.
MAX_DEPTH = 100
#: The largest integer journaled, in bits: about 4,200 decimal digits, under the 4,300 digits
#: Python converts by default (``sys.int_info.default_max_str_digits``), so every reader parses it.
MAX_INT_BITS = 14_000


def to_json(value: Any, *, what: str) -> Any:
    """The journaled form of ``value``: JSON-compatible data that every store returns equal.

    ``what`` names the value in the error raised when it cannot be journaled.
    """
    return _normal(value, what, "value", 0)


def from_json(value: Any, result_type: Any = None) -> Any:
    """Rebuild a journaled value, validated into ``result_type`` when one is given."""
    if result_type is None or result_type is Any:
        return value
    return _adapter(result_type).validate_python(value)


@lru_cache(maxsize=512)
def _adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)


class _Rejected(Exception):
    """A part of a value that cannot be journaled; ``path`` grows as it propagates up."""

    def __init__(self, found: str, fix: str) -> None:
        super().__init__(found)
        self.found, self.fix = found, fix
        self.path: list[str] = []


def _normal(data: Any, what: str, path: str, depth: int) -> Any:
    """``data`` (already JSON-like) checked and normalized; see the module's table."""
    try:
        return _checked(data, depth)
    except _Rejected as rejected:
        where = path + "".join(reversed(rejected.path))
        raise UsageError(f"{what} returned {rejected.found} at {where}, which cannot be "
                         f"journaled; {rejected.fix}") from None


def _checked(data: Any, depth: int) -> Any:
    # The hot path of every durable call: no per-item strings (the path is built only when a
    # part is rejected, as the exception unwinds), exact type checks first.
    kind = type(data)
    if kind is str:
        return data if data.isascii() else _text(data)
    if data is None or kind is bool or kind is float:
        return data
    if kind is int:
        if data.bit_length() > MAX_INT_BITS:
            raise _Rejected(f"an integer of {data.bit_length()} bits",
                            f"the journal holds integers of at most {MAX_INT_BITS} bits; "
                            "return a larger one as a string")
        return data
    if kind is not list and kind is not dict and isinstance(data, dict | list):
        # OrderedDict, defaultdict, a list subclass: journaled as the plain container.
        return _checked(dict(data) if isinstance(data, dict) else list(data), depth)
    if kind is list or kind is dict:
        if depth >= MAX_DEPTH:
            raise _Rejected(f"lists or dicts nested deeper than {MAX_DEPTH} levels",
                            "flatten it or journal it as a string")
        # Leaves are checked inline: a call per item would double the cost.
        if kind is list:
            items: list[Any] = []
            try:
                for item in data:
                    leaf = type(item)
                    if leaf is str:
                        items.append(item if item.isascii() else _text(item))
                    elif leaf is float or leaf is bool or item is None or (
                            leaf is int and item.bit_length() <= MAX_INT_BITS):
                        items.append(item)
                    else:
                        items.append(_checked(item, depth + 1))
            except _Rejected as rejected:
                rejected.path.append(f"[{len(items)}]")  # the items before it were appended
                raise
            return items
        mapping: dict[str, Any] = {}
        key: Any = None
        try:
            for key, item in data.items():
                name = key if type(key) is str and key.isascii() else _key(key)
                if name in mapping:
                    raise _Rejected(
                        f"two dict keys that are both journaled as {name!r}",
                        "keep keys distinct as text (1 and '1', or text that differs only "
                        "in lone surrogates, are the same key in the journal)")
                leaf = type(item)
                if leaf is str:
                    mapping[name] = item if item.isascii() else _text(item)
                elif leaf is float or leaf is bool or item is None or (
                        leaf is int and item.bit_length() <= MAX_INT_BITS):
                    mapping[name] = item
                else:
                    mapping[name] = _checked(item, depth + 1)
        except _Rejected as rejected:
            rejected.path.append(f"[{key!r}]")
            raise
        return mapping
    if kind is tuple:
        return _checked(list(data), depth)
    if isinstance(data, set | frozenset):
        # Its order is the hash order, which differs between processes for text: journaled as
        # a list it would make the same run's journals differ.
        raise _Rejected(f"a {kind.__name__}", "return a sorted list")
    if isinstance(data, bool | str | int | float) and not isinstance(data, Enum):
        # A subclass of a JSON type: journaled, and returned live, as the plain type a replay
        # will return.
        plain = bool(data) if isinstance(data, bool) else (
            str.__str__(data) if isinstance(data, str)
            else int(data) if isinstance(data, int) else float(data))
        return _checked(plain, depth)
    return _checked(_pydantic(data), depth)


def _pydantic(data: Any) -> Any:
    """A value that is not plain JSON in pydantic's JSON form (models, dataclasses, enums,
    datetimes, UTF-8 bytes …), or rejected."""
    try:
        return to_jsonable_python(data)
    except (PydanticSerializationError, ValueError, RecursionError) as exc:
        raise _Rejected(f"a {type(data).__name__} with no JSON form ({exc})",
                        "return JSON-compatible data or a pydantic model") from None


def _key(key: Any) -> str:
    """A dict key as journaled: text as itself (made valid), an integer or an enum of one as
    its decimal text (what JSON does); anything else is rejected, since its text form would
    not read back as the key it was."""
    if isinstance(key, Enum):
        key = key.value
    if isinstance(key, str):
        return _text(str.__str__(key))
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key))
    raise _Rejected(f"a dict key {key!r} of type {type(key).__name__}",
                    "use text keys (integer keys are journaled as their decimal text)")


def _text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates become U+FFFD, split pairs are joined."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
