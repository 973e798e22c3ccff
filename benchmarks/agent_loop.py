"""What the agent loop costs per turn, against a bare hand-written loop doing the same calls.

    python benchmarks/agent_loop.py            # 9 repetitions per cell
    python benchmarks/agent_loop.py --quick    # 5 repetitions

A turn is: ask the model (a scripted function answering with one tool call), validate and run
the tool (a no-op read), append the result to the conversation. Runs of 10 and 50 turns end
with a text answer. The **bare loop** does exactly that with plain Python: a message list, the
same script function, the same tool function, no journal, no validation, no budgets. tether
runs the same script through ``Agent`` on a ``MemoryStore`` and on a ``SQLiteStore`` (default
durability, a fresh file per repetition). Each cell is the median over repetitions of (wall time
of one run) / turns, after one untimed warm-up; systems take turns repetition by repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from pydantic import BaseModel

from tether import (
    Agent,
    Budgets,
    MemoryStore,
    Message,
    ModelRequest,
    ModelResponse,
    RunStatus,
    Runtime,
    ScriptedModel,
    SQLiteStore,
    Store,
    ToolContext,
    VirtualClock,
    tool,
)
from tether import __version__ as tether_version
from tether.models.scripted import call, reply

TURNS = (10, 50)

#: One timed run: turns -> seconds for the whole run.
Runner = Callable[[int], float]


class EchoArgs(BaseModel):
    n: int


def echo_handler(ctx: ToolContext | None, args: EchoArgs) -> int:
    return args.n


echo = tool(name="echo", args=EchoArgs, result=int)(echo_handler)


def make_script(turns: int) -> Callable[[ModelRequest], ModelResponse]:
    def script(request: ModelRequest) -> ModelResponse:
        done = sum(1 for m in request.messages if m.role == "tool")
        return call("echo", {"n": done}, call_id=f"c{done}") if done < turns else reply("done")

    return script


def bare_runner(turns: int) -> float:
    """The hand-written loop: same script, same tool function, a list for memory."""
    script = make_script(turns)

    async def loop() -> str:
        messages = [Message.system("be brief"), Message.user("count")]
        while True:
            response = script(ModelRequest(messages=tuple(messages)))
            if not response.tool_calls:
                return response.text
            messages.append(Message.assistant(response.text, response.tool_calls))
            for c in response.tool_calls:
                result = echo_handler(None, EchoArgs.model_validate_json(c.arguments))
                messages.append(Message.tool(c, str(result)))

    started = time.perf_counter()
    assert asyncio.run(loop()) == "done"
    return time.perf_counter() - started


def tether_runner(open_store: Callable[[str], Store]) -> Runner:
    def run(turns: int) -> float:
        with tempfile.TemporaryDirectory(prefix="tether-agent-bench-") as tmp:
            store = open_store(tmp)
            agent = Agent(name="counter", model=ScriptedModel(make_script(turns)), tools=[echo],
                          instructions="be brief", budgets=Budgets(max_steps=None))
            runtime = Runtime(store, clock=VirtualClock(), seed=1)
            started = time.perf_counter()
            result = asyncio.run(runtime.start(agent, "count"))
            elapsed = time.perf_counter() - started
            store.close()
        assert result.status is RunStatus.COMPLETED, result
        return elapsed

    return run


def measure(runners: dict[str, Runner], reps: int) -> dict[tuple[str, int], list[float]]:
    samples: dict[tuple[str, int], list[float]] = {}
    for turns in TURNS:
        for runner in runners.values():
            runner(turns)  # warm-up
        for rep in range(reps):
            for system, runner in runners.items():
                samples.setdefault((system, turns), []).append(runner(turns) / turns * 1e6)
            print(f"  {turns} turns: repetition {rep + 1}/{reps}", file=sys.stderr)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    reps = args.reps if args.reps is not None else (5 if args.quick else 9)
    runners: dict[str, Runner] = {
        "bare loop": bare_runner,
        "tether memory": tether_runner(lambda tmp: MemoryStore()),
        "tether SQLite": tether_runner(lambda tmp: SQLiteStore(os.path.join(tmp, "runs.db"))),
    }
    print("## Machine\n")
    print(f"- {platform.machine()}, {os.cpu_count()} cores; Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; tether {tether_version}")
    print(f"- {reps} timed repetitions per cell (+1 warm-up); median reported\n")
    samples = measure(runners, reps)
    print("## µs per agent turn (whole run / turns)\n")
    print("| system | turns | µs/turn (median) | min–max | overhead vs bare, µs | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for turns in TURNS:
        bare = statistics.median(samples[("bare loop", turns)])
        for system in runners:
            values = samples[(system, turns)]
            median = statistics.median(values)
            print(f"| {system} | {turns} | {median:,.1f} | {min(values):,.1f}–{max(values):,.1f}"
                  f" | {median - bare:,.1f} | {median / bare:,.1f}× |")


if __name__ == "__main__":
    main()
