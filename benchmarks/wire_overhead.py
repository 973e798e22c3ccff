"""What the wire costs: one agent's episodes through a Python client, through httpx on the
in-process transport, and through the official stripe SDK on its in-process HTTP client.

    python benchmarks/wire_overhead.py            # 100 episodes per cell, 5 repetitions
    python benchmarks/wire_overhead.py --quick    # 30 episodes, 3 repetitions

The agent is the test suite's credit agent (one keyed refund, scripted model), under the
default harness, with a timeout after the refund committed so every episode retries once.
Only the tools' client differs between cells. Each cell reports the median CPU time per
episode (``time.process_time``: the machine may be busy) and its ratio to the Python client
in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tether.sim.episode import run_episode  # noqa: E402
from tether.sim.scenario import Scenario, scenario_from_dict  # noqa: E402

AGENTS = {
    "python client (env.client)": "tests.sim.own_agents.credit:agent",
    "stripe SDK (in-process HTTP)": "tests.sim.own_agents.stripe_credit:agent",
}

BASE: dict[str, Any] = {
    "name": "wire-overhead", "task": "Please credit 700 cents on ord_1.",
    "world": {"payments": {
        "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
        "charges": [{"id": "ord_1", "customer": "cus_1", "amount": 5_000}]}},
    "faults": [{"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]}],
    "invariants": [{"exactly_once": {"effect": "payments.refund"}}],
}


def scenario(agent: str) -> Scenario:
    return scenario_from_dict({**BASE, "agent": agent})


def cpu_per_episode_ms(story: Scenario, episodes: int) -> float:
    started = time.process_time()
    for seed in range(episodes):
        result = run_episode(story, seed, "default")
        assert result.ok, result.verdicts
    return (time.process_time() - started) * 1000 / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    episodes, repetitions = (30, 3) if options.quick else (100, 5)
    stories = {name: scenario(agent) for name, agent in AGENTS.items()}
    for story in stories.values():  # warm imports and caches
        cpu_per_episode_ms(story, 3)
    samples: dict[str, list[float]] = {name: [] for name in stories}
    for _ in range(repetitions):
        for name, story in stories.items():
            samples[name].append(cpu_per_episode_ms(story, episodes))
    baseline = statistics.median(samples["python client (env.client)"])
    print(f"{episodes} episodes per cell, {repetitions} repetitions, median CPU per episode")
    print(f"{'client':<32} {'CPU ms/episode':>15} {'episodes/CPU-s':>15} {'ratio':>7}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<32} {median:>15.2f} {1000 / median:>15.0f} {median / baseline:>6.2f}×")


if __name__ == "__main__":
    main()
