"""A user's own agent, end to end: its own tools and argument shapes, a scenario's declared
success, faults, the scenario's policy and approver, a chosen model, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sim.own_agents import credit
from tether.errors import UsageError
from tether.sim import Scenario, load_scenario, run_episode, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
AGENT = "tests.sim.own_agents.credit:agent"


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "credit-timeout",
        "agent": AGENT,
        "task": "Please credit 700 cents on ord_1.",
        "world": {"payments": {
            "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
            "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 50_000}]}},
        "faults": [{"kind": "timeout_after", "target": "payments.create_refund",
                    "on_call": [1]}],
        "success": [{"exactly_once": {"effect": "payments.refund",
                                      "match": {"charge": "ord_1", "amount": 700}}}],
        "invariants": [{"exactly_once": {"effect": "payments.refund"}}],
    }
    data.update(overrides)
    return data


def _scenario(**overrides: Any) -> Scenario:
    return scenario_from_dict(_data(**overrides))


def _refunds(result: Any) -> list[dict[str, Any]]:
    return [e for e in result.ledger if (e["service"], e["operation"]) == ("payments", "refund")]


def _policy(maximum: int) -> dict[str, Any]:
    return {"default": "allow", "rules": [{"argument_limit": {
        "tool": "credit_order", "argument": "cents", "max": maximum, "role": "supervisor"}}]}


def test_default_harness_credits_exactly_once_after_a_timeout_after_commit() -> None:
    """Under default, the own agent's write that timed out after commit is made exactly once
    and the scenario's success holds."""
    result = run_episode(_scenario(), 1, "default")
    assert result.status == "completed"
    assert result.ok, result.verdicts
    assert result.task_checks and all(c.holds for c in result.task_checks)
    assert [(e["data"]["charge"], e["data"]["amount"]) for e in _refunds(result)] == \
        [("ord_1", 700)]
    assert [f.kind for f in result.firings] == ["timeout_after"]
    assert result.agent == AGENT
    writes = [c for c in result.calls if c.target == "payments.create_refund"]
    assert len(writes) == 2 and all(c.keyed and c.tool == "credit_order" for c in writes)


def test_naive_harness_duplicates_the_own_agents_credit() -> None:
    """Under naive, the blind retry of the own agent's credit makes a second refund: the
    invariant and the success check are both violated."""
    result = run_episode(_scenario(), 1, "naive")
    assert not result.ok
    assert "2 × refund:ord_1" in result.verdicts[0].detail
    assert not all(c.holds for c in result.task_checks)
    assert len(_refunds(result)) == 2
    assert not any(c.keyed for c in result.calls)


def test_scenario_policy_with_approving_approver_makes_the_credit_after_approval() -> None:
    """A scenario policy holds the own agent's credit above its limit; an approving approver
    grants it, and never_without_approval holds because the effect's cause was approved."""
    scenario = _scenario(faults=[], policy=_policy(500), approver={"default": "approve"},
                         invariants=[{"never_without_approval": {"effect": "payments.refund"}}])
    result = run_episode(scenario, 0, "default")
    assert result.ok, result.verdicts
    assert result.outcome is not None
    assert [tool for tool, _ in result.outcome.approvals] == ["credit_order"]
    assert len(_refunds(result)) == 1
    assert all(c.holds for c in result.task_checks)


def test_scenario_policy_with_denying_approver_makes_no_credit() -> None:
    """With the approver denying, the held credit is never made: no refund, the task is not
    done, and the invariant still holds."""
    scenario = _scenario(faults=[], policy=_policy(500), approver={"default": "deny"},
                         invariants=[{"never_without_approval": {"effect": "payments.refund"}}])
    result = run_episode(scenario, 0, "default")
    assert result.ok, result.verdicts
    assert _refunds(result) == []
    assert not any(c.target == "payments.create_refund" for c in result.calls)
    assert not all(c.holds for c in result.task_checks)


def test_never_without_approval_is_violated_by_an_unapproved_credit() -> None:
    """The same credit made without any approval (naive ignores policy) violates
    never_without_approval: the invariant ties the effect to the tool that caused it."""
    scenario = _scenario(faults=[], policy=_policy(500), approver={"default": "approve"},
                         invariants=[{"never_without_approval": {"effect": "payments.refund"}}])
    result = run_episode(scenario, 0, "naive")
    assert len(_refunds(result)) == 1
    assert not result.ok
    assert "without an approval" in result.verdicts[0].detail


