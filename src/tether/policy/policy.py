"""A policy: ordered rules, combined strictly.

Every rule is asked; the strictest answer wins (deny over require-approval over allow), and
among equals the first rule in order. With no opinion from any rule the ``default`` applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether.policy.request import PolicyDecision, PolicyRequest, Verdict
from tether.policy.rules import PolicyRule
from tether.policy.spec import policy_settings, read_policy_settings

__all__ = ["Policy", "load_policy", "policy_from_dict"]

_STRICTNESS = {PolicyDecision.ALLOW: 0, PolicyDecision.APPROVE: 1, PolicyDecision.DENY: 2}


@dataclass(frozen=True)
class Policy:
    """Rules plus what happens around approvals.

    ``approval_timeout_s``: how long (run clock) a held call waits for a decision, ``None``
    for ever; ``on_timeout``: what an unanswered approval becomes (``deny``: the model is told;
    ``escalate``: the run is escalated to a human).
    """

    rules: tuple[PolicyRule, ...] = ()
    default: Literal["allow", "deny"] = "allow"
    approval_timeout_s: float | None = None
    on_timeout: Literal["deny", "escalate"] = "deny"
    name: str = "policy"

    @classmethod
    def of(cls, *rules: PolicyRule, **settings: Any) -> Policy:
        return cls(rules=tuple(rules), **settings)

    def evaluate(self, request: PolicyRequest) -> Verdict:
        """The verdict for ``request``."""
        best: Verdict | None = None
        for rule in self.rules:
            if rule.calls_only and request.stage == "list":
                continue
            verdict = rule(request)
            if verdict is None:
                continue
            if best is None or _STRICTNESS[verdict.decision] > _STRICTNESS[best.decision]:
                best = verdict
        if best is not None:
            return best
        if self.default == "deny":
            return Verdict.deny(f"no rule allows {request.tool!r} and the policy denies by "
                                "default", rule="default")
        return Verdict.allow(rule="default")

    @property
    def acts_when_listing(self) -> bool:
        """Can a verdict at the listing stage be anything but the default allow?"""
        return self.default == "deny" or any(not r.calls_only for r in self.rules)

    def with_rules(self, rules: Iterable[PolicyRule]) -> Policy:
        return Policy(rules=(*self.rules, *rules), default=self.default,
                      approval_timeout_s=self.approval_timeout_s, on_timeout=self.on_timeout,
                      name=self.name)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Policy:
        """Read a policy file; see :mod:`tether.policy.spec` for the format."""
        return cls(**read_policy_settings(path))


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file (errors name the file, the key path, what was expected
    and what was found); the same as :meth:`Policy.from_yaml`."""
    return Policy.from_yaml(path)


def policy_from_dict(data: Any, *, where: str = "<policy>") -> Policy:
    """Build a policy from parsed YAML/JSON data (see :mod:`tether.policy.spec`)."""
    return Policy(**policy_settings(data, where=where))
