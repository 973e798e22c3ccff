"""examples/foreign_agent: a Pydantic AI agent on the stripe SDK, judged by the simulator —
refunds twice under the framework's own retries, once with tether's tools in its hands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether.sim import load_scenario, run_episode, scenario_from_dict
from tether.sim.foreign import Replier

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "foreign_agent"
SCENARIO = EXAMPLE / "scenarios" / "refund_timeout_after.yaml"

pytest.importorskip("pydantic_ai")
stripe = pytest.importorskip("stripe")


def _desk() -> Any:
    """The example's module, loaded as the scenario loads it."""
    from tether.sim.agent_ref import load_agent_factory

    return sys.modules[load_agent_factory(str(EXAMPLE / "desk.py") + ":agent").__module__]


def _refunds(result: Any) -> list[dict[str, Any]]:
    return [e for e in result.ledger if (e["service"], e["operation"]) == ("payments", "refund")]


def _tether(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **env})


def test_naive_refunds_twice_and_tethers_tools_refund_once_from_the_command_line() -> None:
    """`tether sim run`: naive FAILs exactly_once (exit 1), default PASSes (exit 0)."""
    naive = _tether("sim", "run", str(SCENARIO), "--seed", "1", "--harness", "naive")
    default = _tether("sim", "run", str(SCENARIO), "--seed", "1", "--harness", "default")
    assert naive.returncode == 1, naive.stdout + naive.stderr
    assert "FAIL exactly_once(effect=payments.refund)" in naive.stdout
    assert default.returncode == 0, default.stdout + default.stderr
    assert default.stdout.startswith("PASS")


def test_the_verdicts_come_from_the_ledger_of_a_multi_turn_conversation() -> None:
    """The desk asks which order, the persona answers, the desk refunds: naive leaves two
    refunds, default one, with the task done and the refund's amount from the first turn
    (the agent's message history is kept across turns)."""
    scenario = load_scenario(SCENARIO)
    naive = run_episode(scenario, 1, "naive")
    default = run_episode(scenario, 1, "default")
    assert len(_refunds(naive)) == 2 and not naive.ok
    assert len(_refunds(default)) == 1 and default.ok and default.done
    assert [r["data"]["amount"] for r in _refunds(default)] == [2000]
    conversation = default.outcome.conversation
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]
    assert conversation[2]["content"] == "order: ch_0001"
    assert conversation[3]["content"].endswith("Goodbye!")
    assert [c.keyed for c in default.calls] == [True, True]  # the send and its re-issue
    assert {c.tool for c in default.calls} == {"refund"}


def test_the_agent_written_for_the_framework_alone_refunds_twice_under_either_harness() -> None:
    """Without tether's tools the harness has nothing to hold: default refunds twice too."""
    scenario = load_scenario(SCENARIO)
    for harness in ("naive", "default"):
        result = run_episode(scenario, 1, harness, agent=_desk().plain)
        assert len(_refunds(result)) == 2, harness
        assert not result.ok


def test_the_sdks_own_retries_send_its_own_key_and_refund_once() -> None:
    """With the stripe SDK's retries on, its retry after the lost response reuses the key the
    SDK generated: one refund, even for the plain agent (as the README says)."""
    desk = _desk()

    def retrying(env: Any) -> Replier:
        client = stripe.StripeClient("sk_test_desk", max_network_retries=2,
                                     base_addresses={"api": env.base_url("payments")},
                                     http_client=env.stripe_http_client())
        return desk._replier(desk.desk(desk.plain_refund(client)))  # type: ignore[no-any-return]

    result = run_episode(load_scenario(SCENARIO), 1, "naive", agent=retrying)
    assert len(_refunds(result)) == 1 and result.ok
    assert all(c.keyed for c in result.calls)


def test_a_crash_after_the_refund_is_recovered_and_the_rebuilt_agent_refunds_once() -> None:
    """A worker crash after Stripe applied the refund: default recovers the call, rebuilds the
    Pydantic AI agent from the conversation so far, and its new call is deduplicated."""
    data = yaml.safe_load(SCENARIO.read_text())
    data["faults"] = [{"kind": "crash", "target": "payments.create_refund", "on_call": [1]}]
    scenario = scenario_from_dict({**data, "agent": str(EXAMPLE / "desk.py") + ":agent"})
    default = run_episode(scenario, 1, "default")
    naive = run_episode(scenario, 1, "naive")
    assert default.crashes == 1 and len(_refunds(default)) == 1 and default.done
    assert default.answer.startswith("Refunded $20.00 on ch_0001")
    assert len(_refunds(naive)) == 2


def test_digests_are_the_same_across_processes_and_hash_seeds() -> None:
    """The in-process wire path is deterministic: the same journal and ledger digests in two
    processes with different PYTHONHASHSEED."""
    found = []
    for hash_seed in ("1", "2"):
        proc = _tether("sim", "run", str(SCENARIO), "--seed", "4", "--harness", "default",
                       PYTHONHASHSEED=hash_seed)
        digests = re.search(r"journal (\w+)\s+ledger (\w+)", proc.stdout)
        assert digests is not None, proc.stdout + proc.stderr
        found.append(digests.groups())
    assert found[0] == found[1]


def test_the_crash_recovery_suite_grades_the_framework_agent(tmp_path: Path) -> None:
    """`tether eval run` over the fault-free base scenario: the crash suite finds duplicate
    refunds under naive and none, every task done, with tether's tools."""
    proc = _tether("eval", "run", str(EXAMPLE / "scenarios" / "refund.yaml"), "--suite",
                   "crash_recovery", "--seeds", "3", "--workers", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = {c["harness"]: c for c in
             json.loads((tmp_path / "results.json").read_text())["cells"]}
    assert cells["naive"]["violations"] > 0
    assert cells["default"]["violations"] == 0
    assert cells["default"]["passed"] == cells["default"]["episodes"] == 3