def test_limit_not_exceeded_is_not_held() -> None:
    """A credit under the scenario policy's limit is not held, even with a denying approver."""
    scenario = _scenario(faults=[], policy=_policy(5_000), approver={"default": "deny"})
    result = run_episode(scenario, 0, "default")
    assert len(_refunds(result)) == 1
    assert result.outcome is not None and result.outcome.approvals == []


def test_scenario_policy_is_added_to_the_agents_own_policy() -> None:
    """The scenario's rules join the agent's own: each alone holds the credit it covers."""
    own = "tests.sim.own_agents.credit:agent_with_policy"  # holds above 10,000 (manager)
    deny = {"default": "deny"}
    # The scenario's rule (above 500) holds a 700-cent credit the agent's own rule allows.
    story = run_episode(_scenario(faults=[], policy=_policy(500), approver=deny), 0,
                        agent=own)
    assert _refunds(story) == []
    # The agent's own rule still holds a 20,000-cent credit the scenario's rule allows.
    big = _scenario(faults=[], policy=_policy(1_000_000), approver=deny,
                    task="Please credit 20000 cents on ord_1.", success=[])
    assert _refunds(run_episode(big, 0, agent=own)) == []
    # Control: the agent without a policy of its own makes that credit.
    assert len(_refunds(run_episode(big, 0, agent=AGENT))) == 1


def test_scripted_model_replaces_the_agents_own() -> None:
    """model: {script: ...} runs the scripted model instead of the agent's: it credits 300,
    not the 700 the agent's own model would."""
    success = [{"exactly_once": {"effect": "payments.refund",
                                 "match": {"charge": "ord_1", "amount": 300}}}]
    scenario = _scenario(model={"script": "tests.sim.own_agents.credit:model"}, success=success)
    result = run_episode(scenario, 0)
    assert [e["data"]["amount"] for e in _refunds(result)] == [300]
    assert all(c.holds for c in result.task_checks)
    assert run_episode(_scenario(), 0).ledger[0]["data"]["amount"] == 700


def test_a_callable_agent_runs_like_its_spec() -> None:
    """Passing the factory itself runs the same episode as naming it, and names it."""
    by_name = run_episode(_scenario(), 4, "naive")
    by_callable = run_episode(_scenario(agent="tests.sim.own_agents.broken:offline"), 4,
                              "naive", agent=credit.agent)
    assert by_callable.agent == AGENT
    assert (by_callable.journal_digest, by_callable.ledger_digest) == \
        (by_name.journal_digest, by_name.ledger_digest)


def test_two_runs_of_one_seed_are_identical() -> None:
    """One seed, one agent, one harness: the same journal and ledger, byte for byte."""
    for harness in ("default", "naive"):
        first, second = (run_episode(_scenario(), 9, harness) for _ in range(2))
        assert first.journal_digest == second.journal_digest
        assert first.ledger_digest == second.ledger_digest
        assert first.ledger == second.ledger
        assert [c.as_data() for c in first.calls] == [c.as_data() for c in second.calls]


