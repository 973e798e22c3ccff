"""Checking an episode's invariants against the ground truth: the effect ledger and the
services' final state (never against what the agent or the journal believed).

Effects are named ``service.operation`` and carry a business ``key`` (``refund:ch_0001``).

* ``exactly_once {effect, keys, match}`` — no key of that effect occurs twice; each listed key
  occurs exactly once (so a missing refund is a violation too). With ``match``, only the effects
  whose data contains ``match`` count, and without ``keys`` exactly one of them must exist
  (``exactly_once {effect: email.send, match: {to: ada@example.com}}``: one email to Ada).
* ``at_most {effect, n}`` — at most ``n`` such effects in all.
* ``at_most_each {effect, n, keys}`` — no business key of that effect occurs more often than
  allowed: a key listed in ``keys`` at most its listed count, any other key at most ``n``
  (default 1). A missing effect is no violation. The suites state it from the agent's
  fault-free run at the same seed, so an agent that legitimately repeats a key (two emails with
  one subject, two partial refunds of one charge) keeps its own count, and a duplicate beyond it
  is caught: ``at_most_each {effect: email.send, n: 1, keys: {"email:ada@example.com:Your
  order": 2}}``.
* ``never_without_approval {effect}`` — each such effect is preceded by a granted approval of
  the tool whose call caused it (counted: the k-th effect a tool caused needs k approvals of
  that tool before it).
* ``never {effect, match}`` — no such effect whose data contains ``match``.
* ``every {effect, match}`` — every such effect's data contains ``match`` (holds when there is
  none): a refund of another amount or charge is a wrong effect, not a pass.
* ``ends_within {seconds}`` — the episode ended within ``seconds`` of virtual time.
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
from tether.sim.scenario import Invariant, check_effect_settings
from tether.sim.world import Ledger, WorldEffect

__all__ = ["EpisodeFacts", "InvariantVerdict", "check_invariants"]


@dataclass(frozen=True)
class EpisodeFacts:
    """What invariants may look at."""

    ledger: Ledger
    snapshots: dict[str, Any]
    approvals: Sequence[tuple[str, float]] = ()   # (tool, time granted)
    #: Ledger sequence number → the agent's tool whose call caused that effect.
    effect_causes: dict[int, str] = field(default_factory=dict)
    duration_s: float = 0.0                        # virtual time from start to end


@dataclass(frozen=True, slots=True)
class InvariantVerdict:
    """One invariant's outcome."""

    invariant: str
    holds: bool
    detail: str = ""

    def as_data(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "holds": self.holds, "detail": self.detail}


def _effects(facts: EpisodeFacts, name: str) -> list[WorldEffect]:
    service, _, operation = name.partition(".")
    return facts.ledger.of(service, operation or None)


def _matches(effect: WorldEffect, match: dict[str, Any]) -> bool:
    return all(effect.data.get(k) == v for k, v in match.items())


