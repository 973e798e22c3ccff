"""Grading, fairness and resume: the cases that once gave the wrong answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.evals.campaign import plan, read_records, run_campaign
from tether.evals.grading import grade
from tether.evals.suites import BUILTIN_SCENARIOS
from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario, scenario_from_dict

REFUND = next(p for p in BUILTIN_SCENARIOS if p.stem == "refund")
BASE = load_scenario(REFUND).model_dump(exclude={"source", "invariants"})


def test_an_escalated_or_unfinished_run_is_not_a_pass() -> None:
    """A worker that crashes on every email: safe, but the task is not done."""
    scenario = scenario_from_dict({**BASE, "faults": [
        {"kind": "crash", "target": "email.send", "point": "before"}],
        "invariants": [{"exactly_once": {"effect": "payments.refund"}}]})
    for harness in ("naive", "default"):
        result = run_episode(scenario, 0, harness)
        verdict = grade(scenario, result)
        assert result.status != "completed" or not verdict.task_success
        # Not a pass either way; a run the harness escalated on purpose is "stopped".
        expected = "stopped" if result.status == "escalated" else "task_failed"
        assert verdict.verdict == expected, (harness, result.status, verdict)


def test_malformed_json_is_not_counted_as_blind_retries_of_a_write() -> None:
    """The naive loop shows a parse error to the model; nothing reached a service twice."""
    scenario = scenario_from_dict({**BASE, "knobs": {"sloppy": 0.5},
                                   "invariants": [{"exactly_once": {"effect": "payments.refund"}}]})
    for seed in range(10):
        g = grade(scenario, run_episode(scenario, seed, "naive"))
        assert not any("blind retr" in p for p in g.problems), (seed, g.problems)


def test_editing_a_scenario_makes_a_resumed_campaign_run_it_again(tmp_path: Path) -> None:
    """The job key fingerprints the scenario file: an edit is not answered from old records."""
    path = tmp_path / "refund.yaml"
    path.write_text(REFUND.read_text())
    out = tmp_path / "episodes.jsonl"
    jobs = plan([path], ["retry_safety"], ["default"], seeds=2)
    assert run_campaign(jobs, out, workers=1) == 2
    assert run_campaign(plan([path], ["retry_safety"], ["default"], seeds=2), out,
                        workers=1) == 0
    path.write_text(REFUND.read_text() + "\n# edited\n")
    assert run_campaign(plan([path], ["retry_safety"], ["default"], seeds=2), out,
                        workers=1) == 2
    assert len(list(read_records(out))) == 4


def test_a_stale_read_returns_state_that_old() -> None:
    """A stale_read of 90 s hides a note written 5 s before it fires."""
    import asyncio

    from tether.sim.faults import Fault, FaultLayer, FaultPlan
    from tether.sim.services.crm import CRM
    from tether.sim.world import World

    world = World(seed=1)
    crm = CRM(world, {"customers": [{"id": "c1", "name": "Ada", "email": "a@x"}]})
    crm.add_note("c1", "refunded", "agent")
    world.clock.advance(5)
    layer = FaultLayer(world, FaultPlan((Fault("stale_read", "crm.get_customer", stale_s=90),)))
    seen = asyncio.run(layer.call("crm.get_customer", lambda: crm.get_customer("c1"),
                                  on_stale=lambda s: crm.go_stale(s, age_s=s)))
    assert seen.notes == ()


def _throttled_after_commit(lookups_fail: bool) -> Scenario:
    faults: list[dict[str, Any]] = [
        {"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]},
        {"kind": "error", "target": "payments.create_refund", "status": 429,
         "on_call": [2, 3, 4, 5, 6, 7, 8]}]
    if lookups_fail:
        faults.append({"kind": "error", "target": "payments.list_refunds",
                       "status": 503, "probability": 1.0})
    return scenario_from_dict({**BASE, "faults": faults,
                               "invariants": [{"exactly_once": {"effect": "payments.refund"}}]})


def test_an_unknown_outcome_settled_by_lookup_completes_the_task() -> None:
    """A refund that timed out after commit, re-issues throttled: the lookup finds it."""
    scenario = _throttled_after_commit(lookups_fail=False)
    result = run_episode(scenario, 0, "default")
    verdict = grade(scenario, result)
    assert result.status == "completed", result.status
    assert verdict.verdict == "pass", verdict


def test_a_run_that_escalates_an_unknown_outcome_is_stopped_not_failed_nor_passed() -> None:
    """The same, with every lookup failing too: escalated, graded 'stopped'."""
    scenario = _throttled_after_commit(lookups_fail=True)
    result = run_episode(scenario, 0, "default")
    verdict = grade(scenario, result)
    assert result.status == "escalated", result.status
    assert verdict.verdict == "stopped", verdict
    assert not verdict.task_success
