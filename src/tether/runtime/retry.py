"""Retry policy as data: for each failure type, what to do and how often.

Agent retries are not service retries: the recovery often changes the input (compress the
context, remind the model of the format, stop offering a broken tool) rather than repeating the
same call. A :class:`RetryPolicy` maps every :class:`~tether.runtime.failures.FailureType` to
a :class:`Rule`; the defaults encode the recoveries below and every field can be overridden.

========================  ==============  ============================================  =========
failure                   action          bound                                         then
========================  ==============  ============================================  =========
rate_limited              backoff         5 attempts, honoring ``retry-after``          fail
model_unavailable         backoff         4 attempts                                    fail
context_overflow          compress        2 compressions                                fail
malformed_output          reformat        3 attempts with a format reminder             fail
model_rejected            fail
invalid_tool_call         observe         the model is told what was wrong; 3 in a row  fail
transient_tool_error      retry_tool      3 attempts of the tool (not the model)        disable_tool
permanent_tool_error      observe         3 failures of one tool                        disable_tool
tool_result_invalid       observe         2 failures of one tool                        disable_tool
ambiguous_write           resolve         the write protocol (re-issue / reconcile / escalate)
auth_expired              refresh_auth    2 refreshes                                   escalate
policy_denied             observe
========================  ==============  ============================================  =========

Backoff is exponential with jitter drawn from a generator seeded by the run, the position and
the attempt, and waited on the run's clock, so a replay (and a simulation) waits the same.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from tether.runtime.failures import FailureType

__all__ = ["Action", "RetryPolicy", "Rule", "jitter_rng"]


class Action(StrEnum):
    """What the harness does about a failure."""

    BACKOFF = "backoff"
    COMPRESS = "compress"
    REFORMAT = "reformat"
    RETRY_TOOL = "retry_tool"
    DISABLE_TOOL = "disable_tool"
    REFRESH_AUTH = "refresh_auth"
    RESOLVE = "resolve"
    OBSERVE = "observe"
    ESCALATE = "escalate"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Rule:
    """How to handle one failure type.

    ``max_attempts`` counts attempts of the same call, the first included (for ``observe``:
    failures of the same tool, or in a row for the model); past it, ``then`` applies.
    """

    action: Action
    max_attempts: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    then: Action = Action.FAIL

    def delay_s(self, attempt: int, rng: random.Random,
                retry_after_s: float | None = None) -> float:
        """The wait before attempt ``attempt + 1``: exponential, jittered, capped; never
        shorter than the dependency's own ``retry-after`` hint."""
        try:
            grown = self.base_delay_s * self.multiplier ** max(0, attempt - 1)
        except OverflowError:  # a long retry budget (2.0 ** 1100): far past any cap
            grown = math.inf if self.base_delay_s > 0 else 0.0
        raw = min(self.max_delay_s, grown)
        delay = raw * (1.0 - self.jitter * rng.random())
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return round(delay, 6)


def _defaults() -> dict[FailureType, Rule]:
    f, a = FailureType, Action
    return {
        f.RATE_LIMITED: Rule(a.BACKOFF, max_attempts=5, base_delay_s=1.0, max_delay_s=60.0),
        f.MODEL_UNAVAILABLE: Rule(a.BACKOFF, max_attempts=4, base_delay_s=0.5,
                                  max_delay_s=30.0),
        f.CONTEXT_OVERFLOW: Rule(a.COMPRESS, max_attempts=3, base_delay_s=0.0),
        f.MALFORMED_OUTPUT: Rule(a.REFORMAT, max_attempts=3, base_delay_s=0.0),
        f.MODEL_REJECTED: Rule(a.FAIL, max_attempts=1),
        f.INVALID_TOOL_CALL: Rule(a.OBSERVE, max_attempts=3, base_delay_s=0.0),
        f.TRANSIENT_TOOL_ERROR: Rule(a.RETRY_TOOL, max_attempts=3, base_delay_s=0.5,
                                     max_delay_s=10.0, then=a.DISABLE_TOOL),
        f.PERMANENT_TOOL_ERROR: Rule(a.OBSERVE, max_attempts=3, base_delay_s=0.0,
                                     then=a.DISABLE_TOOL),
        f.TOOL_RESULT_INVALID: Rule(a.OBSERVE, max_attempts=2, base_delay_s=0.0,
                                    then=a.DISABLE_TOOL),
        f.AMBIGUOUS_WRITE: Rule(a.RESOLVE, max_attempts=3, base_delay_s=0.5,
                                then=a.ESCALATE),
        f.AUTH_EXPIRED: Rule(a.REFRESH_AUTH, max_attempts=3, base_delay_s=0.0,
                             then=a.ESCALATE),
        f.POLICY_DENIED: Rule(a.OBSERVE, max_attempts=1_000_000, base_delay_s=0.0),
        f.BUDGET_EXCEEDED: Rule(a.FAIL, max_attempts=1),
        f.NO_PROGRESS: Rule(a.FAIL, max_attempts=1),
        # A write whose worker stopped mid-call is resolved by its effect class; after this
        # many stops at one call the run escalates (the call may be what kills the worker).
        f.CRASH: Rule(a.RESOLVE, max_attempts=10, then=a.ESCALATE),
    }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Rules per failure type plus a per-run budget of retries (waits and re-asks).

    >>> policy = RetryPolicy().with_rule(FailureType.RATE_LIMITED, Rule(Action.FAIL))
    >>> policy.rule(FailureType.RATE_LIMITED).action
    <Action.FAIL: 'fail'>
    """

    rules: Mapping[FailureType, Rule] = field(default_factory=lambda: MappingProxyType(_defaults()))
    retry_budget: int = 20

    def rule(self, failure: FailureType) -> Rule:
        found = self.rules.get(failure)
        return found if found is not None else _defaults()[failure]

    def with_rule(self, failure: FailureType | str, rule: Rule) -> RetryPolicy:
        """A copy with ``failure`` handled by ``rule``."""
        rules = dict(self.rules)
        rules[FailureType(failure)] = rule
        return replace(self, rules=MappingProxyType(rules))

    @classmethod
    def never(cls) -> RetryPolicy:
        """No retries at all: every failure fails the run (or is shown to the model)."""
        # Taking up a run after its worker stopped is recovery, not a retry: the crash rule
        # keeps its bound.
        rules = {kind: rule if kind is FailureType.CRASH else replace(rule, max_attempts=1)
                 for kind, rule in _defaults().items()}
        return cls(rules=MappingProxyType(rules), retry_budget=0)


def jitter_rng(seed: int, position: int, attempt: int) -> random.Random:
    """The generator for one retry's jitter: a function of the run's seed, the call's position
    and the attempt only, so replays and other workers draw the same delay."""
    return random.Random(f"{seed}:{position}:{attempt}")
