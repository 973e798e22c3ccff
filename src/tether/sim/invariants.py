"""Checking an episode's invariants against the ground truth: the effect ledger and the
services' final state (never against what the agent or the journal believed).

Effects are named ``service.operation`` and carry a business ``key`` (``refund:ch_0001``).

* ``exactly_once {effect, keys}`` — no key of that effect occurs twice; each listed key occurs
  exactly once (so a missing refund is a violation too).
* ``at_most {effect, n}`` — at most ``n`` such effects in all.
* ``never_without_approval {effect}`` — each such effect is preceded by a granted approval of
  the tool that caused it (counted: the k-th effect needs k approvals before it).
* ``never {effect, match}`` — no such effect whose data contains ``match``.
* ``final_state {service, path, equals}`` — the value at a dotted path of the service's final
  snapshot (``tickets.T-1.status``) equals ``equals``.
* ``python {function}`` — ``module:function`` called with the :class:`EpisodeFacts`, returning
  ``None`` (holds) or a message (violated).
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.errors import UsageError
from tether.sim.scenario import Invariant
from tether.sim.world import Effect, Ledger

__all__ = ["EpisodeFacts", "Verdict", "check_invariants"]


@dataclass(frozen=True)
class EpisodeFacts:
    """What invariants may look at."""

    ledger: Ledger
    snapshots: dict[str, Any]
    approvals: Sequence[tuple[str, float]] = ()   # (tool, time granted)
    effect_tools: dict[str, str] = field(default_factory=dict)  # effect name → tool name


@dataclass(frozen=True, slots=True)
class Verdict:
    """One invariant's outcome."""

    invariant: str
    holds: bool
    detail: str = ""

    def as_data(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "holds": self.holds, "detail": self.detail}


def _effects(facts: EpisodeFacts, name: str) -> list[Effect]:
    service, _, operation = name.partition(".")
    return facts.ledger.of(service, operation or None)


def _exactly_once(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    counts = Counter(e.key for e in _effects(facts, s["effect"]))
    problems = [f"{n} × {key}" for key, n in sorted(counts.items()) if n > 1]
    problems += [f"0 × {key}" for key in s.get("keys") or () if counts.get(key, 0) == 0]
    return "; ".join(problems) or None


def _at_most(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    found = len(_effects(facts, s["effect"]))
    return f"{found} effects, at most {s['n']} allowed" if found > s["n"] else None


def _never_without_approval(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    tool = facts.effect_tools.get(s["effect"], s["effect"])
    granted = sorted(at for name, at in facts.approvals if name == tool)
    for index, effect in enumerate(_effects(facts, s["effect"]), start=1):
        before = sum(1 for at in granted if at <= effect.at)
        if before < index:
            return f"{effect.key} at t={effect.at:g} without an approval"
    return None


def _never(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    match = s.get("match") or {}
    for effect in _effects(facts, s["effect"]):
        if all(effect.data.get(k) == v for k, v in match.items()):
            return f"{effect.key} happened ({dict(effect.data)})"
    return None


def _final_state(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    value: Any = facts.snapshots.get(s["service"])
    for part in str(s["path"]).split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = None
    return None if value == s.get("equals") else \
        f"{s['service']}.{s['path']} is {value!r}, expected {s.get('equals')!r}"


def _python(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    module_name, _, attr = str(s["function"]).partition(":")
    try:
        fn: Callable[[EpisodeFacts], str | None] = getattr(importlib.import_module(module_name),
                                                           attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"invariant function {s['function']!r} cannot be loaded: {exc}") from exc
    return fn(facts)


_CHECKS: dict[str, Callable[[EpisodeFacts, dict[str, Any]], str | None]] = {
    "exactly_once": _exactly_once, "at_most": _at_most,
    "never_without_approval": _never_without_approval, "never": _never,
    "final_state": _final_state, "python": _python,
}


def check_invariants(invariants: Sequence[Invariant], facts: EpisodeFacts) -> list[Verdict]:
    """Each invariant's verdict, in the scenario's order."""
    verdicts = []
    for inv in invariants:
        label = f"{inv.kind}({', '.join(f'{k}={v}' for k, v in inv.settings.items() if v)})"
        problem = _CHECKS[inv.kind](facts, inv.settings)
        verdicts.append(Verdict(label, problem is None, problem or ""))
    return verdicts
