"""The suites' cases: drifts of the fields whose values reach a write, re-issues beyond the
key's lifetime, outcomes nobody can learn, and dependencies slower than the run's budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether.evals.grading import grade
from tether.evals.suites import DEADLINE_SLACK_S, KEY_RETENTION_S, drifts, variant
from tether.evals.targets import probe_targets
from tether.sim.episode import run_episode
from tether.sim.invariants import EpisodeFacts, check_invariants
from tether.sim.scenario import Scenario, load_scenario, scenario_from_dict
from tether.sim.world import World

BUILTIN = Path(__file__).resolve().parents[2] / "src" / "tether" / "evals" / "scenarios"
BASES = {name: load_scenario(BUILTIN / f"{name}.yaml") for name in ("refund", "calendar")}


def _seeds(base: Scenario, suite: str, case: Callable[[Scenario], bool], n: int) -> list[int]:
    """The first ``n`` seeds whose variant is ``case`` (variants are cheap; episodes are not)."""
    found = [s for s in range(200) if case(variant(base, suite, s))]
    assert len(found) >= n, f"{suite}: fewer than {n} seeds draw the case"
    return found[:n]


def _key_expired(v: Scenario) -> bool:
    return any(f.status == 429 and (f.retry_after_s or 0) > KEY_RETENTION_S for f in v.faults)


def _unknown(v: Scenario) -> bool:
    return any(f.kind == "error" and len(f.on_call) > 5 for f in v.faults)


def _overshoot(v: Scenario) -> bool:
    return any(i.kind == "ends_within" for i in v.invariants)


def test_drifts_start_with_the_fields_whose_values_reach_a_write() -> None:
    """The refund agent's charge: the item prices (metadata), the charge id and its customer
    reach the refund, the note and the email, so their drifts come first; a field nothing
    reads (the currency) is drifted only among the others."""
    matter, other = drifts(probe_targets(BASES["refund"]))
    assert ("payments.get_charge", {"rename": {"metadata": "metadata_v2"}}) in matter
    assert ("payments.get_charge", {"retype": ["metadata"]}) in matter
    assert ("payments.get_charge", {"remove": ["customer"]}) in matter
    assert ("crm.get_customer", {"rename": {"email": "data.email"}}) in matter
    assert ("payments.get_charge", {"remove": ["currency"]}) in other
    assert not any(f == ("payments.get_charge", {"remove": ["currency"]}) for f in matter)


def test_three_drifts_in_four_hit_a_field_that_matters() -> None:
    """Over many seeds the drift suite mostly drifts the fields that reach a write."""
    matter, _ = drifts(probe_targets(BASES["refund"]))
    hits = [(f.target, {k: v for k, v in f.model_dump().items()
                        if k in ("rename", "remove", "retype") and v})
            for s in range(200) for f in variant(BASES["refund"], "schema_drift", s).faults]
    share = sum(h in matter for h in hits) / len(hits)
    assert 0.6 < share < 0.9


def with_fault(scenario: Scenario, fault: dict[str, Any]) -> Scenario:
    """``scenario`` with its last fault replaced by ``fault``."""
    checks = {k: [{c.kind: c.settings} for c in getattr(scenario, k)]
              for k in ("invariants", "success")}
    data = scenario.model_dump(exclude={"source", *checks})
    data["faults"] = [*data["faults"][:-1], fault]
    return scenario_from_dict({**data, **checks})


@pytest.mark.parametrize("name", ["refund", "calendar"])
def test_a_wrong_effect_is_a_drift_violation(name: str) -> None:
    """The drift variant carries the task's ``every`` checks: the whole charge refunded (the
    old fallback) or a meeting at another time breaks an invariant instead of passing."""
    scenario = variant(BASES[name], "schema_drift", 0)
    world = World(seed=0)
    if name == "refund":
        world.effect("payments", "refund", key="refund:ch_0001", charge="ch_0001",
                     amount=20000)
    else:
        world.effect("calendar", "create_event", key="event:Planning", title="Planning",
                     start="2026-01-05T12:00:00Z",
                     attendees=["ada@example.com", "bob@example.com", "carol@example.com"])
    verdicts = check_invariants(scenario.invariants, EpisodeFacts(world.ledger, {}))
    assert [v.invariant.split("(")[0] for v in verdicts if not v.holds] == ["every"]


@pytest.mark.parametrize("name", ["refund", "calendar"])
def test_tether_makes_no_wrong_effect_under_any_drift(name: str) -> None:
    """Over every drift of a field that reaches a write, the default harness breaks no
    invariant."""
    matter, _ = drifts(probe_targets(BASES[name]))
    assert len(matter) >= 8
    base = variant(BASES[name], "schema_drift", 0)
    broken = [(target, drift, r.verdicts) for target, drift in matter
              if not (r := run_episode(with_fault(base, {"kind": "schema_drift",
                                                         "target": target, **drift}),
                                       0, "default")).ok]
    assert broken == []


@pytest.mark.parametrize("case", [_key_expired, _unknown])
def test_retry_safety_new_cases_expose_naive_and_hold_under_tether(
        case: Callable[[Scenario], bool]) -> None:
    """A re-issue after the key expired, or an outcome every re-issue is refused for: naive
    duplicates or misreports; tether has no duplicate and claims no failure."""
    base = BASES["refund"]
    for seed in _seeds(base, "retry_safety", case, 2):
        scenario = variant(base, "retry_safety", seed)
        naive = grade(scenario, run_episode(scenario, seed, "naive"))
        assert naive.verdict in ("violation", "unacceptable_process", "task_failed")
        assert naive.verdict == "violation" or any("reported failure" in p or "blind" in p
                                                   for p in naive.problems)
        result = run_episode(scenario, seed, "default")
        tether = grade(scenario, result)
        assert result.ok, [v.detail for v in result.verdicts if not v.holds]
        assert [p for p in tether.problems if "reported failure" in p] == []
        assert result.status in ("completed", "escalated")


def test_latency_overshoot_ends_within_the_budget_under_tether_only() -> None:
    """A dependency slower than ``max_duration_s``: tether stops at its deadline (plus the
    documented slack), the naive loop waits it out and breaks ``ends_within``."""
    checked: list[tuple[str, float, float]] = []
    for name, base in BASES.items():
        for seed in _seeds(base, "latency_variance", _overshoot, 2):
            scenario = variant(base, "latency_variance", seed)
            budget = float(scenario.budgets["max_duration_s"])
            tether = run_episode(scenario, seed, "default")
            assert tether.virtual_duration_s <= budget + DEADLINE_SLACK_S
            assert tether.ok, [v.detail for v in tether.verdicts if not v.holds]
            naive = run_episode(scenario, seed, "naive")
            checked.append((name, budget, naive.virtual_duration_s))
            assert any(v.invariant.startswith("ends_within") and not v.holds
                       for v in naive.verdicts)
    assert len(checked) == 4


def test_ends_within_is_checked_against_virtual_time() -> None:
    """``ends_within`` holds up to its bound and fails past it, naming both."""
    scenario = variant(BASES["refund"], "latency_variance",
                       _seeds(BASES["refund"], "latency_variance", _overshoot, 1)[0])
    inv = [i for i in scenario.invariants if i.kind == "ends_within"]
    limit = float(inv[0].settings["seconds"])
    ok: Any = check_invariants(inv, EpisodeFacts(World(seed=0).ledger, {}, duration_s=limit))
    late = check_invariants(inv, EpisodeFacts(World(seed=0).ledger, {},
                                              duration_s=limit + 1))
    assert ok[0].holds and not late[0].holds and f"{limit:g}" in late[0].detail
