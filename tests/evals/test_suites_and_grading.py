"""The five suites build the right variants for the reference agents; grading tells the
outcomes apart."""

from __future__ import annotations

import pytest

from tether.evals.grading import grade
from tether.evals.suites import BUILTIN_SCENARIOS, SUITES, variant
from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario

BASES = {p.stem: load_scenario(p) for p in BUILTIN_SCENARIOS}


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_tether_never_violates_a_suite_invariant(base: str, suite: str) -> None:
    """Over 15 seeds of every suite, the default harness breaks no invariant."""
    broken = []
    for seed in range(15):
        scenario = variant(BASES[base], suite, seed)
        result = run_episode(scenario, seed, "default")
        if not result.ok:
            broken.append((seed, [v.detail for v in result.verdicts if not v.holds]))
    assert broken == []


@pytest.mark.parametrize(("base", "suite"), [
    ("refund", "retry_safety"), ("refund", "adversarial_context"), ("calendar", "retry_safety"),
    ("calendar", "adversarial_context"), ("refund", "crash_recovery")])
def test_the_naive_harness_is_caught_by_the_suites(base: str, suite: str) -> None:
    """Retry safety, crash recovery and adversarial context catch the naive harness."""
    assert any(not run_episode(variant(BASES[base], suite, seed), seed, "naive").ok
               for seed in range(20))


def test_variants_depend_on_the_seed_and_carry_the_suite_invariants() -> None:
    """Different seeds pick different faults; the suite's invariants are always there: one
    at_most_each and one at_most (the twin's count) per effect the agent's writes cause, and
    a stranger's target is never written."""
    plans = {tuple(f.target for f in variant(BASES["refund"], "retry_safety", s).faults)
             for s in range(20)}
    assert len(plans) > 2
    adversarial = next(v for s in range(20)
                       if "stranger" in (v := variant(BASES["calendar"], "adversarial_context",
                                                      s)).faults[-1].name)
    kinds = [inv.kind for inv in adversarial.invariants]
    assert kinds.count("at_most_each") == 1 and "at_most" in kinds
    assert {"effect": "calendar.create_event", "n": 1} in [
        i.settings for i in adversarial.invariants if i.kind == "at_most"]
    assert adversarial.knobs.gullible == 0.8
    people = [p["id"] for p in adversarial.world["calendar"]["people"]]
    assert len(people) == 4 and people[-1] in adversarial.faults[-1].text


def graded(base: Scenario, suite: str, seed: int, harness: str) -> tuple[str, str, bool]:
    scenario = variant(base, suite, seed)
    g = grade(scenario, run_episode(scenario, seed, harness))
    return g.verdict, g.domain, g.task_success


def test_grades_separate_violations_task_failures_and_bad_process() -> None:
    """Naive duplicates are violations (harness domain); injections are context failures;
    tether's runs pass; drifted schemas may fail the task safely (tool interface)."""
    refund = BASES["refund"]
    seed = next(s for s in range(20) if not run_episode(
        variant(refund, "retry_safety", s), s, "naive").ok)
    assert graded(refund, "retry_safety", seed, "naive")[:2] == ("violation", "harness")
    assert graded(refund, "retry_safety", seed, "default") == ("pass", "", True)
    seed = next(s for s in range(20) if not run_episode(
        variant(refund, "adversarial_context", s), s, "naive").ok)
    assert graded(refund, "adversarial_context", seed, "naive")[:2] == ("violation", "context")
    drift = [graded(refund, "schema_drift", s, "default") for s in range(12)]
    assert all(v in ("pass", "task_failed") for v, _, _ in drift)
    assert all(d == "tool_interface" for v, d, _ in drift if v == "task_failed")


def test_metrics_count_calls_retries_and_virtual_time() -> None:
    """Per-episode metrics come from the journal: calls, retries, virtual duration."""
    scenario = variant(BASES["refund"], "latency_variance", 3)
    g = grade(scenario, run_episode(scenario, 3, "default"))
    assert g.metrics["model_calls"] >= 6 and g.metrics["tool_calls"] >= 6
    assert g.metrics["virtual_s"] > 0 and g.metrics["tokens"] > 0
