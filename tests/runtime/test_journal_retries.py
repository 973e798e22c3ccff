"""The journal keeps each position's retries as events arrive; its totals must equal counting
the whole journal afresh with :func:`tether.retries.retries_at` (property test)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tether import MemoryStore, VirtualClock
from tether.events import Decision, Event, StepRecorded, ToolAmbiguous, ToolIntent, ToolRetry
from tether.retries import retries_at
from tether.runtime.journal import RunJournal

POS = st.integers(0, 5)


def _event(kind: str, pos: int, attempt: int, seq: int) -> Event:
    common: dict[str, Any] = {"seq": seq, "at": float(seq), "pos": pos}
    if kind == "intent":
        return ToolIntent(**common, tool="t", effect="idempotent", key="k", args={},
                          attempt=attempt)
    if kind == "ambiguous":
        return ToolAmbiguous(**common, tool="t", key="k", reason="r", attempt=attempt,
                             interrupted=attempt % 2 == 0)
    if kind == "retry":
        return ToolRetry(**common, tool="t", failure="transient_tool_error", attempt=attempt,
                         delay_s=0.5, error={}, lookup=attempt % 3 == 0)
    if kind == "decision":
        action = ["backoff", "retry", "compress", "stop"][attempt % 4]
        return Decision(**common, name="recover", data={"action": action})
    return StepRecorded(**common, call="step", name="s", result=None)


EVENTS = st.lists(st.tuples(st.sampled_from(["intent", "ambiguous", "retry", "decision",
                                             "step"]), POS, st.integers(1, 4)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(EVENTS, POS)
def test_kept_retry_counts_equal_a_fresh_count(spec: list[tuple[str, int, int]],
                                               position: int) -> None:
    events = [_event(kind, pos, attempt, seq) for seq, (kind, pos, attempt)
              in enumerate(spec, start=1)]
    journal = RunJournal(MemoryStore(), "r", VirtualClock(), events)
    by_pos: dict[int, list[Event]] = {}
    for event in events:
        by_pos.setdefault(event.pos, []).append(event)  # type: ignore[union-attr]
    assert journal.retries_before(position) == sum(
        retries_at(group) for pos, group in by_pos.items() if pos < position)
    assert journal.retries_elsewhere(position) == sum(
        retries_at(group) for pos, group in by_pos.items() if pos != position)
