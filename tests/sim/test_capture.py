"""Capture: a run recorded on SQLite — a write that timed out after committing, a worker
SIGKILLed with a write in flight — made into a scenario, replayed under both harnesses.

Run as a script, this file is the production agent process the tests kill and recover:

    python tests/sim/test_capture.py --store runs.db --provider p.db [--kill-at TOOL | --recover]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from tether import (
    Agent,
    ModelRequest,
    ModelResponse,
    ProbePoint,
    Runtime,
    ScriptedModel,
    SQLiteStore,
    Tool,
    tool,
)
from tether.agent.agent import Task
from tether.clock import VirtualClock
from tether.errors import Crash, TransientError, UsageError
from tether.events import ToolResult
from tether.models.scripted import call, reply
from tether.runtime.provenance import Sourced
from tether.runtime.tools import ToolContext
from tether.sim.capture import (
    EXHAUSTED,
    capture,
    capture_run,
    replay_divergence,
    replay_model,
    scenario_yaml,
)
from tether.sim.faults import FaultLayer, FaultPlan
from tether.sim.harness import run_default, run_naive
from tether.sim.recorded import NotRecorded, recording_from_dict, unrecorded, wrap_recorded
from tether.sim.scenario import FaultSpec
from tether.sim.world import World
from tether.store.memory import MemoryStore

RUN_ID = "incident-A-1"
ORDER = "A-1"
TASK = {"text": "Order A-1 arrived broken; refund it and close the ticket.",
        "principal": "ada", "roles": ["customer"]}


# -- the production side: a provider in its own SQLite file, an agent, a killable process ---


class Provider:
    """A provider deduplicating writes by idempotency key (the first response replayed). Its
    first refund request commits and then times out, as a gateway timeout after commit."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.db.execute("CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, response TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS effects (endpoint TEXT, key TEXT)")

    def write(self, endpoint: str, key: str, response: dict[str, Any]) -> dict[str, Any]:
        row = self.db.execute("SELECT response FROM keys WHERE key=?", (key,)).fetchone()
        if row is not None:
            return dict(json.loads(row[0]))
        self.db.execute("INSERT INTO keys VALUES (?, ?)", (key, json.dumps(response)))
        self.db.execute("INSERT INTO effects VALUES (?, ?)", (endpoint, key))
        first_refund = endpoint == "refund" and self.count("refund") == 1
        if first_refund:
            raise TimeoutError("refund: gateway timeout (the refund was committed)")
        return response

    def count(self, endpoint: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM effects WHERE endpoint=?",
                                   (endpoint,)).fetchone()[0])


class OrderRef(BaseModel):
    order_id: str


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


def build_agent(provider: Provider | None) -> Agent:
    @tool
    def lookup_order(tc: ToolContext, args: OrderRef) -> dict[str, Any]:
        """Look up an order."""
        return {"order_id": args.order_id, "amount_cents": 4999}

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> dict[str, Any]:
        """Refund an order."""
        assert provider is not None, "the replay must never reach the production handler"
        return provider.write("refund", tc.idempotency_key, {"refund_id": "re_1"})

    @tool(effect="idempotent", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: OrderRef) -> dict[str, Any]:
        """Close the ticket."""
        assert provider is not None, "the replay must never reach the production handler"
        return provider.write("close", tc.idempotency_key, {"ticket": "closed"})

    def script(request: ModelRequest) -> ModelResponse:
        results = [json.loads(m.content) for m in request.messages if m.role == "tool"]
        if not results:
            return call("lookup_order", {"order_id": ORDER}, call_id="c1")
        if len(results) == 1:
            return call("refund", {"order_id": ORDER,
                                   "amount_cents": results[0]["amount_cents"]}, call_id="c2")
        if len(results) == 2:
            return call("close_ticket", {"order_id": ORDER}, call_id="c3")
        return reply(f"Refunded {ORDER} ({results[1]['refund_id']}); ticket closed.")

    return Agent(name="support", model=ScriptedModel(script, name="scripted-support"),
                 tools=[lookup_order, refund, close_ticket], instructions="Refund, then close.")


