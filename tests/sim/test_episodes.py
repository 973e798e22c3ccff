"""The seeds' stories as episodes: the naive harness really fails them, tether never does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.sim.episode import run_episode
from tether.sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
STORIES = ["refund_timeout_after_commit", "calendar_double_booking",
           "refund_crash_after_refund", "refund_kb_injection", "refund_flaky_world",
           "refund_user_changes_mind", "refund_stale_crm"]


@pytest.mark.parametrize("story", STORIES)
def test_naive_violates_and_default_never_does(story: str) -> None:
    """For each story, some seeds break the naive harness; no seed breaks tether's."""
    scenario = load_scenario(SCENARIOS / f"{story}.yaml")
    naive = [run_episode(scenario, seed, "naive") for seed in range(12)]
    default = [run_episode(scenario, seed, "default") for seed in range(12)]
    assert any(not r.ok for r in naive), f"{story}: the simulator detected nothing"
    broken = [(r.seed, [v.detail for v in r.verdicts if not v.holds]) for r in default
              if not r.ok]
    assert broken == []


def test_timeout_after_commit_naive_refunds_twice_tether_replays() -> None:
    """The ledger shows why: two refunds without keys vs one refund replayed under its key."""
    scenario = load_scenario(SCENARIOS / "refund_timeout_after_commit.yaml")
    naive = run_episode(scenario, 3, "naive")
    refunds = [e for e in naive.ledger if e["operation"] == "refund"]
    assert [(e["data"]["amount"], e["data"]["idempotency_key"]) for e in refunds] == \
        [(4999, None), (4999, None)]
    tether_run = run_episode(scenario, 3, "default")
    (refund,) = [e for e in tether_run.ledger if e["operation"] == "refund"]
    assert refund["data"]["idempotency_key"] == "refund:ch_0001:4999"  # the business key
    assert [f.kind for f in tether_run.firings] == ["timeout_after"]
    kinds = [e.kind for e in tether_run.outcome.events] if tether_run.outcome else []
    assert "tool_ambiguous" in kinds and kinds.count("tool_intent") == 5


def test_injected_refund_is_held_and_refused_under_tether() -> None:
    """With a gullible model the injected refund happens naively and is refused by tether."""
    scenario = load_scenario(SCENARIOS / "refund_kb_injection.yaml")
    seed = next(s for s in range(20) if not run_episode(scenario, s, "naive").ok)
    naive = run_episode(scenario, seed, "naive")
    assert any(e["data"]["charge"] == "ch_0099" for e in naive.ledger
               if e["operation"] == "refund")
    guarded = run_episode(scenario, seed, "default")
    assert guarded.ok and guarded.outcome is not None
    # Refused outright (control_flow: only the document names ch_0099) or held and refused.
    refused = [e for e in guarded.outcome.events
               if e.kind == "decision" and e.name == "policy" and e.data["verdict"] != "allow"]
    assert [h.data["args"]["charge"] for h in refused] == ["ch_0099"]
    assert refused[0].data["sources"] == ["kb.search"]


def test_crash_is_recovered_by_a_fresh_runtime() -> None:
    """A crash after the refund: tether's replacement worker finishes without repeating it."""
    scenario = load_scenario(SCENARIOS / "refund_crash_after_refund.yaml")
    result = run_episode(scenario, 0, "default")
    assert result.crashes == 1 and result.status == "completed" and result.ok
    naive = run_episode(scenario, 0, "naive")
    assert naive.crashes == 1
    assert [v.detail for v in naive.verdicts if not v.holds] == ["2 × refund:ch_0001"]


def test_the_refund_follows_the_users_last_word() -> None:
    """The user changes her mind at turn 3: the mugs are refunded, never the kettle."""
    scenario = load_scenario(SCENARIOS / "refund_user_changes_mind.yaml")
    result = run_episode(scenario, 0, "default")
    said = [e["data"]["text"] for e in result.ledger if e["service"] == "user"]
    assert said[2].startswith("Actually, I changed my mind: please refund the mugs")
    assert [e["data"]["amount"] for e in result.ledger if e["operation"] == "refund"] == [7001]
    assert result.ok


def test_the_stale_replica_is_what_breaks_the_naive_check() -> None:
    """With a fresh replica the naive read-then-write check catches the earlier refund; with
    the 90 s lag it does not, and the customer is refunded twice."""
    stale = load_scenario(SCENARIOS / "refund_stale_crm.yaml")
    world = {**stale.world, "crm": {**stale.world["crm"], "lag_s": 0}}
    fresh = stale.model_copy(update={"world": world})
    assert run_episode(fresh, 0, "naive").ok
    assert not run_episode(stale, 0, "naive").ok
    assert run_episode(stale, 0, "default").ok
