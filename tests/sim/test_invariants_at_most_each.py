"""``at_most_each``: every business key of an effect at most its listed count, any other key at
most ``n``; the scenario loader refuses settings that could not mean that."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import UsageError
from tether.sim.invariants import EpisodeFacts, check_invariants
from tether.sim.scenario import check_from_dict, scenario_from_dict
from tether.sim.world import Ledger

KEYS = ("email:a@x.org:Hi", "email:b@x.org:Hi", "email:a@x.org:Bye")


def _facts(keys: list[str], other: tuple[str, ...] = ()) -> EpisodeFacts:
    ledger = Ledger()
    for key in keys:
        ledger.record(0.0, "email", "send", key, {"to": key.split(":")[1]})
    for key in other:
        ledger.record(0.0, "crm", "note", key, {})
    return EpisodeFacts(ledger=ledger, snapshots={})


def _check(settings_: dict[str, Any], facts: EpisodeFacts) -> tuple[bool, str]:
    inv = check_from_dict({"at_most_each": settings_}, where="<t>", at="invariants[0]")
    (verdict,) = check_invariants([inv], facts)
    return verdict.holds, verdict.detail


def test_a_listed_key_may_repeat_up_to_its_count() -> None:
    """A key listed with 2 holds at 2 and is violated at 3, naming the key and the limit."""
    rule = {"effect": "email.send", "n": 1, "keys": {KEYS[0]: 2}}
    assert _check(rule, _facts([KEYS[0], KEYS[0], KEYS[1]])) == (True, "")
    holds, detail = _check(rule, _facts([KEYS[0]] * 3))
    assert not holds and detail == f"3 × {KEYS[0]}, at most 2 allowed"


def test_other_keys_are_held_to_n() -> None:
    """A key not listed may occur ``n`` times (1 by default); none at all holds."""
    assert _check({"effect": "email.send"}, _facts([])) == (True, "")
    holds, detail = _check({"effect": "email.send", "keys": {KEYS[0]: 2}},
                           _facts([KEYS[0], KEYS[1], KEYS[1]]))
    assert not holds and detail == f"2 × {KEYS[1]}, at most 1 allowed"
    assert _check({"effect": "email.send", "n": 2}, _facts([KEYS[1], KEYS[1]]))[0]


def test_only_the_named_effect_counts() -> None:
    """Effects of another operation never count against it."""
    assert _check({"effect": "email.send"}, _facts([KEYS[0]], other=("x", "x", "x")))[0]


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.sampled_from(KEYS), max_size=8),
       allowed=st.dictionaries(st.sampled_from(KEYS), st.integers(0, 3), max_size=3),
       n=st.integers(0, 3))
def test_holds_exactly_when_no_key_exceeds_its_allowance(keys: list[str],
                                                         allowed: dict[str, int],
                                                         n: int) -> None:
    """The verdict is "every key's count ≤ its listed count, else ≤ n", for any ledger."""
    expected = all(c <= allowed.get(k, n) for k, c in Counter(keys).items())
    assert _check({"effect": "email.send", "n": n, "keys": allowed}, _facts(keys))[0] \
        == expected


@pytest.mark.parametrize(("settings_", "says"), [
    ({"effect": "email.send", "keys": {"k": -1}}, "keys"),
    ({"effect": "email.send", "keys": {"k": True}}, "keys"),
    ({"effect": "email.send", "keys": {"k": "2"}}, "keys"),
    ({"effect": "email.send", "keys": ["k"]}, "keys"),
    ({"effect": "email.send", "keys": {"": 1}}, "keys"),
    ({"effect": "email.send", "n": -1}, "n"),
    ({"effect": "email.send", "n": 1.5}, "n"),
    ({"effect": "email.sent"}, "unknown effect"),
    ({"effect": "email.send", "match": {"to": "a@x.org"}}, "match"),
    ({"n": 1}, "effect"),
])
def test_the_loader_refuses_bad_settings(settings_: dict[str, Any], says: str) -> None:
    """A scenario with a malformed ``at_most_each`` is a usage error naming the key path."""
    with pytest.raises(UsageError) as caught:
        scenario_from_dict({"name": "s", "agent": "refund", "task": "t",
                            "invariants": [{"at_most_each": settings_}]}, where="s.yaml")
    message = str(caught.value)
    assert message.startswith("s.yaml: invariants[0]") and says in message, message


def test_a_dumped_variant_reads_back() -> None:
    """An ``at_most_each`` in a loaded scenario survives a dump and a reload (repro files)."""
    data = {"name": "s", "agent": "refund", "task": "t", "invariants": [
        {"at_most_each": {"effect": "email.send", "n": 1, "keys": {KEYS[0]: 2}}}]}
    first = scenario_from_dict(data, where="s.yaml")
    dumped = first.model_dump(exclude={"source"})
    dumped["invariants"] = [{i.kind: i.settings} for i in first.invariants]
    assert scenario_from_dict(dumped, where="s.yaml").invariants == first.invariants