def agent(env: Any) -> Agent:
    """The agent factory a captured scenario names (its tools answer from the recording)."""
    return build_agent(None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--provider", required=True, type=Path)
    parser.add_argument("--kill-at", default="")
    parser.add_argument("--recover", action="store_true")
    args = parser.parse_args(argv)
    built = build_agent(Provider(args.provider))

    def probe(point: ProbePoint) -> None:
        if point.name == args.kill_at and point.point == "after_call":
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    runtime = Runtime(SQLiteStore(args.store), workflows=[built], probe=probe, seed=3,
                      owner="capture-worker")
    if args.recover:
        (result,) = asyncio.run(runtime.recover())
    else:
        result = asyncio.run(runtime.start(built, TASK, run_id=RUN_ID))
    print(json.dumps({"status": result.status.value}))


# -- fixtures ----------------------------------------------------------------------------


def invoke(folder: Path, *args: str) -> int:
    cmd = [sys.executable, __file__, "--store", str(folder / "runs.db"), "--provider",
           str(folder / "provider.db"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False).returncode


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run SIGKILLed right after close_ticket was applied, then recovered by a new process."""
    folder = tmp_path_factory.mktemp("incident")
    assert invoke(folder, "--kill-at", "close_ticket") == -signal.SIGKILL
    assert invoke(folder, "--recover") == 0
    provider = Provider(folder / "provider.db")
    # Production itself applied each write once: the provider deduplicated the re-issues.
    assert (provider.count("refund"), provider.count("close")) == (1, 1)
    return folder / "runs.db"


@pytest.fixture(scope="module")
def captured(incident: Path) -> dict[str, Any]:
    return capture_run(str(incident), RUN_ID, agent=f"{__file__}:agent")


#: The replayed models of :func:`replay`, newest last (to ask them about divergence).
REPLAYED: list[Any] = []


def replay(scenario: dict[str, Any], harness: str,
           built: Agent | None = None) -> tuple[World, Any]:
    """The captured scenario run under ``harness`` with this module's parts only, with the
    agent that ran (``build_agent``'s by default)."""
    world = World(seed=0)
    plan = FaultPlan(tuple(FaultSpec.model_validate(f).build() for f in scenario["faults"]))
    layer = FaultLayer(world, plan)
    built = built or build_agent(None)
    tools = wrap_recorded(built.tools, scenario["recorded"], world, layer)
    REPLAYED.append(replay_model(scenario["model"]["replay"]))
    runnable = Agent(name=built.name, model=REPLAYED[-1], tools=tools,
                     instructions=built.instructions, policy=built.policy)
    task = Task(text=scenario["task"], principal=scenario["principal"]["id"])
    if harness == "naive":
        outcome = asyncio.run(run_naive(world, runnable, task))
    else:
        outcome = asyncio.run(run_default(world, runnable, task, approver=lambda held: True,
                                          run_id="replay"))
    return world, outcome


def handle(recorded: Tool[Any, Any], ctx: ToolContext, args: BaseModel) -> Any:
    """Call a wrapped tool's handler as the runtime would."""

    async def run() -> Any:
        return await recorded.handler(ctx, args)

    return asyncio.run(run())


def writes(world: World) -> Counter[tuple[str, str]]:
    return Counter((e.operation, e.key) for e in world.ledger.of("recorded"))


# -- the tests ---------------------------------------------------------------------------


def test_capture_reconstructs_task_answers_calls_and_faults(captured: dict[str, Any]) -> None:
    """The scenario holds the task, the model's answers, each call's outcome and the faults."""
    assert captured["task"] == TASK["text"]
    assert captured["principal"] == {"id": "ada", "roles": ["customer"]}
    assert len(captured["model"]["replay"]) == 4
    tools = captured["recorded"]["tools"]
    assert [c["outcome"] for c in tools["lookup_order"]["calls"]] == ["ok"]
    assert tools["lookup_order"]["calls"][0]["args"] == {"order_id": ORDER}
    assert [c["outcome"] for c in tools["refund"]["calls"]] == ["timeout_after", "ok"]
    assert [c["outcome"] for c in tools["close_ticket"]["calls"]] == ["crash_after", "ok"]
    assert {c["key"] for c in tools["refund"]["calls"]} == {"refund:A-1"}
    assert all(c["result"] == {"refund_id": "re_1"} for c in tools["refund"]["calls"])
    assert [(f["kind"], f["target"], f["on_call"]) for f in captured["faults"]] == [
        ("timeout_after", "recorded.refund", [1]), ("crash", "recorded.close_ticket", [1])]
    # Invariants forbid duplicates only; "each recorded write applied" is what success asks.
    assert captured["invariants"] == [
        {"exactly_once": {"effect": "recorded.refund"}},
        {"exactly_once": {"effect": "recorded.close_ticket"}}]
    assert captured["success"] == [
        {"exactly_once": {"effect": "recorded.refund", "keys": ["refund:A-1"]}},
        {"exactly_once": {"effect": "recorded.close_ticket", "keys": ["close:A-1"]}}]
    assert "Not reconstructed" in captured["description"]


def test_captured_yaml_round_trips(captured: dict[str, Any]) -> None:
    """The YAML written reads back as the same data, and its recording and answers load."""
    text = scenario_yaml(captured)
    assert text.startswith("# Captured by `tether sim capture` from run incident-A-1.")
    back = yaml.safe_load(text)
    assert back == captured
    assert recording_from_dict(back["recorded"]).tools["refund"].effect == "idempotent"
    replay_model(back["model"]["replay"])


def test_naive_replay_duplicates_the_writes(captured: dict[str, Any]) -> None:
    """Under naive, the blind retry and the restart after the crash apply writes again."""
    world, outcome = replay(captured, "naive")
    counts = writes(world)
    assert counts[("refund", "refund:A-1")] >= 2
    assert counts[("close_ticket", "close:A-1")] >= 2
    assert outcome.crashes == 1
    assert unrecorded(world) == []


def test_default_replay_applies_each_write_once(captured: dict[str, Any]) -> None:
    """Under default, keyed re-issues are deduplicated: each write once, the run completes."""
    world, outcome = replay(captured, "default")
    assert writes(world) == Counter({("refund", "refund:A-1"): 1,
                                     ("close_ticket", "close:A-1"): 1})
    assert outcome.status == "completed"
    assert outcome.crashes == 1
    assert "re_1" in outcome.answer
    assert unrecorded(world) == []


@pytest.mark.parametrize("harness", ["naive", "default"])
def test_captured_scenario_runs_as_an_episode(captured: dict[str, Any], harness: str) -> None:
    """The captured scenario loads and runs as an episode: naive duplicates, default not."""
    from tether.sim.episode import run_episode
    from tether.sim.scenario import scenario_from_dict

    data = {k: v for k, v in captured.items() if k != "invariants"}
    result = run_episode(scenario_from_dict(data), 0, harness)
    keys = Counter(e["key"] for e in result.ledger)
    assert result.status == "completed"
    assert [f.kind for f in result.firings] == ["timeout_after", "crash"]
    if harness == "naive":
        assert keys["refund:A-1"] >= 2
    else:
        assert keys == Counter({"refund:A-1": 1, "close:A-1": 1})


def test_an_episode_that_leaves_the_recording_is_inconclusive(captured: dict[str, Any]) -> None:
    """A replay whose agent reads what the run never read is inconclusive, not a pass."""
    from tether.sim.episode import run_episode
    from tether.sim.scenario import scenario_from_dict

    data = {k: v for k, v in captured.items() if k != "invariants"}
    answers = [dict(a) for a in data["model"]["replay"]]
    answers[0] = call("lookup_order", {"order_id": "B-2"}, call_id="c1").model_dump(mode="json")
    data["model"] = {"replay": answers}
    result = run_episode(scenario_from_dict(data), 0, "default")
    assert result.inconclusive
    assert "lookup_order" in result.inconclusive[0]


def test_a_harness_that_stops_short_is_not_done_not_a_violation(
        captured: dict[str, Any], tmp_path: Path) -> None:
    """A variant whose budget stops the run before it closes the ticket leaves a recorded
    write undone: the episode is stopped (not done, on purpose), and no invariant is broken."""
    from tether.evals.grading import grade
    from tether.sim.episode import run_episode
    from tether.sim.scenario import scenario_from_dict

    variants = tmp_path / "h.yaml"
    variants.write_text(yaml.safe_dump({"harnesses": {"short": {
        "budgets": {"max_model_calls": 2}}}}))
    scenario = scenario_from_dict(captured)
    result = run_episode(scenario, 0, "short", harness_files=(str(variants),))
    assert result.ok, [v.detail for v in result.verdicts if not v.holds]
    assert [c.holds for c in result.task_checks] == [True, False]  # refunded, not closed
    assert "close:A-1" in result.task_checks[1].detail
    assert grade(scenario, result).verdict == "stopped"
    default = run_episode(scenario, 0, "default")
    assert grade(scenario, default).task_success and default.ok
    assert grade(scenario, default).verdict != "stopped"


def test_a_request_past_the_recording_is_a_divergence() -> None:
    """Asked more than the recorded run was, the replayed model says so: the episode cannot
    be judged on recorded answers."""
    from tether.models.base import Message
    from tether.sim.capture import replay_divergence

    model = replay_model([call("lookup_order", {"order_id": ORDER}).model_dump(mode="json"),
                          reply("done").model_dump(mode="json")])
    assert replay_divergence(model) == []
    first = ModelRequest(messages=(Message.user("go"),))
    later = ModelRequest(messages=(Message.user("go"), Message.assistant("x")))
    asyncio.run(model.complete(first))
    asyncio.run(model.complete(later))
    assert replay_divergence(model) == []
    beyond = ModelRequest(messages=(Message.user("go"), Message.assistant("y")))
    asyncio.run(model.complete(beyond))
    (reason,) = replay_divergence(model)
    assert "2 recorded answers" in reason and "inconclusive" in reason
    assert replay_divergence(ScriptedModel(lambda r: reply("x"))) == []


def test_grade_of_an_episode_that_left_the_recording_is_inconclusive(
        captured: dict[str, Any]) -> None:
    """grade() alone, without a campaign, does not call an off-recording episode a pass."""
    from tether.evals.grading import grade
    from tether.sim.episode import run_episode
    from tether.sim.scenario import scenario_from_dict

    data = dict(captured)
    answers = [dict(a) for a in data["model"]["replay"]]
    answers[0] = call("lookup_order", {"order_id": "B-2"}, call_id="c1").model_dump(mode="json")
    data["model"] = {"replay": answers}
    scenario = scenario_from_dict(data)
    result = run_episode(scenario, 0, "default")
    assert result.inconclusive and result.ok
    assert grade(scenario, result).verdict == "inconclusive"


def test_captured_answers_carry_what_the_model_had_seen(captured: dict[str, Any]) -> None:
    """Each recorded answer after a tool call carries the observations it answered."""
    seen = [a.get("seen") for a in captured["model"]["replay"]]
    assert seen[0] is None
    assert seen[1] == {"c1": json.dumps({"amount_cents": 4999, "order_id": ORDER},
                                        sort_keys=True)}
    assert seen[3] == {"c3": json.dumps({"ticket": "closed"}, sort_keys=True)}


def test_an_answer_given_to_a_conversation_the_run_never_had_is_a_divergence(
        captured: dict[str, Any]) -> None:
    """A policy that denies close_ticket: the model reads a denial where the run read
    'closed', and the recorded "ticket closed" answer is flagged, not handed over silently."""
    from dataclasses import replace

    from tether.policy import Policy, deny_tools

    strict = replace(build_agent(None), policy=Policy(rules=(deny_tools(["close_ticket"]),)))
    world, _ = replay(captured, "default", strict)
    assert writes(world)[("close_ticket", "close:A-1")] == 0
    (reason,) = replay_divergence(REPLAYED[-1])
    assert "c3" in reason and "inconclusive" in reason
    replay(captured, "default")
    assert replay_divergence(REPLAYED[-1]) == []


def test_an_episode_asking_past_the_recorded_answers_is_inconclusive(
        captured: dict[str, Any]) -> None:
    """With the recorded final answer cut off, the run asks once more than recorded: the
    episode says so and is inconclusive, not a pass on an invented answer."""
    from tether.sim.episode import run_episode
    from tether.sim.scenario import scenario_from_dict

    data = dict(captured)
    data["model"] = {"replay": [dict(a) for a in data["model"]["replay"]][:-1]}
    result = run_episode(scenario_from_dict(data), 0, "default")
    assert any("past the recorded run" in why for why in result.inconclusive)


def test_a_call_off_the_recording_is_refused_and_listed() -> None:
    """A read with arguments the run never read raises NotRecorded and is listed."""
    recording = {"tools": {"lookup_order": {"effect": "read", "calls": [
        {"outcome": "ok", "args": {"order_id": ORDER}, "result": {"amount_cents": 1}}]}}}
    world = World(seed=0)
    layer = FaultLayer(world, FaultPlan())
    (lookup, *_) = wrap_recorded(build_agent(None).tools, recording, world, layer)
    ctx = ToolContext(run_id="r", tool="lookup_order", position=1, idempotency_key="",
                      attempt=1, now=0.0)
    assert handle(lookup, ctx, OrderRef(order_id=ORDER)) == {"amount_cents": 1}
    # Repeated with the same arguments: the state as last observed.
    assert handle(lookup, ctx, OrderRef(order_id=ORDER)) == {"amount_cents": 1}
    with pytest.raises(NotRecorded, match="not recorded"):
        handle(lookup, ctx, OrderRef(order_id="B-2"))
    assert len(unrecorded(world)) == 1


def test_a_compensation_is_refused_as_not_recorded() -> None:
    """A saga's undo is outside the recording: refused and listed, never run for real."""
    built = build_agent(None)
    refund = built.tools[1]

    @refund.compensator
    def undo(tc: ToolContext, args: Any, result: Any) -> None:
        raise AssertionError("the agent's own compensation must not run in a replay")

    world = World(seed=0)
    wrapped = wrap_recorded(built.tools, {"tools": {}}, world, FaultLayer(world, FaultPlan()))
    ctx = ToolContext(run_id="r", tool="refund", position=1, idempotency_key="k", attempt=1,
                      now=0.0)
    assert wrapped[1].compensate is not None
    with pytest.raises(NotRecorded, match="compensations are not recorded"):
        wrapped[1].compensate(ctx, RefundArgs(order_id=ORDER, amount_cents=1), {})
    assert len(unrecorded(world)) == 1


def test_a_keyed_write_is_deduplicated_and_an_unkeyed_one_applied_again() -> None:
    """The recording service deduplicates by the caller's key, like a provider, and only so."""
    recording = {"tools": {"refund": {"effect": "idempotent", "calls": [
        {"outcome": "ok", "args": {"order_id": ORDER, "amount_cents": 5}, "key": "refund:A-1",
         "result": {"refund_id": "re_1"}}]}}}
    world = World(seed=0)
    layer = FaultLayer(world, FaultPlan())
    refund = wrap_recorded(build_agent(None).tools, recording, world, layer)[1]
    args = RefundArgs(order_id=ORDER, amount_cents=5)
    for key in ("k", "k", "", ""):
        ctx = ToolContext(run_id="r", tool="refund", position=1, idempotency_key=key,
                          attempt=1, now=0.0)
        assert handle(refund, ctx, args) == {"refund_id": "re_1"}
    assert writes(world) == Counter({("refund", "refund:A-1"): 3})


def test_replayed_answers_start_over_on_a_fresh_conversation_and_end_with_text() -> None:
    """A restarted conversation is answered from the start; past the end, a final text."""
    model = replay_model([call("lookup_order", {"order_id": ORDER}).model_dump(mode="json"),
                          reply("done").model_dump(mode="json")])
    from tether.models.base import Message

    first = ModelRequest(messages=(Message.user("go"),))
    later = ModelRequest(messages=(Message.user("go"), Message.assistant("x")))
    assert asyncio.run(model.complete(first)).tool_calls
    assert asyncio.run(model.complete(later)).text == "done"
    assert asyncio.run(model.complete(first)).tool_calls  # started over
    asyncio.run(model.complete(later))
    assert asyncio.run(model.complete(later)).text == EXHAUSTED.format(n=2)


def test_a_recorded_model_failure_is_raised_again_and_its_retry_not_rewound() -> None:
    """A journaled model failure is raised again; the retried request gets the next answer."""
    from tether.errors import RateLimited
    from tether.models.base import Message

    model = replay_model([{"failed": RateLimited("slow down").to_record()},
                          reply("done").model_dump(mode="json")])
    first = ModelRequest(messages=(Message.user("go"),))
    with pytest.raises(RateLimited):
        asyncio.run(model.complete(first))
    assert asyncio.run(model.complete(first)).text == "done"


@pytest.mark.parametrize("given", [[], {"answers": "x"}, [{"tool_calls": "nope"}]])
def test_bad_replay_data_is_a_usage_error(given: Any) -> None:
    """Replay data that is not a list of model responses is refused, naming the problem."""
    with pytest.raises(UsageError, match=r"model\.replay"):
        replay_model(given)


def test_bad_recording_is_a_usage_error() -> None:
    """A recording with an unknown outcome or a write without args names the key path."""
    with pytest.raises(UsageError, match="recorded"):
        recording_from_dict({"tools": {"t": {"calls": [{"outcome": "maybe"}]}}})
    with pytest.raises(UsageError, match=r"calls\[0\]: a write needs its args"):
        recording_from_dict({"tools": {"t": {"effect": "unsafe", "calls": [{"outcome": "ok"}]}}})


# -- bad input -------------------------------------------------------------------------


def cli(*args: str) -> Any:
    from tether.cli import app

    return CliRunner().invoke(app, ["sim", "capture", *args])


def test_cli_writes_the_scenario(incident: Path, tmp_path: Path) -> None:
    """`tether sim capture` writes the scenario file and exits 0."""
    out = tmp_path / "incident.yaml"
    result = cli(RUN_ID, "--store", str(incident), "--agent", f"{__file__}:agent",
                 "--out", str(out))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text())["recorded"]["run"] == RUN_ID


def test_captured_file_reruns_the_incident_under_both_harnesses(incident: Path,
                                                               tmp_path: Path) -> None:
    """capture → `tether sim run` of the file: naive repeats the refund (FAIL, exit 1), the
    default harness applies every write once (exit 0)."""
    from typer.testing import CliRunner

    from tether.cli import app

    out = tmp_path / "incident.yaml"
    assert cli(RUN_ID, "--store", str(incident), "--agent", f"{__file__}:agent",
               "--out", str(out)).exit_code == 0
    runner = CliRunner()
    naive = runner.invoke(app, ["sim", "run", str(out), "--harness", "naive"])
    assert naive.exit_code == 1, naive.output
    assert naive.output.startswith("FAIL") and "exactly_once" in naive.output
    default = runner.invoke(app, ["sim", "run", str(out), "--harness", "default"])
    assert default.exit_code == 0, default.output
    assert "FAIL" not in default.output


def test_unwritable_out_exits_2(incident: Path, tmp_path: Path) -> None:
    """An --out in a folder that does not exist exits 2 naming the file."""
    out = tmp_path / "missing" / "incident.yaml"
    result = cli(RUN_ID, "--store", str(incident), "--agent", "x.y:z", "--out", str(out))
    assert result.exit_code == 2
    assert "cannot write" in result.output


def test_unknown_run_exits_2(incident: Path) -> None:
    """An unknown run id exits 2 naming it."""
    result = cli("no-such-run", "--store", str(incident), "--agent", "x.y:z")
    assert result.exit_code == 2
    assert "no run 'no-such-run'" in result.output
    assert "tether runs list" in result.output


def test_missing_store_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    """A store that does not exist exits 2 and is not created."""
    path = tmp_path / "nope.db"
    result = cli(RUN_ID, "--store", str(path))
    assert result.exit_code == 2
    assert "no store at" in result.output
    assert not path.exists()


def test_run_without_agent_spec_exits_2(incident: Path) -> None:
    """A run that does not record its agent, captured without --agent, says to pass one."""
    result = cli(RUN_ID, "--store", str(incident))
    assert result.exit_code == 2
    assert "--agent" in result.output


def test_run_without_model_calls_exits_2(tmp_path: Path) -> None:
    """A workflow run with no model calls is not an agent run: exit 2, said so."""
    from tether import workflow

    @workflow
    async def plain(ctx: Any, data: Any) -> str:
        return "ok"

    path = tmp_path / "runs.db"
    runtime = Runtime(SQLiteStore(str(path)), workflows=[plain])
    asyncio.run(runtime.start(plain, "x", run_id="plain-1"))
    result = cli("plain-1", "--store", str(path), "--agent", "x.y:z")
    assert result.exit_code == 2
    assert "made no model calls" in result.output


def test_crash_fault_reaches_the_recording_service() -> None:
    """A recorded crash fires after the write was applied, through the fault layer."""
    recording = {"tools": {"close_ticket": {"effect": "idempotent", "calls": [
        {"outcome": "crash_after", "args": {"order_id": ORDER}, "key": "close:A-1",
         "result": {"ticket": "closed"}}]}}}
    world = World(seed=0)
    plan = FaultPlan((FaultSpec(kind="crash", target="recorded.close_ticket",
                                on_call=[1]).build(),))
    close = wrap_recorded(build_agent(None).tools, recording, world, FaultLayer(world, plan))[2]
    ctx = ToolContext(run_id="r", tool="close_ticket", position=1, idempotency_key="k",
                      attempt=1, now=0.0)
    with pytest.raises(Crash):
        handle(close, ctx, OrderRef(order_id=ORDER))
    assert handle(close, ctx, OrderRef(order_id=ORDER)) == {"ticket": "closed"}
    assert writes(world) == Counter({("close_ticket", "close:A-1"): 1})



# -- any failure schedule production met replays under default as it happened -------------

#: What one invocation of a tool meets in production (a write never times out before commit
#: here: capture assumes an ambiguous write applied, the documented worst case).
READ_FATES = ("ok", "unavailable", "throttled", "timeout", "error")
WRITE_FATES = ("ok", "unavailable", "throttled", "timeout_after", "error")


class Scheduled:
    """A provider in memory whose n-th request to an endpoint meets ``fates[endpoint][n]``
    (once it refused a request, ``error``, it refuses the rest);
    ``applied`` counts writes by key, or by endpoint for requests sent without one."""

    def __init__(self, fates: dict[str, list[str]]) -> None:
        self.fates = fates
        self.seen: Counter[str] = Counter()
        self.keys: dict[str, dict[str, Any]] = {}
        self.applied: Counter[str] = Counter()
        self.met: dict[str, list[str]] = {}

    def request(self, endpoint: str, key: str | None, response: dict[str, Any]) -> Any:
        self.seen[endpoint] += 1
        plan = self.fates.get(endpoint, [])
        fate = plan[self.seen[endpoint] - 1] if self.seen[endpoint] <= len(plan) else "ok"
        if "error" in self.met.get(endpoint, ()):
            fate = "error"  # a refusal is permanent: the same request is refused again
        self.met.setdefault(endpoint, []).append(fate)
        if fate == "unavailable":
            raise TransientError(f"{endpoint}: HTTP 503")
        if fate == "throttled":
            raise TransientError(f"{endpoint}: HTTP 429", retry_after_s=2.0)
        if fate == "timeout":
            raise TimeoutError(f"{endpoint}: no response")
        if fate == "error":
            raise ValueError(f"{endpoint}: HTTP 400 refused")
        if key == "":  # no idempotency key: applied again, as a provider does
            self.applied[endpoint] += 1
        elif key is not None:
            if key not in self.keys:
                self.keys[key] = response
                self.applied[key] += 1
            response = self.keys[key]
        if fate == "timeout_after":
            raise TimeoutError(f"{endpoint}: the response was lost")
        return response


def scheduled_agent(provider: Scheduled) -> Agent:
    @tool
    def lookup_order(tc: ToolContext, args: OrderRef) -> Any:
        """Look up an order (its notes are written by customers: retrieved trust)."""
        return Sourced(provider.request("lookup", None, {"order_id": args.order_id,
                                                         "amount_cents": 4999}),
                       source=f"orders:{args.order_id}", trust="retrieved")

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def refund(tc: ToolContext, args: RefundArgs) -> Any:
        """Refund an order."""
        return provider.request("refund", tc.idempotency_key, {"refund_id": "re_1"})

    @tool(effect="reconcilable", key=lambda a: f"close:{a.order_id}")
    def close_ticket(tc: ToolContext, args: OrderRef) -> Any:
        """Close the ticket (the helpdesk can be asked whether it was)."""
        return provider.request("close", tc.idempotency_key, {"ticket": "closed"})

    @close_ticket.reconciler
    def find_close(tc: ToolContext, key: str) -> Any:
        return provider.keys.get(key)

    def script(request: ModelRequest) -> ModelResponse:
        done = sum(1 for m in request.messages if m.role == "tool")
        steps = [call("lookup_order", {"order_id": ORDER}, call_id="c1"),
                 call("refund", {"order_id": ORDER, "amount_cents": 4999}, call_id="c2"),
                 call("close_ticket", {"order_id": ORDER}, call_id="c3")]
        return steps[done] if done < len(steps) else reply("finished")

    return Agent(name="support", model=ScriptedModel(script), instructions="Refund, close.",
                 tools=[lookup_order, refund, close_ticket])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lookup=st.lists(st.sampled_from(READ_FATES), max_size=3),
       refund=st.lists(st.sampled_from(WRITE_FATES), max_size=3),
       close=st.lists(st.sampled_from(WRITE_FATES), max_size=3))
def test_default_replay_of_any_captured_schedule_is_the_run_again(
        lookup: list[str], refund: list[str], close: list[str]) -> None:
    """Whatever production met, the capture says what each call met, and the captured
    scenario under default ends as the run did, applies the writes the provider applied,
    once each, and never leaves the recording."""
    provider = Scheduled({"lookup": lookup, "refund": refund, "close": close})
    built = scheduled_agent(provider)
    store = MemoryStore()
    runtime = Runtime(store, clock=VirtualClock(start=0.0), workflows=[built], seed=1)
    production = asyncio.run(runtime.start(built, TASK, run_id="prod"))
    data = capture(store, "prod", agent="x.y:z")
    tools = {"lookup": "lookup_order", "refund": "refund", "close": "close_ticket"}
    assert {endpoint: [c["outcome"] for c in data["recorded"]["tools"][name]["calls"]]
            for endpoint, name in tools.items() if name in data["recorded"]["tools"]} == \
        provider.met
    world, outcome = replay(data, "default", scheduled_agent(Scheduled({})))
    assert outcome.status == production.status.value
    # Each answer keeps the provenance the handler gave it.
    assert {(e.source, e.trust) for e in outcome.events
            if isinstance(e, ToolResult) and e.tool == "lookup_order"} <= \
        {("orders:A-1", "retrieved")}
    assert unrecorded(world) == [] and replay_divergence(REPLAYED[-1]) == []
    assert dict(Counter(key for _, key in writes(world).elements())) == dict(provider.applied)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lookup=st.lists(st.sampled_from(READ_FATES), max_size=3),
       refund=st.lists(st.sampled_from(WRITE_FATES), max_size=3),
       close=st.lists(st.sampled_from(WRITE_FATES), max_size=3))
