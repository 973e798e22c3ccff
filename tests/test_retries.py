"""The one definition of a retry, and of a retry that did not wait (a storm's material)."""

from __future__ import annotations

from tether.events import Decision, Event, ToolAmbiguous, ToolIntent, ToolRetry
from tether.retries import count_retries, count_unpaced_retries


def _throttled_write(delays_s: list[float]) -> list[Event]:
    events: list[Event] = [ToolIntent(seq=1, at=0.0, pos=2, tool="refund", effect="idempotent",
                                      key="k", args={})]
    now, seq = 0.0, 1
    for attempt, delay in enumerate(delays_s, start=1):
        seq += 1
        events.append(ToolRetry(seq=seq, at=now, pos=2, tool="refund",
                                failure="transient_tool_error", attempt=attempt,
                                delay_s=delay, error={}))
        now += delay
        seq += 1
        events.append(ToolIntent(seq=seq, at=now, pos=2, tool="refund", effect="idempotent",
                                 key="k", args={}, attempt=attempt + 1))
    return events


def test_honouring_retry_after_is_not_unpaced() -> None:
    """Eight retries that each waited a provider's retry-after are retries, none unpaced."""
    events = _throttled_write([30.0] * 8)
    assert count_retries(events) == 8
    assert count_unpaced_retries(events) == 0


def test_immediate_retries_are_unpaced() -> None:
    """Retries made at once after a failure are counted as unpaced."""
    events = _throttled_write([0.0] * 6)
    assert count_retries(events) == 6
    assert count_unpaced_retries(events) == 6


def test_reissue_after_an_ambiguous_outcome_paced_by_the_clock() -> None:
    """A re-issue after an ambiguous outcome is paced when the clock moved, unpaced if not."""
    def run(reissue_at: float) -> list[Event]:
        return [
            ToolIntent(seq=1, at=0.0, pos=1, tool="refund", effect="idempotent", key="k",
                       args={}),
            ToolAmbiguous(seq=2, at=5.0, pos=1, tool="refund", key="k", attempt=1,
                          reason="TimeoutError"),
            ToolIntent(seq=3, at=reissue_at, pos=1, tool="refund", effect="idempotent",
                       key="k", args={}, attempt=2),
        ]
    assert count_unpaced_retries(run(6.0)) == 0
    assert count_unpaced_retries(run(5.0)) == 1


def test_backoff_decisions_without_a_wait_are_unpaced() -> None:
    """A model backoff that waits nothing is unpaced; one that waits, or a reformat, is not."""
    events: list[Event] = [
        Decision(seq=1, at=0.0, pos=1, name="recover", data={"action": "backoff",
                                                             "delay_s": 0.0}),
        Decision(seq=2, at=0.0, pos=3, name="recover", data={"action": "backoff",
                                                             "delay_s": 2.5}),
        Decision(seq=3, at=2.5, pos=5, name="recover", data={"action": "reformat",
                                                             "delay_s": 0.0}),
    ]
    assert count_retries(events) == 3
    assert count_unpaced_retries(events) == 1
