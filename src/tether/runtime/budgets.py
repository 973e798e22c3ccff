"""Budgets and loop control: limits a run may not cross, and a detector for going in circles.

:class:`Budgets` is data (every limit optional); :class:`Meter` counts a run's consumption and
says which limit, if any, a run has crossed. The no-progress detector watches for the same tool
call with the same arguments ``repeat_limit`` times, or ``failure_streak_limit`` failed steps in
a row. What a breach does is ``on_breach``: ``stop`` (the run fails with ``BudgetExceeded``) or
``escalate`` (the run is escalated to a human); either way the reason is journaled.

When a limit is checked: a budget of N allows N, never N + 1.

- **Call counts** (``max_model_calls``, ``max_tool_calls``) are known before a call, so they
  are checked before it: a call that would make the count pass its limit is not made. The loop
  asks before every model call (retries of one too) and before a response's tool calls run.
- **Spent amounts** (``max_tokens``, ``max_cost_usd``) are known only after a call answers, so
  no call can be refused for what it *would* spend: once the amount spent reaches the limit, no
  further call starts. A run may pass such a limit by at most its last call's spending (a
  ``max_cost_usd`` of 0 allows free calls only: it is reached once anything is spent).
- **Time** (``max_duration_s``) is a deadline: at it, nothing more starts.
- **Steps** are counted as they start, and **retries** as the journal counts them (the retry
  cap itself is enforced before each retry by the loop): both stop once their count passes.
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

    def breach(self, now: float, *, model_calls: int = 0) -> Breach | None:
        """The first limit the run has reached, checked in a fixed order, before it makes
        ``model_calls`` more model calls (see the module docstring for the rule of each kind);
        ``None`` when all hold. A response's tool calls are asked about with
        :meth:`before_tool_calls`."""
        b = self.budgets
        # (limit, bound, used, calls about to start, unit, how the bound is read)
        checks: list[tuple[str, float | None, float, int, str, str]] = [
            ("max_steps", b.max_steps, self.steps, 0, "steps", "passed"),
            ("max_model_calls", b.max_model_calls, self.model_calls, model_calls,
             "model calls", "count"),
            ("max_tool_calls", b.max_tool_calls, self.tool_calls, 0, "tool calls", "count"),
            ("max_tokens", b.max_tokens, self.usage.total_tokens, 0, "tokens", "spent"),
            ("max_cost_usd", b.max_cost_usd, self.cost_usd, 0, "USD", "spent"),
            ("max_duration_s", b.max_duration_s, now - self.started_at, 0, "seconds", "reached"),
            ("max_retries", b.max_retries, self.retries, 0, "retries", "passed"),
        ]
        for limit, bound, used, more, unit, rule in checks:
            if bound is None:
                continue
            # Counts: the calls about to start may not take them past the bound. Spent amounts
            # and time: reached, nothing more starts (a $0 budget allows free calls only: it
            # is reached once anything was spent). Steps and retries are counted as they
            # happen, so the one that passes is refused.
            if rule == "count":
                crossed = used + more > bound
            elif rule == "spent":
                crossed = used >= bound and used > 0
            else:
                crossed = used >= bound if rule == "reached" else used > bound
            if crossed:
                return _breach(limit, used, bound, unit, more)
        signature, repeats = self._worst_repeat
        if b.repeat_limit is not None and repeats >= b.repeat_limit:
            return Breach("repeat_limit", f"no progress: the call {signature[:200]} was made "
                          f"{repeats} times with the same arguments", no_progress=True)
        if b.failure_streak_limit is not None and self.failure_streak >= b.failure_streak_limit:
            return Breach("failure_streak_limit", f"no progress: {self.failure_streak} failed "
                          "tool calls in a row", no_progress=True)
        return None

    def before_tool_calls(self, more: int) -> Breach | None:
        """The tool-call budget's breach if ``more`` tool calls started now, or ``None``.

        Only the count is asked: what the model spent (tokens, cost) bounds model calls, and a
        response's tool calls are checked against the count alone."""
        bound = self.budgets.max_tool_calls
        if bound is None or self.tool_calls + more <= bound:
            return None
        return _breach("max_tool_calls", self.tool_calls, bound, "tool calls", more)


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return arguments


def _breach(limit: str, used: float, bound: float, unit: str, more: int) -> Breach:
    after = f"; {more:,} more would pass it" if more > 1 else "; another is not made" \
        if more else ""
    return Breach(limit, f"{limit}: used {_fmt(used)} {unit}, limit {_fmt(bound)}{after}")


def _fmt(value: float) -> str:
    return f"{value:,.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
