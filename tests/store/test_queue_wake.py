"""wake_at: the rule table of the work queue, and its one-statement form for SQL stores."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tether.events import (
    Event,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    RunWaiting,
    StepRecorded,
    TimerFired,
    TimerStarted,
    WaitExpired,
    WaitResolved,
    WaitStarted,
    status_after,
)
from tether.store.base import (
    RunInfo,
    claim_order,
    claimable,
    wake_after,
    wake_time,
    wake_transform,
)

_T = st.floats(0, 1e6, allow_nan=False)
_EVENT: st.SearchStrategy[Any] = st.one_of(
    st.builds(RunStarted, seq=st.just(1), at=_T, workflow=st.just("w"), seed=st.just(0),
              queue=st.none() | st.sampled_from(["default", "q"])),
    st.builds(RunDequeued, seq=st.just(2), at=_T),
    st.builds(RunWaiting, seq=st.just(2), at=_T, key=st.just("k"), wake_at=st.none() | _T),
    st.builds(WaitStarted, seq=st.just(2), at=_T, pos=st.just(0), key=st.just("k"),
              deadline=st.none() | _T),
    st.builds(WaitResolved, seq=st.just(2), at=_T, key=st.just("k")),
    st.builds(WaitExpired, seq=st.just(2), at=_T, pos=st.just(0), key=st.just("k")),
    st.builds(TimerStarted, seq=st.just(2), at=_T, pos=st.just(0), wake_at=_T,
              parked=st.booleans()),
    st.builds(TimerFired, seq=st.just(2), at=_T, pos=st.just(0)),
    st.builds(StepRecorded, seq=st.just(2), at=_T, pos=st.just(0), call=st.just("step"),
              name=st.just("s")),
    st.builds(RunFinished, seq=st.just(2), at=_T, status=st.sampled_from(
        [RunStatus.COMPLETED, RunStatus.FAILED])),
)


@given(status=st.sampled_from(list(RunStatus)), wake=st.none() | _T,
       events=st.lists(_EVENT, max_size=6))
def test_the_sql_form_agrees_with_the_rules(status: RunStatus, wake: float | None,
                                            events: list[Event]) -> None:
    """wake_transform's (keep, due) applied to any stored wake_at gives what wake_after
    gives, for any stored status and any batch."""
    keep, due = wake_transform(status, events)
    earlier = due if wake is None else wake if due is None else min(wake, due)
    got = earlier if keep else due
    assert got == wake_after(status, wake, events)


@given(events=st.lists(_EVENT, max_size=8), cut=st.integers(0, 8))
def test_wake_at_does_not_depend_on_how_a_journal_is_batched(events: list[Event],
                                                             cut: int) -> None:
    """Appending a journal in two batches leaves the same wake_at as one batch."""
    status = None
    for event in events[:cut]:
        status = status_after(status, event)
    first = wake_after(None, None, events[:cut])
    assert wake_after(status, first, events[cut:]) == wake_after(None, None, events)


def test_the_rule_table() -> None:
    """Each row of the contract's table: enqueue due at once, in place never, deadlines and
    parked timers at their time (the earlier while already waiting), a resolution of a
    waiting run at once, and firing, expiry, dequeue and finish clear it."""
    queued = RunStarted(seq=1, at=5.0, workflow="w", seed=0, queue="q")
    assert wake_after(None, None, [queued]) == 5.0
    assert wake_after(None, None, [RunStarted(seq=1, at=5.0, workflow="w", seed=0)]) is None
    running, waiting = RunStatus.RUNNING, RunStatus.WAITING
    wait = WaitStarted(seq=2, at=6.0, pos=0, key="k", deadline=60.0)
    park = TimerStarted(seq=2, at=6.0, pos=0, wake_at=30.0, parked=True)
    assert wake_after(running, None, [wait]) == 60.0
    assert wake_after(running, None, [park]) == 30.0
    assert wake_after(running, None, [wait, park]) == 30.0
    assert wake_after(waiting, 90.0, [wait]) == 60.0
    assert wake_after(waiting, 20.0, [wait]) == 20.0
    assert wake_after(running, 20.0, [WaitStarted(seq=2, at=6.0, pos=0, key="k")]) is None
    assert wake_after(running, None, [TimerStarted(seq=2, at=6.0, pos=0, wake_at=9.0)]) is None
    assert wake_after(waiting, None, [WaitResolved(seq=3, at=7.0, key="k")]) == 7.0
    assert wake_after(running, None, [WaitResolved(seq=3, at=7.0, key="k")]) is None
    assert wake_after(running, 7.0, [RunWaiting(seq=4, at=8.0, key="k", wake_at=40.0)]) == 40.0
    assert wake_after(running, 7.0, [RunWaiting(seq=4, at=8.0, key="k")]) is None
    for clear in (TimerFired(seq=3, at=8.0, pos=0), WaitExpired(seq=3, at=8.0, pos=0, key="k"),
                  RunDequeued(seq=3, at=8.0),
                  RunFinished(seq=3, at=8.0, status=RunStatus.COMPLETED)):
        assert wake_after(waiting, 60.0, [clear]) is None


def test_who_is_due_and_when() -> None:
    """claimable, claim_order and wake_time on index rows: live leases are never due, running
    runs without one always, queued and waiting ones from wake_at."""
    row = RunInfo("r", "w", RunStatus.QUEUED, 1, 1.0, 1.0, wake_at=10.0)
    assert not claimable(row, now=9.0) and claimable(row, now=10.0)
    assert claim_order(row) == (1, 10.0, 1.0, "r")  # not started: after runs under way
    assert not claimable(row, now=10.0, queues=["other"])
    held = RunInfo("r", "w", RunStatus.RUNNING, 1, 1.0, 1.0, owner="x", epoch=1,
                   lease_expires_at=50.0)
    assert not claimable(held, now=49.0) and claimable(held, now=50.0)
    assert claim_order(held) == (0, 50.0, 1.0, "r") and wake_time(held) == 50.0
    idle = RunInfo("r", "w", RunStatus.WAITING, 2, 1.0, 3.0)
    assert not claimable(idle, now=1e9) and wake_time(idle) is None
    done = RunInfo("r", "w", RunStatus.COMPLETED, 2, 1.0, 3.0, wake_at=1.0)
    assert not claimable(done, now=1e9) and wake_time(done) is None
