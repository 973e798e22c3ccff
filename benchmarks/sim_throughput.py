"""Simulator throughput: refund episodes per second on one core, and time compression.

    python benchmarks/sim_throughput.py            # 200 episodes per cell, 5 repetitions
    python benchmarks/sim_throughput.py --quick    # 50 episodes, 3 repetitions
    python benchmarks/sim_throughput.py --profile  # cProfile of the default harness, faults on

Two worlds for the refund scenario: **no faults**, and **all faults** (a 429 and malformed
output from the model, 503s and latency from payments, a timeout after the refund committed).
Each cell runs N consecutive seeds in one process (one core) and reports the median episodes per
second over repetitions — per second of wall time and per second of the process's CPU time
(``time.process_time``; the figure to trust on a loaded machine) — and the ratio of simulated
(virtual) time to real time.

A second table shows whether a turn's cost grows with the conversation: one agent (a scripted
model that reads a retrieved page, then posts a consequential note, turn after turn, under
``control_flow`` and ``argument_provenance``) run for 10, 30 and 100 model turns on the memory
store; CPU µs per turn, and the ratio to the 10-turn run's per-turn cost (1.0 is flat).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import platform
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tether import (
    Agent,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    Runtime,
    ScriptedModel,
    ToolContext,
    VirtualClock,
    tool,
)
from tether.models.scripted import call, reply
from tether.policy import Policy
from tether.policy.rules import argument_provenance, control_flow
from tether.runtime.budgets import Budgets
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


def measure(scenario: Scenario, harness: str, episodes: int) -> tuple[float, float, float]:
    """(episodes per second, episodes per CPU second, virtual seconds per real second)."""
    started, cpu = time.perf_counter(), time.process_time()
    virtual = 0.0
    for seed in range(episodes):
        result = run_episode(scenario, seed, harness)
        virtual += result.virtual_duration_s
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return episodes / elapsed, episodes / cpu_s, virtual / elapsed


class _Page(BaseModel):
    page: int


class _Note(BaseModel):
    text: str


@tool(trust="retrieved")
def read_page(ctx: ToolContext, args: _Page) -> str:
    """A page someone else wrote."""
    return f"Page {args.page} of the handbook: refunds over 100.00 need a second look."


@tool(effect="idempotent", key=lambda a: f"note:{a.text}", tier=2)
def post_note(ctx: ToolContext, args: _Note) -> dict[str, Any]:
    """A consequential write: every call is checked for provenance."""
    return {"posted": args.text}


def _reader(turns: int) -> ScriptedModel:
    made = {"n": 0}

    def script(request: ModelRequest) -> ModelResponse:
        n = made["n"]
        made["n"] += 1
        if n >= turns:
            return reply("done")
        if n % 2 == 0:
            return call("read_page", {"page": n}, call_id=f"c{n}")
        return call("post_note", {"text": f"summary {n}"}, call_id=f"c{n}")

    return ScriptedModel(script)


def turn_cost(turns: int) -> float:
    """CPU µs per model turn of one run of ``turns`` turns."""
    agent = Agent(name="reader", model=_reader(turns), tools=[read_page, post_note],
                  instructions="Read the handbook and post notes.",
                  budgets=Budgets(max_steps=turns + 5),
                  policy=Policy.of(control_flow(min_tier=2, repeats=False),
                                   argument_provenance(min_tier=2)))
    runtime = Runtime(MemoryStore(), clock=VirtualClock(), seed=1)
    cpu = time.process_time()
    result = asyncio.run(runtime.start(agent, "Summarize the handbook, page by page."))
    spent = time.process_time() - cpu
    assert result.result is not None and result.result["tool_calls"] == turns, result
    return spent / (turns + 1) * 1e6


def turn_table(reps: int) -> None:
    print("\n| model turns | CPU µs per turn | vs 10 turns |")
    print("|---:|---:|---:|")
    turn_cost(10)  # warm-up
    base = 0.0
    for turns in (10, 30, 100):
        per_turn = statistics.median(turn_cost(turns) for _ in range(reps))
        base = base or per_turn
        print(f"| {turns} | {per_turn:,.0f} | {per_turn / base:.2f}× |")


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
    print("| world | harness | episodes/s | episodes per CPU-s | virtual s per real s | "
          "CPU ms per episode |")
    print("|---|---|---:|---:|---:|---:|")
    for name, scenario in worlds().items():
        for harness in ("naive", "default"):
            run_episode(scenario, 0, harness)  # warm-up
            samples = [measure(scenario, harness, episodes) for _ in range(reps)]
            rate = statistics.median(s[0] for s in samples)
            cpu_rate = statistics.median(s[1] for s in samples)
            compression = statistics.median(s[2] for s in samples)
            print(f"| {name} | {harness} | {rate:,.0f} | {cpu_rate:,.0f} | "
                  f"{compression:,.0f}× | {1000 / cpu_rate:,.2f} |")
    turn_table(reps)


if __name__ == "__main__":
    main()
