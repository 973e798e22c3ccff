"""The desk's reliability tests: its own scenarios, run by tether's ``tether_sim`` fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from desk.agent import CreditArgs, build, production

from tether.evals import TetherSim
from tether.sim import EpisodeResult, environment_for, load_scenario

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = "scenarios/credit_timeout.yaml"
SUPERVISOR = "scenarios/damaged_needs_supervisor.yaml"


def effects(result: EpisodeResult, name: str) -> list[dict[str, Any]]:
    """The ledger's effects named ``service.operation``."""
    return [e for e in result.ledger if f"{e['service']}.{e['operation']}" == name]


@pytest.mark.parametrize("seed", range(5))
def test_a_credit_whose_response_is_lost_is_made_exactly_once(tether_sim: TetherSim,
                                                             seed: int) -> None:
    """Under tether, a timeout after the payments API committed the credit (and one after the
    CRM saved the note) leaves one credit of 15.00, one note and one email."""
    result = tether_sim.run(TIMEOUT, seed=seed, agent=build)
    tether_sim.assert_ok(result)
    assert {(f.kind, f.target) for f in result.firings} == {
        ("timeout_after", "payments.create_refund"), ("timeout_after", "crm.add_note")}
    assert [e["data"]["amount"] for e in effects(result, "payments.refund")] == [1500]
    assert len(effects(result, "crm.note")) == 1
    assert len(effects(result, "email.send")) == 1
    assert all(check.holds for check in result.task_checks)


def test_a_blind_retry_credits_twice(tether_sim: TetherSim) -> None:
    """The naive loop retries the timed-out credit without a key: two credits, two notes."""
    result = tether_sim.run(TIMEOUT, harness="naive", agent=build)
    assert not result.ok
    assert [e["data"]["amount"] for e in effects(result, "payments.refund")] == [1500, 1500]
    assert len(effects(result, "crm.note")) == 2
    broken = {v.invariant for v in result.verdicts if not v.holds}
    assert broken == {"exactly_once(effect=payments.refund)", "at_most(effect=crm.note, n=1)"}


def test_the_credit_is_keyed_under_tether_and_not_under_naive(tether_sim: TetherSim) -> None:
    """The desk's handlers pass the runtime's idempotency key on (naive gives none), and every
    service call is attributed to the tool that made it."""
    keyed = tether_sim.run(TIMEOUT, agent=build)
    naive = tether_sim.run(TIMEOUT, harness="naive", agent=build)
    credits = [c for c in keyed.calls if c.target == "payments.create_refund"]
    assert credits and all(c.keyed and c.tool == "issue_credit" for c in credits)
    assert all(c.effect == "idempotent" for c in credits)
    assert not any(c.keyed for c in naive.calls if c.target == "payments.create_refund")
    assert {c.tool for c in keyed.calls} >= {"lookup_order", "customer_profile",
                                             "issue_credit", "notify_customer", "log_case"}


def test_a_large_credit_waits_for_the_supervisor(tether_sim: TetherSim) -> None:
    """The store's policy holds the 150.00 credit; the supervisor approves it, and it is made
    once, after the approval. The naive loop, which knows no policy, makes it unapproved."""
    result = tether_sim.run(SUPERVISOR)
    tether_sim.assert_ok(result)
    assert result.outcome is not None
    assert [name for name, _ in result.outcome.approvals] == ["issue_credit"]
    assert [e["data"]["amount"] for e in effects(result, "payments.refund")] == [15000]
    naive = tether_sim.run(SUPERVISOR, harness="naive")
    assert [v.invariant for v in naive.verdicts if not v.holds] == [
        "never_without_approval(effect=payments.refund)"]


SUITES = ("retry_safety", "crash_recovery", "schema_drift", "adversarial_context",
          "latency_variance")


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("suite", SUITES)
def test_no_suite_breaks_an_invariant_under_tether(tether_sim: TetherSim, suite: str,
                                                   seed: int) -> None:
    """Each of the five suites, its faults chosen from what the desk does, reaches the desk
    (a fault fires) and breaks no invariant (a drifted or slow world may leave the task
    undone: that is safe, so only the invariants are asserted)."""
    result = tether_sim.suite("scenarios/late_delivery.yaml", suite, seed=seed, agent=build)
    assert result.firings, f"no {suite} fault reached the desk"
    tether_sim.assert_ok(result, task=False)


def test_production_and_simulation_build_the_same_agent() -> None:
    """The production factory and the simulator's differ only in clients and model: the same
    tools (names, argument schemas, effect classes, tiers, keys, reconcilers), instructions,
    policy and budgets."""
    settings = {"payments_url": "https://payments.internal", "crm_url": "https://crm.internal",
                "email_url": "https://mail.internal", "token": "unused",
                "openai_api_key": "unused"}
    live = production(settings)
    simulated = build(environment_for(load_scenario(f"{ROOT}/scenarios/late_delivery.yaml")))

    def shape(agent: Any) -> list[tuple[Any, ...]]:
        return [(t.name, t.description, t.args_schema(), t.effect, t.tier, t.trust,
                 t.reconcile is not None, t.key(CreditArgs(order_id="ord_1", cents=1, memo="m"))
                 if t.name == "issue_credit" else None) for t in agent.tools]

    assert shape(live) == shape(simulated)
    assert live.tools[2].effect.value == "idempotent"
    assert (live.instructions, live.budgets) == (simulated.instructions, simulated.budgets)
    assert live.policy is not None and simulated.policy is not None
    assert [r.name for r in live.policy.rules] == [r.name for r in simulated.policy.rules]
    assert type(live.model).__name__ == "OpenAIModel"
    assert type(simulated.model).__name__ == "ScriptedModel"
