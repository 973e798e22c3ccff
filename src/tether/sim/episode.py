"""One episode: a scenario, a seed and a harness, run to the end and judged.

``run_episode`` builds the world from the scenario and the seed, wraps every service and the
model in the fault layer, runs the reference agent under the chosen harness, and checks the
scenario's invariants — and what its task asked (``success``, else the agent's own reading of
the task) — against the ledger and the services' final state. The result carries
digests of the journal and the ledger, so two runs of one seed can be compared byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tether.agent.agent import Task
from tether.events import encode
from tether.runtime.budgets import Budgets
from tether.sim.agents import build_reference_agent
from tether.sim.faults import FaultLayer, Firing
from tether.sim.harness import HARNESSES, HarnessOutcome, run_default, run_naive
from tether.sim.invariants import EpisodeFacts, Verdict, check_invariants
from tether.sim.models import FaultyModel
from tether.sim.scenario import Scenario
from tether.sim.world import World

__all__ = ["EpisodeResult", "run_episode", "run_episode_async"]


@dataclass
class EpisodeResult:
    """What happened, judged."""

    scenario: str
    seed: int
    harness: str
    status: str
    answer: str
    reason: str
    verdicts: list[Verdict]
    firings: list[Firing]
    crashes: int
    journal_digest: str
    ledger_digest: str
    virtual_duration_s: float
    model_calls: int
    tool_calls: int
    ledger: list[dict[str, Any]] = field(default_factory=list)
    #: The task's checks (the scenario's ``success``, else the agent's): what was asked.
    task_checks: list[Verdict] = field(default_factory=list)
    outcome: HarnessOutcome | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Every invariant holds."""
        return all(v.holds for v in self.verdicts)

    def as_data(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "seed": self.seed, "harness": self.harness,
            "status": self.status, "answer": self.answer, "reason": self.reason,
            "ok": self.ok, "verdicts": [v.as_data() for v in self.verdicts],
            "faults_fired": [{"fault": f.fault, "kind": f.kind, "target": f.target,
                              "call": f.call, "at": f.at} for f in self.firings],
            "crashes": self.crashes, "journal_digest": self.journal_digest,
            "ledger_digest": self.ledger_digest,
            "virtual_duration_s": self.virtual_duration_s, "model_calls": self.model_calls,
            "tool_calls": self.tool_calls, "ledger": self.ledger,
            "task_checks": [v.as_data() for v in self.task_checks],
        }


def run_episode(scenario: Scenario, seed: int, harness: str = "default") -> EpisodeResult:
    """Run one episode to the end (its own event loop)."""
    return asyncio.run(run_episode_async(scenario, seed, harness))


async def run_episode_async(scenario: Scenario, seed: int,
                            harness: str = "default") -> EpisodeResult:
    """:func:`run_episode` inside a running event loop."""
    if harness not in HARNESSES:
        raise ValueError(f"harness must be one of {', '.join(HARNESSES)}, not {harness!r}")
    world = World(seed=seed)
    layer = FaultLayer(world, scenario.fault_plan())
    reference = build_reference_agent(scenario, world, layer, keyed=harness == "default")
    model = FaultyModel(reference.model, layer)
    task = Task(text=scenario.task, principal=scenario.principal.id,
                roles=tuple(scenario.principal.roles), environment="sim")
    started = world.now()
    if harness == "default":
        outcome = await run_default(
            world, model, reference.tools, task, instructions=reference.instructions,
            budgets=Budgets(**scenario.budgets), policy=reference.policy,
            approver=reference.approver, run_id=f"{scenario.name}-{seed}")
        journal = "\n".join(encode(e) for e in outcome.events)
    else:
        outcome = await run_naive(world, model, reference.tools, task,
                                  instructions=reference.instructions,
                                  max_steps=int(scenario.budgets.get("max_steps") or 20))
        journal = json.dumps({"transcript": outcome.transcript, "answer": outcome.answer},
                             sort_keys=True, default=str)
    snapshots = {name: service.snapshot() for name, service in world.services.items()}
    duration_s = world.now() - started
    facts = EpisodeFacts(ledger=world.ledger, snapshots=snapshots, approvals=outcome.approvals,
                         effect_tools=reference.effect_tools, duration_s=duration_s)
    return EpisodeResult(
        scenario=scenario.name, seed=seed, harness=harness, status=outcome.status,
        answer=outcome.answer, reason=outcome.reason,
        verdicts=check_invariants(scenario.invariants, facts), firings=list(layer.firings),
        crashes=outcome.crashes,
        journal_digest=hashlib.sha256(journal.encode()).hexdigest(),
        ledger_digest=world.ledger.digest(), virtual_duration_s=duration_s,
        model_calls=outcome.model_calls, tool_calls=outcome.tool_calls,
        ledger=[e.as_data() for e in world.ledger],
        task_checks=check_invariants(scenario.success or reference.success, facts),
        outcome=outcome)
