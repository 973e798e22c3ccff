"""Which earlier requests under an idempotency key may have taken effect, and since when.

A re-issue is safe only while the provider still remembers the key, so the write protocol
(:mod:`tether.runtime.writes`) asks, before relying on a key, when a request under it that may
have taken effect was first sent in the run — read from the journal, so a resumed run knows
what its first worker sent.
"""

from __future__ import annotations

from typing import Any

from tether.events import ToolAmbiguous, ToolError, ToolIntent, ToolResult, ToolRetry
from tether.runtime.journal import RunJournal

__all__ = ["first_send", "key_margin_s", "unsettled"]


#: Failure classes of a ``tool_error`` that say the request was not applied.
_NOT_APPLIED = frozenset({"transient_tool_error", "permanent_tool_error", "auth_expired",
                          "budget_exceeded", "invalid_tool_call", "policy_denied"})


def key_margin_s(lifetime_s: float) -> float:
    """How long before a provider forgets a key tether stops relying on it: a tenth of the
    lifetime, at most 300 s (the request's transit, and a provider clock ahead of ours)."""
    return min(300.0, 0.1 * lifetime_s)


def first_send(journal: RunJournal, key: str, skip: tuple[int, int]) -> tuple[float, int] | None:
    """When (run clock) and at which position a request under ``key`` that may have taken
    effect was first sent in this run; ``skip`` is the (position, attempt) in hand, which
    certainly did not take effect. ``None`` when no such request was sent."""
    first: tuple[float, int] | None = None
    for pos in journal.positions():
        events = journal.at(pos)
        for i, event in enumerate(events):
            if not (isinstance(event, ToolIntent) and event.key == key
                    and event.compensates is None and (pos, event.attempt) != skip):
                continue
            if _may_have_applied(event, events[i + 1:]) and (first is None or
                                                             event.at < first[0]):
                first = (event.at, pos)
    return first


def unsettled(journal: RunJournal, key: str, skip: tuple[int, int]) -> bool:
    """Whether a request under ``key`` (other than ``skip``, the (position, attempt) in hand)
    may have taken effect and its outcome is still unknown: no ``tool_result`` was journaled
    under the key after it, at any position. Unlike :func:`first_send`, a request whose
    outcome a later result settled does not count: the provider answered for the key."""
    sends: list[int] = []  # seq of each request that may have taken effect
    results: list[int] = []  # seq of each result under the key
    for pos in journal.positions():
        events = journal.at(pos)
        if not any(isinstance(e, ToolIntent) and e.key == key and e.compensates is None
                   for e in events):
            continue
        for i, event in enumerate(events):
            if isinstance(event, ToolResult):
                results.append(event.seq)
            elif (isinstance(event, ToolIntent) and event.key == key
                  and event.compensates is None and (pos, event.attempt) != skip
                  and _may_have_applied(event, events[i + 1:])):
                sends.append(event.seq)
    return any(not any(r > s for r in results) for s in sends)


def _may_have_applied(intent: ToolIntent, after: list[Any]) -> bool:
    """Whether the attempt ``intent`` opened may have taken effect, given what followed it."""
    for event in after:
        if isinstance(event, ToolRetry) and event.attempt == intent.attempt:
            return False  # it failed transiently: certainly not applied
        if isinstance(event, ToolError):
            return event.failure not in _NOT_APPLIED
        if isinstance(event, ToolIntent | ToolResult | ToolAmbiguous):
            return True
    return True  # nothing after it: in flight, or the worker stopped
