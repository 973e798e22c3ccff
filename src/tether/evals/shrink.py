"""Shrinking a failing episode to its essence, and writing a replayable reproduction.

Given a failing episode, :func:`shrink` removes faults one at a time (and turns the model's
knobs off) for as long as the episode still fails the same way — the same invariant broken —
re-running it each time with the same seed. What remains is a minimal fault plan: removing any
one more fault makes the failure go away. The result is written as a scenario file with a
one-line command that replays it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tether.errors import UsageError
from tether.evals.grading import grade
from tether.evals.results import TraceItem
from tether.sim.agent_ref import agent_spec_of, load_agent_factory
from tether.sim.episode import AgentArg, EpisodeResult, scenario_dir
from tether.sim.episode import run_episode as _run_episode
from tether.sim.scenario import Scenario
from tether.sim.users import recorded_answers, recorded_questions, replay_spec

__all__ = ["Shrunk", "scenario_to_dict", "shrink", "trace_of", "write_reproduction"]


@dataclass(frozen=True)
class Shrunk:
    scenario: Scenario
    seed: int
    harness: str
    removed: tuple[str, ...]
    runs: int
    #: The agent that failed, as a spec naming it from anywhere (written into the repro).
    agent: str = ""
    #: Files defining the harness variant, if ``harness`` is one.
    harness_files: tuple[str, ...] = ()

    @property
    def faults(self) -> list[str]:
        return [f"{f.kind}@{f.target}" for f in self.scenario.fault_plan().faults]


def _signature(scenario: Scenario, result: EpisodeResult) -> frozenset[str]:
    """What kind of failure it is: the invariants broken (or the verdict)."""
    broken = frozenset(v.invariant for v in result.verdicts if not v.holds)
    return broken or frozenset({grade(scenario, result).verdict})


def shrink(scenario: Scenario, seed: int, harness: str, *, budget: int = 40,
           agent: AgentArg = None, harness_files: tuple[str, ...] = ()) -> Shrunk:
    """The smallest variant of ``scenario`` (fewer faults, knobs off) that still fails, for
    ``agent`` (default: the scenario's)."""

    def run_episode(candidate: Scenario, seed: int, harness: str) -> EpisodeResult:
        return _run_episode(candidate, seed, harness, agent=agent,
                            harness_files=harness_files)

    first = run_episode(scenario, seed, harness)
    target = _signature(scenario, first)
    current, removed, runs = scenario, [], 1

    def still_fails(candidate: Scenario) -> bool:
        nonlocal runs
        runs += 1
        result = run_episode(candidate, seed, harness)
        verdict = grade(candidate, result).verdict
        return verdict != "pass" and _signature(candidate, result) & target != frozenset()

    changed = True
    while changed and runs < budget:
        changed = False
        for index in range(len(current.faults)):
            candidate = current.model_copy(update={
                "faults": current.faults[:index] + current.faults[index + 1:]})
            if still_fails(candidate):
                removed.append(f"{current.faults[index].kind}@{current.faults[index].target}")
                current, changed = candidate, True
                break
        for knob in ("sloppy", "gullible"):
            if getattr(current.knobs, knob) and runs < budget:
                candidate = current.model_copy(update={
                    "knobs": current.knobs.model_copy(update={knob: 0.0})})
                if still_fails(candidate):
                    removed.append(f"knob {knob}")
                    current, changed = candidate, True
    if current.user.get("played_by") == "model":
        # A model-played user is only as repeatable as its model: the repro replays what the
        # user said in the failing episode instead, so it reproduces byte for byte.
        final = run_episode(current, seed, harness)
        runs += 1
        current = current.model_copy(update={"user": replay_spec(
            recorded_answers(final.ledger), recorded_questions(final.ledger))})
    return Shrunk(current, seed, harness, tuple(removed), runs, first.agent, harness_files)


def scenario_to_dict(scenario: Scenario, *, agent: str = "") -> dict[str, Any]:
    """A scenario as the YAML it could have been read from, anywhere: ``agent`` (default: the
    scenario's) and a policy file are named so that they resolve from any folder."""
    data = scenario.model_dump(mode="json", exclude={"source", "invariants", "success"},
                               exclude_defaults=True)
    base_dir = scenario_dir(scenario)
    data["name"], data["task"] = scenario.name, scenario.task
    data["agent"] = agent or agent_spec_of(scenario.agent, base_dir)
    if isinstance(scenario.policy, str):
        policy = Path(scenario.policy).expanduser()
        data["policy"] = str(policy if policy.is_absolute() else
                             ((base_dir or Path.cwd()) / policy).resolve())
    data["faults"] = [f.model_dump(mode="json", exclude_defaults=True) | {"kind": f.kind,
                                                                          "target": f.target}
                      for f in scenario.faults]
    # A check the base and its suite both carry is written once.
    data["invariants"] = list({json.dumps(item, sort_keys=True): item for item in (
        {inv.kind: {k: v for k, v in inv.settings.items() if v is not None}}
        for inv in scenario.invariants)}.values())
    if scenario.success:
        data["success"] = [{c.kind: {k: v for k, v in c.settings.items() if v is not None}}
                           for c in scenario.success]
    return data


def write_reproduction(shrunk: Shrunk, folder: Path) -> tuple[Path, str]:
    """Write the shrunk scenario; return its path and the command that replays it. The agent
    must be nameable from a file (not a lambda or a closure), or nothing is written."""
    if shrunk.agent:
        try:
            load_agent_factory(shrunk.agent, variables=shrunk.scenario.variables)
        except UsageError as exc:
            raise UsageError(f"agent {shrunk.agent}: a repro file must name it, so define it at "
                             "the top level of a module (package.module:function) or a file "
                             f"(file.py:function) ({exc})") from exc
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", f"{shrunk.scenario.name}-{shrunk.harness}-{shrunk.seed}"
                  .lower()).strip("-")
    path = folder / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(scenario_to_dict(shrunk.scenario, agent=shrunk.agent),
                                   sort_keys=False, allow_unicode=True), encoding="utf-8")
    files = "".join(f" --harnesses {shlex.quote(f)}" for f in shrunk.harness_files)
    return path, f"tether sim run {shlex.quote(str(path))} --seed {shrunk.seed} " \
        f"--harness {shlex.quote(shrunk.harness)}{files}"