def test_naive_replay_of_a_captured_run_does_what_naive_code_would_have_done(
        lookup: list[str], refund: list[str], close: list[str]) -> None:
    """The incident captured from a completed run, replayed under naive, applies each write
    as often as the naive loop applies it against the provider as the run observed it."""
    fates = {"lookup": lookup, "refund": refund, "close": close}
    provider = Scheduled(fates)
    built = scheduled_agent(provider)
    store = MemoryStore()
    runtime = Runtime(store, clock=VirtualClock(start=0.0), workflows=[built], seed=1)
    production = asyncio.run(runtime.start(built, TASK, run_id="prod"))
    assume(production.status.value == "completed")
    world, _ = replay(capture(store, "prod", agent="x.y:z"), "naive",
                      scheduled_agent(Scheduled({})))
    # The provider as the run observed it: what it did to the calls the run made (a failure
    # planned for a call the run never made cannot be in any recording), then answers.
    naive_provider = Scheduled(provider.met)
    asyncio.run(run_naive(World(seed=0), scheduled_agent(naive_provider), Task(text="go")))
    names = {"refund": "refund", "close": "close_ticket"}
    assert {names[endpoint]: n for endpoint, n in naive_provider.applied.items()} == \
        dict(Counter(operation for operation, _ in writes(world).elements()))
    assert unrecorded(world) == []