def test_a_fresh_process_reproduces_the_episode(tmp_path: Path) -> None:
    """`python -m tether.cli sim run --json` in a fresh process gives the digests this process
    computes for the same scenario file and seed, under both harnesses."""
    path = tmp_path / "credit.yaml"
    path.write_text(yaml.safe_dump(_data()))
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    for harness, code in (("default", 0), ("naive", 1)):
        done = subprocess.run(
            [sys.executable, "-m", "tether.cli", "sim", "run", str(path), "--seed", "5",
             "--harness", harness, "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == code, done.stderr
        fresh = json.loads(done.stdout)
        here = run_episode(scenario_from_dict(_data(), where=str(path)), 5, harness)
        assert fresh["agent"] == AGENT
        assert (fresh["journal_digest"], fresh["ledger_digest"]) == \
            (here.journal_digest, here.ledger_digest)


def test_approver_rules_name_the_agents_own_tools() -> None:
    """approve_tools / deny_tools name the agent's own tools: a denying approver that always
    approves credit_order lets the held credit through; deny_tools wins over approve_tools."""
    allowed = _scenario(faults=[], policy=_policy(500),
                        approver={"default": "deny", "approve_tools": ["credit_order"]})
    assert len(_refunds(run_episode(allowed, 0))) == 1
    refused = _scenario(faults=[], policy=_policy(500),
                        approver={"default": "approve", "approve_tools": ["credit_order"],
                                  "deny_tools": ["credit_order"]})
    assert _refunds(run_episode(refused, 0)) == []


def test_policy_and_model_files_are_relative_to_the_scenario(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """`policy: policies/x.yaml` and `model: {script: models.py:fn}` resolve against the
    scenario's folder, whatever the current directory."""
    folder = tmp_path / "scenarios"
    (folder / "policies").mkdir(parents=True)
    (folder / "policies" / "limits.yaml").write_text(yaml.safe_dump(_policy(200)))
    (folder / "models.py").write_text(
        "from tests.sim.own_agents.credit import credit_script\n\n\n"
        "def small(env):\n    return credit_script(cents=150)\n")
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(_data(faults=[], success=[], policy="policies/limits.yaml",
                                         approver={"default": "deny"})))
    monkeypatch.chdir(tmp_path)
    # 700 cents is above the file's limit of 200: held and denied.
    assert _refunds(run_episode(load_scenario(path), 0)) == []
    path.write_text(yaml.safe_dump(_data(faults=[], success=[], policy="policies/limits.yaml",
                                         approver={"default": "deny"},
                                         model={"script": "models.py:small"})))
    # The file's model credits 150, under the limit: made.
    assert [e["data"]["amount"] for e in _refunds(run_episode(load_scenario(path), 0))] == [150]


def test_a_missing_policy_file_is_refused_at_load(tmp_path: Path) -> None:
    """A scenario naming a policy file that does not exist fails to load, naming the file."""
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(_data(policy="policies/nope.yaml")))
    with pytest.raises(UsageError, match="no policy file"):
        load_scenario(path)


def test_a_crash_after_the_credit_is_recovered_once_under_default_repeated_under_naive() -> None:
    """A worker crash right after the credit was applied: default recovers the run and the
    credit exists once; naive restarts from scratch and credits again."""
    crash = [{"kind": "crash", "target": "payments.create_refund", "on_call": [1],
              "point": "after"}]
    default = run_episode(_scenario(faults=crash), 2, "default")
    assert default.crashes == 1 and default.ok and len(_refunds(default)) == 1
    assert all(c.holds for c in default.task_checks)
    naive = run_episode(_scenario(faults=crash), 2, "naive")
    assert naive.crashes == 1 and not naive.ok and len(_refunds(naive)) == 2


def test_a_reconcilable_tools_lookup_settles_an_ambiguous_write() -> None:
    """An own reconcilable tool whose write timed out after commit is looked up by its
    reconciler (a lookup call attributed to it) instead of written twice; naive writes
    twice."""
    data = _data(agent="tests.sim.own_agents.credit:journal_agent", task="Write the entry.",
                 faults=[{"kind": "timeout_after", "target": "crm.add_note", "on_call": [1]}],
                 success=[{"exactly_once": {"effect": "crm.note", "match": {"target": "cus_1"}}}],
                 invariants=[{"at_most": {"effect": "crm.note", "n": 1}}])
    data["world"]["crm"] = {"customers": [{"id": "cus_1", "name": "Ann",
                                           "email": "ann@example.com"}]}
    default = run_episode(scenario_from_dict(data), 0, "default")
    assert default.ok and all(c.holds for c in default.task_checks), default.verdicts
    lookups = [c for c in default.calls if c.lookup]
    assert [(c.tool, c.target) for c in lookups] == [("journal_entry", "crm.primary_notes")]
    assert [c.target for c in default.calls if not c.lookup] == ["crm.add_note"]
    naive = run_episode(scenario_from_dict(data), 0, "naive")
    assert not naive.ok and not any(c.lookup for c in naive.calls)


def test_json_output_of_an_agent_passing_decimal_amounts(tmp_path: Path) -> None:
    """`sim run --json` of a passing episode whose tool passes a Decimal amount prints JSON and
    exits 0."""
    from typer.testing import CliRunner

    from tether.cli import app

    path = tmp_path / "credit.yaml"
    path.write_text(yaml.safe_dump(_data(agent="tests.sim.own_agents.credit:decimal_agent")))
    result = CliRunner().invoke(app, ["sim", "run", str(path), "--json"])
    assert result.exit_code == 0, repr(result.exception)
    assert json.loads(result.output)["calls"][0]["args"]["amount"] in (700, "700")


@pytest.mark.parametrize("harness", ["naive", "default"])
def test_two_runs_that_behaved_differently_have_different_journals(harness: str) -> None:
    """An agent whose model is not a function of its episode (it looks the order up on every
    other run, then credits the same and answers the same) gives two digests for one seed,
    under naive as under default: a replay check cannot call such runs identical."""
    scenario = _scenario()
    spec = "tests.sim.own_agents.credit:drifting_agent"
    first, second = (run_episode(scenario, 0, harness, agent=spec) for _ in range(2))
    assert first.ledger_digest == second.ledger_digest and first.answer == second.answer
    assert first.journal_digest != second.journal_digest
