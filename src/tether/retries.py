"""What counts as a retry: the one definition the budget, the loop, the trace and the grader use.

A *retry* is the harness doing again something that already failed, with no new request from
the model:

* a tool call's attempt after its first — a ``tool_retry`` (the attempt failed transiently and
  another follows) or a re-issued write (a ``tool_intent`` with ``attempt`` > 1 after an
  ambiguous outcome). One retry per extra attempt, however many events journal it: a
  ``tool_retry`` followed by the re-issue's ``tool_intent`` is one retry, not two;
* a lookup made again (a ``tool_retry`` with ``lookup``): the lookup of a write whose outcome
  is unknown failed and is made once more;
* a ``recover`` decision whose action asks again (:data:`RETRY_ACTIONS`: wait and call the model
  again, compress the context, remind the model of the format, refresh credentials and call
  again).

Everything is counted from the journal's events, so a replay, a trace read a year later and a
grader in another process count exactly what the run did. The run's retry budget and
``Budgets.max_retries`` are totals of this count over every position, checked when a retry
would be made.

>>> from tether.events import Decision, ToolIntent, ToolRetry
>>> count_retries([
...     ToolIntent(seq=1, at=0.0, pos=3, tool="refund", effect="idempotent", key="k", args={}),
...     ToolRetry(seq=2, at=0.0, pos=3, tool="refund", failure="transient_tool_error",
...               attempt=1, delay_s=1.0, error={}),
...     ToolIntent(seq=3, at=1.0, pos=3, tool="refund", effect="idempotent", key="k", args={},
...                attempt=2),
...     Decision(seq=4, at=1.0, pos=4, name="recover", data={"action": "backoff"}),
... ])
2
"""

from __future__ import annotations

from collections.abc import Iterable

from tether.events import Decision, Event, ToolAmbiguous, ToolIntent, ToolRetry

__all__ = ["RETRY_ACTIONS", "count_retries", "count_unpaced_retries", "is_retry_decision",
           "retries_at"]

#: Harness actions after which the failed call is made again. ``retry`` and ``retry_tool`` are
#: not here: the tool layer journals its own attempts (``tool_retry``), and counting the
#: decision too would count one retry twice.
RETRY_ACTIONS = frozenset({"backoff", "compress", "reformat", "refresh_auth"})


def is_retry_decision(event: Event) -> bool:
    """Whether ``event`` is a harness decision to make a failed call again."""
    return (isinstance(event, Decision) and event.name == "recover"
            and event.data.get("action") in RETRY_ACTIONS)


def retries_at(events: Iterable[Event]) -> int:
    """Retries among the events of one position: extra attempts of its tool call, plus retry
    decisions."""
    attempts, decided = 1, 0
    for event in events:
        if isinstance(event, ToolIntent | ToolAmbiguous):
            attempts = max(attempts, event.attempt)
        elif isinstance(event, ToolRetry) and event.lookup:
            decided += 1
        elif isinstance(event, ToolRetry):
            attempts = max(attempts, event.attempt + 1)
        elif is_retry_decision(event):
            decided += 1
    return attempts - 1 + decided


def count_retries(events: Iterable[Event]) -> int:
    """Retries in a run's events (a whole journal, or any part of it)."""
    by_pos: dict[int, list[Event]] = {}
    for event in events:
        pos = getattr(event, "pos", None)
        if pos is not None:
            by_pos.setdefault(pos, []).append(event)
    return sum(retries_at(group) for group in by_pos.values())


def count_unpaced_retries(events: Iterable[Event]) -> int:
    """Retries made without waiting: what a *retry storm* is made of.

    A retry is paced when the clock moved between the failure and the next attempt (a backoff,
    a provider's ``retry-after``) or when the harness changed the request (compress, reformat,
    refresh credentials). An extra attempt made at the same instant as the failure before it,
    or a ``backoff`` decision that waits nothing, is unpaced. Honouring a long ``retry-after``
    many times is patience, not a storm; calling a dead API again at once is.
    """
    unpaced = 0
    failed_at: dict[int, float] = {}
    for event in events:
        pos = getattr(event, "pos", None)
        if isinstance(event, ToolRetry | ToolAmbiguous):
            if isinstance(event, ToolRetry) and event.delay_s <= 0:
                unpaced += 1
                failed_at.pop(pos or 0, None)
                continue
            failed_at[pos or 0] = event.at
        elif isinstance(event, ToolIntent) and event.attempt > 1:
            failed = failed_at.pop(event.pos, None)
            if failed is not None and event.at <= failed:
                unpaced += 1
        elif isinstance(event, Decision) and is_retry_decision(event) and \
                event.data.get("action") == "backoff" and \
                not float(event.data.get("delay_s") or 0.0) > 0:
            unpaced += 1
    return unpaced