@pytest.mark.postgres
def test_capture_reads_a_postgres_store(postgres_dsn: str) -> None:
    """A run journaled in PostgreSQL, crashed in flight and recovered, is captured by URL."""
    from tether.store.postgres import PostgresStore

    provider = Scheduled({"refund": ["timeout_after"]})
    built = scheduled_agent(provider)
    run_id = "pg-incident-1"
    crashed = False

    def probe(point: ProbePoint) -> None:
        nonlocal crashed
        if point.name == "close_ticket" and point.point == "after_call" and not crashed:
            crashed = True
            raise Crash("worker died after close_ticket was applied")

    store = PostgresStore(postgres_dsn)
    try:
        runtime = Runtime(store, clock=VirtualClock(start=0.0), workflows=[built], probe=probe)
        with pytest.raises(Crash):
            asyncio.run(runtime.start(built, TASK, run_id=run_id))
        again = Runtime(store, clock=VirtualClock(start=0.0), workflows=[built])
        assert asyncio.run(again.resume(run_id)).status.value == "completed"
    finally:
        store.close()
    data = capture_run(postgres_dsn, run_id, agent="x.y:z")
    assert [(f["kind"], f["target"]) for f in data["faults"]] == [
        ("timeout_after", "recorded.refund"), ("crash", "recorded.close_ticket")]
    world, _ = replay(data, "naive", scheduled_agent(Scheduled({})))
    assert writes(world)[("refund", "refund:A-1")] >= 2


if __name__ == "__main__":
    main()
