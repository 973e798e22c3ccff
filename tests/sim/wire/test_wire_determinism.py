"""Determinism on the wire: an agent whose tools use the official stripe SDK in-process keeps
the byte-for-byte guarantee — the same seed gives the same journal and ledger digests in fresh
processes with different PYTHONHASHSEED — and tether's harness keeps the refund exactly once
where the naive loop, its SDK retries off, refunds twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.sim import run_episode, scenario_from_dict

ROOT = Path(__file__).resolve().parents[3]

SCENARIO: dict[str, Any] = {
    "name": "stripe-credit", "agent": "tests.sim.own_agents.stripe_credit:agent",
    "task": "Please credit 700 cents on ord_1.",
    "world": {"payments": {
        "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
        "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 5_000}]}},
    "faults": [
        {"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]},
        {"kind": "latency", "target": "payments.*", "latency_range_s": [0.1, 3.0]},
        {"kind": "error", "target": "payments.create_refund", "status": 503,
         "probability": 0.3}],
    "invariants": [{"exactly_once": {"effect": "payments.refund", "keys": ["refund:ord_1"]}}],
    "success": [{"exactly_once": {"effect": "payments.refund",
                                  "match": {"charge": "ord_1", "amount": 700}}}],
}

_CHILD = """
import json, sys
from tether.sim import run_episode, scenario_from_dict
scenario = scenario_from_dict(json.loads(sys.argv[1]))
result = run_episode(scenario, int(sys.argv[2]), sys.argv[3])
print(json.dumps([result.journal_digest, result.ledger_digest, result.ok]))
"""


def _in_child(seed: int, harness: str, hashseed: str) -> list[Any]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(SCENARIO), str(seed),
                           harness], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    answer: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.parametrize("harness", ["default", "naive"])
def test_same_seed_same_digests_across_processes_and_hash_seeds(harness: str) -> None:
    """Two fresh processes with different PYTHONHASHSEED give the same journal and ledger
    digests for one seed of an agent on the stripe SDK (in-process wire)."""
    first = _in_child(11, harness, "1")
    second = _in_child(11, harness, "9876")
    assert first == second


def test_tether_refunds_once_where_the_naive_loop_refunds_twice() -> None:
    """A timeout after the refund committed: the naive loop (SDK retries off, no key) calls
    again and refunds twice; tether keys the write, retries with the same key (Stripe
    replays the first refund) and the ledger has one refund."""
    scenario = scenario_from_dict({**SCENARIO, "faults": SCENARIO["faults"][:1]})
    naive = run_episode(scenario, 0, "naive")
    default = run_episode(scenario, 0, "default")
    assert len([e for e in naive.ledger if e["operation"] == "refund"]) == 2
    assert not naive.ok
    assert len([e for e in default.ledger if e["operation"] == "refund"]) == 1
    assert default.ok and default.done
