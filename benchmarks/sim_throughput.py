"""Simulator throughput: refund episodes per second on one core, and time compression.

    python benchmarks/sim_throughput.py            # 200 episodes per cell, 5 repetitions
    python benchmarks/sim_throughput.py --quick    # 50 episodes, 3 repetitions
    python benchmarks/sim_throughput.py --profile  # cProfile of the default harness, faults on

Two worlds for the refund scenario: **no faults**, and **all faults** (a 429 and malformed
output from the model, 503s and latency from payments, a timeout after the refund committed).
Each cell runs N consecutive seeds in one process (one core) and reports the median episodes per
second over repetitions, and the ratio of simulated (virtual) time to real time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import statistics
import time
from pathlib import Path

from tether.sim.episode import run_episode
from tether.sim.scenario import Scenario, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
STORY = ROOT / "examples" / "scenarios" / "refund_timeout_after_commit.yaml"
ALL_FAULTS = [
    {"kind": "rate_limit", "target": "model.complete", "on_call": [2], "retry_after_s": 5},
    {"kind": "malformed_output", "target": "model.complete", "on_call": [4]},
    {"kind": "error", "target": "payments.*", "probability": 0.2, "status": 503},
    {"kind": "latency", "target": "*", "latency_range_s": [0.05, 2.0]},
    {"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]},
]


def worlds() -> dict[str, Scenario]:
    base = load_scenario(STORY).model_dump(exclude={"faults", "invariants", "source"})
    invariants = [{"exactly_once": {"effect": "payments.refund"}}]
    return {
        "no faults": scenario_from_dict({**base, "invariants": invariants}),
        "all faults": scenario_from_dict({**base, "faults": ALL_FAULTS,
                                          "invariants": invariants}),
    }


def measure(scenario: Scenario, harness: str, episodes: int) -> tuple[float, float]:
    """(episodes per second, virtual seconds per real second)."""
    started = time.perf_counter()
    virtual = 0.0
    for seed in range(episodes):
        result = run_episode(scenario, seed, harness)
        virtual += result.virtual_duration_s
    elapsed = time.perf_counter() - started
    return episodes / elapsed, virtual / elapsed


def profile() -> None:
    scenario = worlds()["all faults"]
    run_episode(scenario, 0, "default")
    profiler = cProfile.Profile()
    profiler.enable()
    for seed in range(100):
        run_episode(scenario, seed, "default")
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profile()
        return
    episodes, reps = (50, 3) if args.quick else (200, 5)
    print(f"- Python {platform.python_version()}, one process (one core); {episodes} "
          f"episodes per repetition, {reps} repetitions, median reported\n")
    print("| world | harness | episodes/s | virtual s per real s | ms per episode |")
    print("|---|---|---:|---:|---:|")
    for name, scenario in worlds().items():
        for harness in ("naive", "default"):
            run_episode(scenario, 0, harness)  # warm-up
            samples = [measure(scenario, harness, episodes) for _ in range(reps)]
            rate = statistics.median(s[0] for s in samples)
            compression = statistics.median(s[1] for s in samples)
            print(f"| {name} | {harness} | {rate:,.0f} | {compression:,.0f}× | "
                  f"{1000 / rate:,.2f} |")


if __name__ == "__main__":
    main()