def _exactly_once(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    match = s.get("match") or {}
    found = [e for e in _effects(facts, s["effect"]) if _matches(e, match)]
    counts = Counter(e.key for e in found)
    problems = [f"{n} × {key}" for key, n in sorted(counts.items()) if n > 1]
    problems += [f"0 × {key}" for key in s.get("keys") or () if counts.get(key, 0) == 0]
    if match and not s.get("keys") and len(found) != 1:
        problems.append(f"{len(found)} × {s['effect']} matching {match}, expected exactly 1")
    return "; ".join(dict.fromkeys(problems)) or None


def _at_most(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    found = len(_effects(facts, s["effect"]))
    return f"{found} effects, at most {s['n']} allowed" if found > s["n"] else None


def _at_most_each(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    allowed: dict[str, int] = s.get("keys") or {}
    n = int(s.get("n", 1))
    counts = Counter(e.key for e in _effects(facts, s["effect"]))
    problems = [f"{found} × {key}, at most {allowed.get(key, n)} allowed"
                for key, found in sorted(counts.items()) if found > allowed.get(key, n)]
    return "; ".join(problems) or None


def _never_without_approval(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    # The k-th effect a tool caused needs k approvals of that tool granted before it.
    made: dict[str, int] = {}
    for effect in _effects(facts, s["effect"]):
        tool = facts.effect_causes.get(effect.seq, "")
        made[tool] = made.get(tool, 0) + 1
        before = sum(1 for name, at in facts.approvals if name == tool and at <= effect.at)
        if not tool or before < made[tool]:
            who = f" by {tool}" if tool else ""
            return f"{effect.key} (effect {effect.seq}{who}) without an approval"
    return None


def _never(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    match = s.get("match") or {}
    for effect in _effects(facts, s["effect"]):
        if _matches(effect, match):
            return f"{effect.key} happened ({dict(effect.data)})"
    return None


def _every(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    match = s.get("match") or {}
    for effect in _effects(facts, s["effect"]):
        wrong = {k: effect.data.get(k) for k, v in match.items() if effect.data.get(k) != v}
        if wrong:
            return f"{effect.key} has {wrong}, expected {({k: match[k] for k in wrong})}"
    return None


def _ends_within(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    limit = float(s["seconds"])
    return None if facts.duration_s <= limit else \
        f"the episode took {facts.duration_s:g} s of virtual time, more than {limit:g} s"


def _final_state(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    # A service or path that is not there is a failed check, never a None that happens to
    # equal an expected None: a misspelt path must not hold vacuously.
    if s["service"] not in facts.snapshots:
        return f"no service {s['service']!r} in the world (it has " \
            f"{', '.join(sorted(facts.snapshots)) or 'none'})"
    value: Any = facts.snapshots[s["service"]]
    walked: list[str] = []
    for part in str(s["path"]).split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = ".".join([s["service"], *walked]) if walked else s["service"]
            have = ", ".join(sorted(map(str, value))[:12]) if isinstance(value, dict) else \
                f"a {type(value).__name__}"
            return f"{s['service']}.{s['path']}: {where} has no {part!r} (it has {have})"
        walked.append(part)
    return None if value == s.get("equals") else \
        f"{s['service']}.{s['path']} is {value!r}, expected {s.get('equals')!r}"


def _python(facts: EpisodeFacts, s: dict[str, Any]) -> str | None:
    name = str(s["function"])
    module_name, _, attr = name.partition(":")
    try:
        fn: Callable[[EpisodeFacts], object] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"invariant function {name!r} cannot be loaded: {exc}") from exc
    if not callable(fn):
        raise UsageError(f"invariant function {name!r} is not a function")
    # A check that cannot give its verdict leaves the episode unjudged: an error, never a pass
    # or a violation by default.
    # BaseException too: a check that calls sys.exit or raises KeyboardInterrupt is the check's
    # error, never the end of the command (or of a whole campaign).
    try:
        verdict = fn(facts)
    except BaseException as exc:
        said = " ".join(str(exc).split())
        said = said if len(said) <= 200 else f"{said[:200]}…"
        raise UsageError(f"invariant function {name!r} raised {type(exc).__name__}: {said}; it "
                         "must return None (holds) or a message (violated)") from exc
    if verdict is not None and not isinstance(verdict, str):
        raise UsageError(f"invariant function {name!r} returned {type(verdict).__name__}; "
                         "expected None (holds) or a message (violated)")
    return verdict


_CHECKS: dict[str, Callable[[EpisodeFacts, dict[str, Any]], str | None]] = {
    "exactly_once": _exactly_once, "at_most": _at_most, "at_most_each": _at_most_each,
    "never_without_approval": _never_without_approval, "never": _never, "every": _every,
    "final_state": _final_state, "ends_within": _ends_within, "python": _python,
}


def check_invariants(invariants: Sequence[Invariant],
                     facts: EpisodeFacts) -> list[InvariantVerdict]:
    """Each invariant's verdict, in the scenario's order."""
    verdicts = []
    for inv in invariants:
        # Checks built in code (an agent's reading of its task) bypass the scenario loader: an
        # effect or field no service records would make them hold or fail vacuously.
        check_effect_settings(inv.settings, "invariant", inv.kind)
        label = f"{inv.kind}({', '.join(f'{k}={v}' for k, v in inv.settings.items() if v)})"
        problem = _CHECKS[inv.kind](facts, inv.settings)
        verdicts.append(InvariantVerdict(label, problem is None, problem or ""))
    return verdicts
