"""Budgets and loop control: limits a run may not cross, and a detector for going in circles.

:class:`Budgets` is data (every limit optional); :class:`Meter` counts a run's consumption and
says which limit, if any, a run has crossed. The no-progress detector watches for the same tool
call with the same arguments ``repeat_limit`` times, or ``failure_streak_limit`` failed steps in
a row. What a breach does is ``on_breach``: ``stop`` (the run fails with ``BudgetExceeded``) or
``escalate`` (the run is escalated to a human); either way the reason is journaled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from tether.models.base import Usage

__all__ = ["Breach", "Budgets", "Meter"]


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits for one run. ``None`` means unlimited.

    >>> Budgets(max_steps=20, max_cost_usd=0.50).max_steps
    20
    """

    max_steps: int | None = 50
    max_model_calls: int | None = None
    max_tool_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_duration_s: float | None = None
    max_retries: int | None = None
    repeat_limit: int | None = 3
    failure_streak_limit: int | None = 5
    on_breach: Literal["stop", "escalate"] = "stop"


@dataclass(frozen=True, slots=True)
class Breach:
    """Which limit was crossed, and the facts."""

    limit: str
    reason: str
    no_progress: bool = False


@dataclass
class Meter:
    """A run's consumption so far, rebuilt identically on replay from the same calls."""

    budgets: Budgets
    started_at: float = 0.0
    steps: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    #: As :mod:`tether.retries` counts them in the journal (the loop keeps it in step).
    retries: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    failure_streak: int = 0
    _repeats: dict[str, int] = field(default_factory=dict)
    _worst_repeat: tuple[str, int] = ("", 0)

    @property
    def deadline(self) -> float | None:
        """When the duration budget ends, on the run's clock (``None``: no limit)."""
        if self.budgets.max_duration_s is None:
            return None
        return self.started_at + self.budgets.max_duration_s

    def model_call(self, usage: Usage, cost_usd: float) -> None:
        self.model_calls += 1
        self.usage = self.usage + usage
        self.cost_usd += cost_usd

    def tool_call(self, name: str, arguments: str, ok: bool) -> None:
        """Count one tool call the *model* asked for, with its final outcome. The harness's
        own re-executions of it (retries, re-issues, a call made again after a credential
        refresh) are not calls of the model's and must not be counted: the no-progress
        detector would read them as the model repeating itself."""
        self.tool_calls += 1
        signature = f"{name}:{_canonical(arguments)}"
        count = self._repeats.get(signature, 0) + 1
        self._repeats[signature] = count
        if count > self._worst_repeat[1]:
            self._worst_repeat = (signature, count)
        self.failure_streak = 0 if ok else self.failure_streak + 1

    def breach(self, now: float) -> Breach | None:
        """The first limit crossed, checked in a fixed order; ``None`` when all hold."""
        b = self.budgets
        checks: list[tuple[str, float | None, float, str]] = [
            ("max_steps", b.max_steps, self.steps, "steps"),
            ("max_model_calls", b.max_model_calls, self.model_calls, "model calls"),
            ("max_tool_calls", b.max_tool_calls, self.tool_calls, "tool calls"),
            ("max_tokens", b.max_tokens, self.usage.total_tokens, "tokens"),
            ("max_cost_usd", b.max_cost_usd, self.cost_usd, "USD"),
            ("max_duration_s", b.max_duration_s, now - self.started_at, "seconds"),
            ("max_retries", b.max_retries, self.retries, "retries"),
        ]
        for limit, bound, used, unit in checks:
            if bound is None:
                continue
            # Time is a deadline: at it, nothing more may start. Counts may reach their limit.
            if used >= bound if limit == "max_duration_s" else used > bound:
                return Breach(limit, f"{limit}: used {_fmt(used)} {unit}, limit {_fmt(bound)}")
        signature, repeats = self._worst_repeat
        if b.repeat_limit is not None and repeats >= b.repeat_limit:
            return Breach("repeat_limit", f"no progress: the call {signature[:200]} was made "
                          f"{repeats} times with the same arguments", no_progress=True)
        if b.failure_streak_limit is not None and self.failure_streak >= b.failure_streak_limit:
            return Breach("failure_streak_limit", f"no progress: {self.failure_streak} failed "
                          "tool calls in a row", no_progress=True)
        return None


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return arguments


def _fmt(value: float) -> str:
    return f"{value:,.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