def trace_of(result: EpisodeResult) -> list[TraceItem]:
    """The episode as a timeline: model and tool calls, decisions, effects."""
    items: list[TraceItem] = []
    outcome = result.outcome
    if outcome is not None and outcome.events:
        start = outcome.events[0].at
        for e in outcome.events:
            at = round(e.at - start, 6)
            if e.kind == "model_called":
                calls = [c["name"] for c in e.response.get("tool_calls", [])]
                items.append(TraceItem(at_s=at, kind="model", name=e.model,
                                       detail=", ".join(calls) or "answer"))
            elif e.kind in ("tool_result", "tool_error", "tool_ambiguous", "tool_retry"):
                items.append(TraceItem(at_s=at, kind="tool", name=e.tool, detail=e.kind,
                                       failed=e.kind != "tool_result"))
            elif e.kind == "decision" and e.name in ("recover", "budget", "policy"):
                verdict = e.data.get("action") or e.data.get("verdict") or ""
                if verdict not in ("allow",):
                    items.append(TraceItem(at_s=at, kind="decision", name=e.name,
                                           detail=str(verdict)))
    elif outcome is not None:
        for index, entry in enumerate(outcome.transcript):
            name = str(entry.get("retry") or entry.get("gave_up")
                       or ("crash" if "crash" in entry else "step"))
            items.append(TraceItem(at_s=float(index), kind="naive", name=name,
                                   detail=str(entry.get("error", ""))[:120], failed=True))
    start = result.ledger[0]["at"] if result.ledger else 0.0
    for effect in result.ledger:
        items.append(TraceItem(at_s=round(effect["at"] - start, 6), kind="effect",
                               name=f"{effect['service']}.{effect['operation']}",
                               detail=effect["key"]))
    return items
