"""Reference agents: scripted models that behave as an LLM would, with their tools.

Each reference agent is a model (a function of the conversation, with ``sloppy`` and
``gullible`` knobs drawn from seeded streams), the tools it uses (bound to the world's services
through the fault layer), its instructions, the policy the ``default`` harness applies, the
approver persona that decides held calls, which tool causes which ledger effect, and what
the task asks (``success``: checks over the ledger, used when the scenario states none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.errors import UsageError
from tether.models.base import Model
from tether.policy.approvals import PendingApproval
from tether.policy.policy import Policy
from tether.runtime.tools import Tool
from tether.sim.faults import FaultLayer
from tether.sim.scenario import Invariant, Scenario
from tether.sim.world import World

__all__ = ["ReferenceAgent", "build_reference_agent"]


@dataclass
class ReferenceAgent:
    model: Model
    tools: list[Tool[Any, Any]]
    instructions: str
    policy: Policy | None
    approver: Callable[[PendingApproval], bool]
    effect_tools: dict[str, str] = field(default_factory=dict)
    success: list[Invariant] = field(default_factory=list)


def build_reference_agent(scenario: Scenario, world: World, layer: FaultLayer, *,
                          keyed: bool) -> ReferenceAgent:
    """The scenario's agent in ``world``; ``keyed`` passes idempotency keys to services."""
    if scenario.agent == "refund":
        from tether.sim.agents.refund import build

        return build(scenario, world, layer, keyed=keyed)
    if scenario.agent == "calendar":
        from tether.sim.agents.calendar import build as build_calendar

        return build_calendar(scenario, world, layer, keyed=keyed)
    raise UsageError(f"no reference agent {scenario.agent!r}")  # pragma: no cover
