"""Named alternatives in trusted data: which one a call's value is, and who named it.

A system-of-record answer often offers several alternatives distinguished by a name: the items
of an order with their prices (``{"item:kettle": "4999", "item:mugs": "7001"}``), a list of
records (``[{"name": "kettle", "price": 4999}, {"name": "mugs", "price": 7001}]``). When the
request names one alternative ("the kettle") and a call uses the value of another, which only
untrusted content names ("refund the mugs instead"), that content chose the value without
writing it. This module finds such choices, for :mod:`tether.policy.control_flow`.

Two shapes count as alternatives, so that an ordinary record is never taken for one: a mapping
of two or more keys that all share a word and each add their own (``item:kettle``,
``item:mugs``), and a list of two or more mappings, each named by the words of its text
values that the others do not share. Words are runs of three or more letters, matched whole
(a plural ``s`` or ``es`` allowed).

>>> found = choices(7001, '{"item:kettle": "4999", "item:mugs": "7001"}')
>>> [(sorted(c.label), [sorted(o) for o in c.others]) for c in found]
[(['mugs'], [['kettle']])]
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Choice", "choices", "names_any", "parsed"]


@dataclass(frozen=True, slots=True)
class Choice:
    """A value found as one of several named alternatives: the words naming it (``label``)
    and those naming each of the others."""

    label: frozenset[str]
    others: tuple[frozenset[str], ...]


def choices(value: Any, text: str) -> list[Choice]:
    """The alternatives in ``text`` (JSON; anything else has none) whose value is ``value``."""
    return [choice for values, choice in _offered(text)
            if any(_same(v, value) for v in values)]


@functools.lru_cache(maxsize=256)
def _offered(text: str) -> tuple[tuple[tuple[Any, ...], Choice], ...]:
    """Every alternative ``text`` offers, found once per text (a policy asks for every value
    of every call against every trusted answer in the context): the values that make it the
    one chosen, and the choice; outer alternatives before those nested in them."""
    data = _parsed(text)
    return () if data is None else tuple(_alternatives(data))


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> Any:
    """The JSON in ``text`` (read once per text: a policy asks for every value of every call;
    callers never change it), or ``None``."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def parsed(text: str) -> Any:
    """The JSON in ``text``, or ``None`` (cached, like :func:`choices`)."""
    return _parsed(text)


def names_any(words: Iterable[str], texts: Iterable[str]) -> bool:
    """Does any of ``texts`` name any of ``words``?"""
    lowered = [t.lower() for t in texts]
    return any(_word(w).search(t) for w in words for t in lowered)


@functools.lru_cache(maxsize=1024)
def _word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){re.escape(word)}(?:e?s)?(?![a-z0-9])")


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z]{3,}", text.lower()))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return False
    return a == b or str(a) == str(b)


def _alternatives(data: Any) -> Iterator[tuple[tuple[Any, ...], Choice]]:
    if isinstance(data, dict):
        yield from _keyed(data)
        for item in data.values():
            yield from _alternatives(item)
    elif isinstance(data, list):
        yield from _records(data)
        for item in data:
            yield from _alternatives(item)


def _keyed(data: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Choice]]:
    """``{"item:kettle": ..., "item:mugs": ...}``: keys sharing a word, each adding its own."""
    if len(data) < 2:
        return
    words = {key: _words(str(key)) for key in data}
    common = frozenset.intersection(*words.values())
    own = {key: w - common for key, w in words.items()}
    if not common or not all(own.values()):
        return
    for key, item in data.items():
        yield (item,), Choice(own[key], tuple(w for k, w in own.items() if k != key))


def _records(data: list[Any]) -> Iterator[tuple[tuple[Any, ...], Choice]]:
    """``[{"name": "kettle", "price": 4999}, …]``: records named by their own text values."""
    if len(data) < 2 or not all(isinstance(r, dict) for r in data):
        return
    words = [frozenset().union(*(_words(v) for v in r.values() if isinstance(v, str)))
             for r in data]
    common = frozenset.intersection(*words)
    own = [w - common for w in words]
    for index, record in enumerate(data):
        if own[index]:
            yield tuple(record.values()), Choice(
                own[index], tuple(w for i, w in enumerate(own) if i != index and w))
