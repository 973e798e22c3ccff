"""What a policy sees, and what it answers.

A :class:`PolicyRequest` is built by the agent loop at two moments: ``stage="list"`` when it
decides which tools the model may see this turn (no arguments yet) and ``stage="call"`` before
it executes a call (then with the arguments and the calls already made). A rule answers with a
:class:`Verdict` or ``None`` (no opinion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from tether.runtime.provenance import Trust

__all__ = [
    "Observation",
    "PolicyAction",
    "PolicyDecision",
    "PolicyRequest",
    "Principal",
    "PriorCall",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the run acts for: an id and the roles they hold."""

    id: str = "anonymous"
    roles: tuple[str, ...] = ()

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class Observation:
    """One piece of content in the model's context, with where it came from. ``role`` is how
    it entered (``system``: the instructions, ``user``: the user's messages, ``tool``: a tool's
    answer; empty when not known), which tells the request apart from data the tools brought."""

    source: str
    trust: Trust
    text: str
    role: str = ""


@dataclass(frozen=True, slots=True)
class PriorCall:
    """A call this run already made (or is making earlier in the same turn) that was allowed
    and did not fail: what a rule needs to tell a second write of one kind from the first."""

    tool: str
    args: dict[str, Any]


class PolicyDecision(StrEnum):
    """What a policy decides about a call: allow it, deny it, or hold it for an approver. (Not
    the journal's ``decision`` event, :class:`tether.events.Decision`, which records any choice
    the harness made.)"""

    ALLOW = "allow"
    DENY = "deny"
    APPROVE = "require_approval"


#: What a rule does to a call it catches (a rule that allows just has no opinion): the
#: ``action`` of the built-in rules, in Python and in YAML.
PolicyAction = Literal["deny", "require_approval"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's answer. ``role`` is who may approve (``require_approval`` only); ``rule``
    names the rule that decided, for the journal."""

    decision: PolicyDecision
    reason: str = ""
    role: str | None = None
    rule: str = ""
    sources: tuple[str, ...] = ()

    @classmethod
    def allow(cls, reason: str = "", *, rule: str = "") -> Verdict:
        return cls(PolicyDecision.ALLOW, reason, rule=rule)

    @classmethod
    def deny(cls, reason: str, *, rule: str = "", sources: Sequence[str] = ()) -> Verdict:
        return cls(PolicyDecision.DENY, reason, rule=rule, sources=tuple(sources))

    @classmethod
    def require_approval(cls, reason: str, *, role: str = "approver", rule: str = "",
                         sources: Sequence[str] = ()) -> Verdict:
        return cls(PolicyDecision.APPROVE, reason, role=role, rule=rule, sources=tuple(sources))

    def as_data(self) -> dict[str, Any]:
        """The journaled form."""
        return {"verdict": self.decision.value, "reason": self.reason, "role": self.role,
                "rule": self.rule, "sources": list(self.sources)}


@dataclass(frozen=True)
class PolicyRequest:
    """Everything a rule may look at."""

    stage: Literal["list", "call"]
    tool: str
    effect: str
    tier: int
    tool_trust: Trust
    principal: Principal = field(default_factory=Principal)
    task_type: str = ""
    environment: str = "prod"
    args: dict[str, Any] | None = None
    observations: tuple[Observation, ...] = ()
    prior_calls: tuple[PriorCall, ...] = ()

    def untrusted(self, below: Trust | str = Trust.USER) -> tuple[Observation, ...]:
        """Observations in the context trusted less than ``below``."""
        floor = Trust(below)
        return tuple(o for o in self.observations if o.trust.rank < floor.rank)
