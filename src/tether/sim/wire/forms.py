"""Stripe's form bodies and query strings, decoded into nested dicts and lists.

Stripe's v1 API takes ``application/x-www-form-urlencoded`` parameters whose keys carry
nesting in brackets::

    metadata[order]=1042            {"metadata": {"order": "1042"}}
    expand[]=charge&expand[]=cus    {"expand": ["charge", "cus"]}
    items[0][price]=p&items[1][price]=q
                                    {"items": [{"price": "p"}, {"price": "q"}]}

A numeric segment is a list index (the official SDKs send every list indexed, ``expand[0]``);
an empty segment appends (``expand[]``, as the API reference writes it); any other segment is
a mapping key. Values stay strings: which parameter is an integer is the endpoint's business.
Anything the decoder cannot read without guessing is a :class:`FormError` naming the key:
unbalanced brackets, a key given twice, a name used both as a value and a container, list
indexes that do not count up from 0. Nothing is silently dropped.

On the wire a mapping whose keys are exactly ``0 … n-1`` cannot be told from a list (the SDK's
own encoder writes both the same way), so it decodes as a list; an endpoint that expects a
mapping there (``metadata[0]=…``) turns it back with :func:`as_mapping`.

>>> decode_form(parse_pairs(b"amount=500&metadata[order]=1042&expand[]=charge"))
{'amount': '500', 'metadata': {'order': '1042'}, 'expand': ['charge']}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["FormError", "as_mapping", "decode_form", "parse_pairs"]

#: The most fields a body or query may carry (parse_qsl's guard against huge bodies).
MAX_FIELDS = 10_000
#: The most bracketed segments a key may nest (Rack's default ``param_depth_limit``): no
#: Stripe parameter nests near it, and decoding deeper keys would exhaust the stack.
MAX_DEPTH = 32

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_INDEX = re.compile(r"[0-9]+")


class FormError(ValueError):
    """A form key or body that cannot be decoded; ``key`` names the offending key.

    >>> decode_form([("metadata[order", "1")])
    Traceback (most recent call last):
    ...
    tether.sim.wire.forms.FormError: malformed form key 'metadata[order': expected name, \
name[key] or name[] with balanced brackets
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"malformed form key {key!r}: {problem}")
        self.key = key
        self.problem = problem


class _Table(dict[str, Any]):
    """A mapping under construction (``name[key]``)."""


class _Indexed(dict[int, Any]):
    """A list under construction from indexed keys (``name[0]``)."""


class _Appended(list[Any]):
    """A list under construction from appending keys (``name[]``)."""


_Node = _Table | _Indexed


def parse_pairs(data: bytes | str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of a urlencoded body or query string, in order.

    Blank values are kept (``metadata[note]=`` clears a key at Stripe); bytes must be UTF-8.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                         errors="strict")
    except UnicodeDecodeError:
        raise FormError("", "the body is not UTF-8 text") from None
    except ValueError as exc:
        raise FormError("", f"{exc} (at most {MAX_FIELDS} fields)") from None


def split_key(key: str) -> list[str]:
    """``"items[0][price]"`` → ``["items", "0", "price"]``; raises :class:`FormError`."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise FormError(key, "expected name, name[key] or name[] with balanced brackets")
    segments = _SEGMENT.findall(match.group(2))
    if len(segments) > MAX_DEPTH:
        raise FormError(key[:80] + ("…" if len(key) > 80 else ""),
                        f"nested {len(segments)} brackets deep, deeper than the "
                        f"{MAX_DEPTH} allowed")
    return [match.group(1), *segments]


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nested dicts and lists (string leaves) from form pairs; raises :class:`FormError`."""
    root = _Table()
    for key, value in pairs:
        segments = split_key(key)
        _put(root, segments[0], segments[1:], value, key)
    decoded: dict[str, Any] = _finish(root, "")
    return decoded


def as_mapping(value: Any) -> Any:
    """A list decoded from indexed keys read back as the mapping it may have been
    (``{"0": …, "1": …}``); anything else unchanged."""
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return value


def _kind(segment: str) -> type[_Table | _Indexed | _Appended]:
    if segment == "":
        return _Appended
    return _Indexed if _INDEX.fullmatch(segment) else _Table


def _slot(node: _Node, segment: str, key: str) -> Any:
    if isinstance(node, _Indexed):
        if not _INDEX.fullmatch(segment):
            raise FormError(key, f"{segment!r} is not a list index")
        return int(segment)
    return segment


def _put(node: _Node, segment: str, rest: list[str], value: str, key: str) -> None:
    slot = _slot(node, segment, key)
    if not rest:
        if slot in node:
            raise FormError(key, "given more than once")
        node[slot] = value
        return
    kind = _kind(rest[0])
    child = node.get(slot)
    if child is None:
        child = node[slot] = kind()
    elif type(child) is not kind:
        raise FormError(key, f"{_describe(child)} earlier, now {_describe(kind())}")
    if isinstance(child, _Appended):
        _append(child, rest[1:], value, key)
    else:
        _put(child, rest[0], rest[1:], value, key)


def _append(items: _Appended, rest: list[str], value: str, key: str) -> None:
    if not rest:
        items.append(value)
        return
    # ``items[][price]=a&items[][qty]=1&items[][price]=b``: as Rack reads it, a field goes
    # into the last element unless that element already has it, which starts a new element.
    last = items[-1] if items else None
    if not isinstance(last, _Table) or _has(last, rest):
        last = _Table()
        items.append(last)
    _put(last, rest[0], rest[1:], value, key)


def _has(node: Any, path: list[str]) -> bool:
    for segment in path:
        if segment == "" or not isinstance(node, dict):
            return True  # a list or value already there: the field starts a new element
        key: Any = int(segment) if isinstance(node, _Indexed) and _INDEX.fullmatch(segment) \
            else segment
        if key not in node:
            return False
        node = node[key]
    return True


def _describe(node: Any) -> str:
    if isinstance(node, _Table):
        return "a mapping (name[key])"
    if isinstance(node, _Indexed):
        return "an indexed list (name[0])"
    if isinstance(node, _Appended):
        return "an appended list (name[])"
    return "a value"


def _finish(node: Any, path: str) -> Any:
    if isinstance(node, _Table):
        return {k: _finish(v, f"{path}[{k}]" if path else k) for k, v in node.items()}
    if isinstance(node, _Indexed):
        indexes = sorted(node)
        if indexes != list(range(len(indexes))):
            raise FormError(path, f"list indexes must count up from 0 without gaps, got "
                                  f"{indexes[:10]}")
        return [_finish(node[i], f"{path}[{i}]") for i in indexes]
    if isinstance(node, _Appended):
        return [_finish(v, f"{path}[]") for v in node]
    return node
