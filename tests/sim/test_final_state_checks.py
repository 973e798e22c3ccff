"""final_state checks cannot hold vacuously: an unknown service, a misspelt path or a missing
``equals`` is refused or fails, never compared as None == None."""

from __future__ import annotations

from typing import Any

import pytest

from tether.errors import UsageError
from tether.sim.invariants import EpisodeFacts, check_invariants
from tether.sim.scenario import Invariant, scenario_from_dict
from tether.sim.world import World


def _check(settings: dict[str, Any], snapshots: dict[str, Any]) -> tuple[bool, str]:
    facts = EpisodeFacts(ledger=World(seed=0).ledger, snapshots=snapshots)
    (verdict,) = check_invariants([Invariant(kind="final_state", settings=settings)], facts)
    return verdict.holds, verdict.detail


def test_a_misspelt_path_fails_even_when_null_is_expected() -> None:
    """A path that is not in the final state is a failed check naming where it stopped."""
    state = {"calendar": {"events": {"evt_2": {"status": "cancelled"}}}}
    holds, detail = _check({"service": "calendar", "path": "evnts.evt_2.status",
                            "equals": None}, state)
    assert not holds and "calendar has no 'evnts'" in detail
    assert _check({"service": "calendar", "path": "events.evt_2.status",
                   "equals": "cancelled"}, state)[0]


def test_a_service_missing_from_the_world_fails() -> None:
    """A service with no final state is a failed check, not a None."""
    holds, detail = _check({"service": "calendar", "path": "x", "equals": None}, {})
    assert not holds and "no service 'calendar'" in detail


@pytest.mark.parametrize(("check", "message"), [
    ({"service": "calender", "path": "a", "equals": None}, "unknown service 'calender'"),
    ({"service": "calendar", "path": "events.x"}, "equals: field required"),
    ({"service": "recorded", "path": "writes", "equals": 1}, "only in a scenario with a recorded"),
])
def test_unknown_services_and_missing_equals_are_refused_at_load(check: dict[str, Any],
                                                                 message: str) -> None:
    """An unknown service or a check without ``equals`` is a UsageError when the scenario
    loads."""
    with pytest.raises(UsageError, match=message):
        scenario_from_dict({"name": "x", "agent": "refund", "task": "t",
                            "success": [{"final_state": check}]})
