"""``policy.choices`` finds each text's alternatives once; what it finds must be what a plain
walk of the JSON finds for every value, in the same order (a differential property test)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.policy.choices import Choice, choices

WORDS = ["item", "kettle", "mugs", "mug", "tea", "name", "price", "gold", "plan", "x1"]
KEYS = st.one_of(st.sampled_from(WORDS),
                 st.builds(lambda a, b: f"{a}:{b}", st.sampled_from(WORDS[:4]),
                           st.sampled_from(WORDS)))
LEAVES = st.one_of(st.integers(-3, 3), st.sampled_from([1.0, 2.5, 4999]), st.booleans(),
                   st.none(), st.sampled_from(WORDS), st.sampled_from(["3", "4999", "2.5"]))
DATA = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=20)


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z]{3,}", text.lower()))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return False
    return a == b or str(a) == str(b)


def reference(value: Any, data: Any) -> Iterator[Choice]:
    """The definition, walked afresh for one value: a mapping's keyed alternatives, then a
    list's named records, each before what is nested in them."""
    if isinstance(data, dict):
        if len(data) >= 2:
            words = {k: _words(str(k)) for k in data}
            common = frozenset.intersection(*words.values())
            own = {k: w - common for k, w in words.items()}
            if common and all(own.values()):
                for k, item in data.items():
                    if _same(item, value):
                        yield Choice(own[k], tuple(w for j, w in own.items() if j != k))
        for item in data.values():
            yield from reference(value, item)
    elif isinstance(data, list):
        if len(data) >= 2 and all(isinstance(r, dict) for r in data):
            words_of = [frozenset().union(*(_words(v) for v in r.values() if isinstance(v, str)))
                        for r in data]
            common = frozenset.intersection(*words_of)
            mine = [w - common for w in words_of]
            for i, record in enumerate(data):
                if mine[i] and any(_same(v, value) for v in record.values()):
                    yield Choice(mine[i], tuple(w for j, w in enumerate(mine) if j != i and w))
        for item in data:
            yield from reference(value, item)


def _leaves(data: Any) -> Iterator[Any]:
    if isinstance(data, dict):
        for item in data.values():
            yield from _leaves(item)
    elif isinstance(data, list):
        for item in data:
            yield from _leaves(item)
    yield data


@settings(max_examples=300, deadline=None)
@given(DATA, st.lists(LEAVES, max_size=3))
def test_choices_match_a_fresh_walk_for_every_value(data: Any, extra: list[Any]) -> None:
    text = json.dumps(data)
    for value in [*_leaves(data), *extra]:
        assert choices(value, text) == list(reference(value, data)), value


def test_a_named_alternative_is_found_and_a_plain_record_is_not() -> None:
    order = json.dumps({"item:kettle": "4999", "item:mugs": "7001", "total": 12000})
    assert choices(7001, order) == []  # "total" shares no word with the items: no alternatives
    items = json.dumps({"item:kettle": "4999", "item:mugs": "7001"})
    [found] = choices(7001, items)
    assert found.label == {"mugs"} and found.others == (frozenset({"kettle"}),)
    records = json.dumps([{"name": "kettle", "price": 4999}, {"name": "mugs", "price": 7001}])
    assert [c.label for c in choices(4999, records)] == [frozenset({"kettle"})]
    assert choices(4999, "not json") == []
