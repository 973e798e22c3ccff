"""One scenario + one seed + one harness ⇒ the same journal and ledger, in any process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.sim.episode import run_episode
from tether.sim.scenario import load_scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

DIGESTS = """
import json, sys
from pathlib import Path
from tether.sim.episode import run_episode
from tether.sim.scenario import load_scenario
out = {}
for path in sorted(Path(sys.argv[1]).glob("*.yaml")):
    scenario = load_scenario(path)
    for harness in ("naive", "default"):
        for seed in range(4):
            r = run_episode(scenario, seed, harness)
            out[f"{scenario.name}/{harness}/{seed}"] = [r.journal_digest, r.ledger_digest]
print(json.dumps(out, sort_keys=True))
"""


def digests_in_subprocess(hash_seed: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-c", DIGESTS, str(SCENARIOS)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_two_processes_with_different_hash_seeds_agree_byte_for_byte() -> None:
    """Every scenario × harness × seed gives identical journal and ledger digests."""
    first, second = digests_in_subprocess("1"), digests_in_subprocess("4242")
    assert len(first) == len(list(SCENARIOS.glob("*.yaml"))) * 2 * 4
    assert first == second
    assert len({tuple(v) for v in first.values()}) > len(first) // 2  # not all the same


FAULT_POOL = [
    {"kind": "timeout_after", "target": "payments.create_refund"},
    {"kind": "timeout_before", "target": "payments.create_refund"},
    {"kind": "error", "target": "payments.*", "status": 503},
    {"kind": "latency", "target": "*", "latency_range_s": [0.1, 5.0]},
    {"kind": "duplicate_delivery", "target": "crm.add_note"},
    {"kind": "rate_limit", "target": "model.complete", "retry_after_s": 3},
    {"kind": "malformed_output", "target": "model.complete"},
    {"kind": "crash", "target": "payments.create_refund", "point": "after"},
    {"kind": "crash", "target": "email.send", "point": "before"},
    {"kind": "timeout_after", "target": "email.send"},
]
BASE = load_scenario(SCENARIOS / "refund_timeout_after_commit.yaml").model_dump(
    exclude={"faults", "invariants", "source"})
INVARIANTS = [{"exactly_once": {"effect": "payments.refund"}},
              {"at_most": {"effect": "email.send", "n": 1}}]


plans = st.lists(st.tuples(st.sampled_from(range(len(FAULT_POOL))),
                           st.one_of(st.none(), st.floats(0.1, 1.0)),
                           st.lists(st.integers(1, 3), max_size=2, unique=True)),
                 max_size=4)


def scenario_with(plan: list[tuple[int, float | None, list[int]]]):  # type: ignore[no-untyped-def]
    faults = []
    for index, probability, calls in plan:
        fault = dict(FAULT_POOL[index])
        if probability is not None:
            fault["probability"] = probability
        if calls:
            fault["on_call"] = calls
        faults.append(fault)
    return scenario_from_dict({**BASE, "faults": faults, "invariants": INVARIANTS})


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), plan=plans)
def test_any_seed_and_fault_plan_replays_identically_and_tether_stays_safe(
        seed: int, plan: list[tuple[int, float | None, list[int]]]) -> None:
    """Random seeds × fault plans: the same twice; under tether never a duplicate effect."""
    scenario = scenario_with(plan)
    for harness in ("naive", "default"):
        first, second = run_episode(scenario, seed, harness), run_episode(scenario, seed, harness)
        assert (first.journal_digest, first.ledger_digest) == \
            (second.journal_digest, second.ledger_digest)
        assert first.as_data() == second.as_data()
    guarded = run_episode(scenario, seed, "default")
    assert guarded.ok, [v.detail for v in guarded.verdicts if not v.holds]
