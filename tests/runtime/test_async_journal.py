"""RunJournal.arecord: the awaited append keeps record's seqs, retries and listeners."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from tether.clock import VirtualClock
from tether.errors import ConcurrencyConflict, OwnershipLost
from tether.events import Event, RunStarted, StepRecorded, WaitResolved
from tether.runtime.journal import RunJournal
from tether.store.base import AsyncStore, Lease
from tether.store.memory import MemoryStore


class GatedStore(MemoryStore):
    """A memory store with the awaited form, whose appends wait for ``gate`` — before
    storing (``store_first=False``) or after storing and before returning."""

    def __init__(self, *, store_first: bool = False) -> None:
        super().__init__()
        self.store_first = store_first
        self.gate: asyncio.Event | None = None
        self.awaited = 0

    async def append_async(self, run_id: str, events: Sequence[Event], *,
                           expected_last_seq: int, sync: bool = False,
                           lease: Lease | None = None) -> None:
        self.awaited += 1
        if self.store_first:
            self.append(run_id, events, expected_last_seq=expected_last_seq, sync=sync,
                        lease=lease)
        if self.gate is not None:
            await self.gate.wait()
        if not self.store_first:
            self.append(run_id, events, expected_last_seq=expected_last_seq, sync=sync,
                        lease=lease)

    async def read_async(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        return self.read(run_id, after_seq=after_seq)


def _journal(store: MemoryStore, told: list[int] | None = None) -> RunJournal:
    listeners = [] if told is None else [lambda _run, event: told.append(event.seq)]
    journal = RunJournal(store, "r", VirtualClock(), listeners=listeners)
    journal.record(RunStarted, workflow="wf", seed=1)
    return journal


def test_gated_store_has_the_awaited_form() -> None:
    """The test double is what the journal looks for (and a plain memory store is not)."""
    assert isinstance(GatedStore(), AsyncStore)
    assert not isinstance(MemoryStore(), AsyncStore)


class Forwarding:
    """A store wrapper that counts appends and forwards everything else (``__getattr__``)."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.appends = 0

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        self.appends += 1
        self.inner.append(run_id, events, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_forwarding_wrapper_keeps_its_own_append() -> None:
    """A wrapper forwarding unknown attributes to a store with the awaited form is not taken
    for one: arecord goes through the wrapper's own append, so nothing it does is skipped."""
    inner = GatedStore()
    wrapper = Forwarding(inner)
    journal = RunJournal(wrapper, "r", VirtualClock())
    journal.record(RunStarted, workflow="wf", seed=1)
    asyncio.run(journal.arecord(StepRecorded, pos=0, call="step", name="s", result=1))
    assert wrapper.appends == 2
    assert inner.awaited == 0


def test_an_append_replaced_on_the_instance_is_not_bypassed() -> None:
    """A store instrumented in place (its ``append`` replaced on the instance, as a crash or
    tracing harness does) is appended to through that replacement by arecord too."""
    store = GatedStore()
    seen: list[int] = []
    original = store.append

    def counting(run_id: str, events: Any, **kw: Any) -> None:
        seen.append(events[0].seq)
        original(run_id, events, **kw)

    store.append = counting  # type: ignore[method-assign]
    journal = RunJournal(store, "r", VirtualClock())
    journal.record(RunStarted, workflow="wf", seed=1)
    asyncio.run(journal.arecord(StepRecorded, pos=0, call="step", name="s", result=1))
    assert seen == [1, 2]
    assert store.awaited == 0


def test_parallel_awaited_appends_of_one_journal_take_consecutive_seqs() -> None:
    """Ten appends awaited at once on one journal go one after another: seqs 2..11, each
    told to listeners once, in order, and none lost to a seq collision."""
    store = GatedStore()
    told: list[int] = []
    journal = _journal(store, told)

    async def main() -> None:
        await asyncio.gather(*(journal.arecord(StepRecorded, pos=i, call="step", name="s",
                                               result=i) for i in range(10)))

    asyncio.run(main())
    assert [e.seq for e in store.read("r")] == list(range(1, 12))
    assert told == list(range(1, 12))
    assert store.awaited == 10
    assert sorted(e.pos for e in store.read("r")[1:] if isinstance(e, StepRecorded)) == \
        list(range(10))


@pytest.mark.parametrize("store_first", [False, True])
def test_blocking_append_beside_an_awaited_one_in_flight(store_first: bool) -> None:
    """A blocking record made while an awaited append of the same journal is in flight (not
    yet stored, or stored but not yet returned) lands too: consecutive seqs, both events
    indexed, each told once and in seq order."""
    store = GatedStore(store_first=store_first)
    told: list[int] = []
    journal = _journal(store, told)

    async def main() -> None:
        store.gate = asyncio.Event()
        awaited = asyncio.create_task(journal.arecord(StepRecorded, pos=0, call="step",
                                                      name="a", result=1))
        await asyncio.sleep(0)  # the awaited append is in flight now
        journal.record(StepRecorded, pos=1, call="now", name="now", result=2.0)
        store.gate.set()
        await awaited

    asyncio.run(main())
    events = store.read("r")
    assert [e.seq for e in events] == [1, 2, 3]
    assert told == [1, 2, 3]
    assert journal.last_seq == 3
    assert journal.at(0) and journal.at(1)


def test_awaited_append_absorbs_a_resolution_from_outside() -> None:
    """A resolution appended by someone else between reads is taken in and the awaited
    append retried after it, as record does."""
    store = GatedStore()
    journal = _journal(store)
    store.append("r", [WaitResolved(seq=2, at=0.0, key="k", value=1)], expected_last_seq=1)
    event = asyncio.run(journal.arecord(StepRecorded, pos=0, call="step", name="s", result=1))
    assert event.seq == 3
    assert journal.resolution("k") is not None


def test_awaited_append_after_a_foreign_append_raises_conflict() -> None:
    """Anything but resolutions appended by another writer is a lost race: ConcurrencyConflict,
    nothing stored."""
    store = GatedStore()
    journal = _journal(store)
    store.append("r", [StepRecorded(seq=2, at=0.0, pos=0, call="step", name="x", result=0)],
                 expected_last_seq=1)
    with pytest.raises(ConcurrencyConflict):
        asyncio.run(journal.arecord(StepRecorded, pos=0, call="step", name="s", result=1))
    assert len(store.read("r")) == 2


def test_awaited_append_with_a_lost_lease_raises_ownership_lost() -> None:
    """An append fenced off (another worker took the run) raises OwnershipLost and marks the
    journal lost, so the next durable call stops too."""
    store, clock = GatedStore(), VirtualClock()
    lease = Lease("r", "me", 1, clock.now() + 30.0)
    journal = RunJournal(store, "r", clock, lease=lease)
    journal.record(RunStarted, workflow="wf", seed=1)
    store.acquire("r", "other", now=clock.now() + 60.0, ttl_s=30.0)
    with pytest.raises(OwnershipLost):
        asyncio.run(journal.arecord(StepRecorded, pos=0, call="step", name="s", result=1))
    assert journal.lost is not None
    with pytest.raises(OwnershipLost):
        journal.at(0)


def test_awaited_append_serves_two_event_loops_in_turn() -> None:
    """A journal awaited from one loop, then another (asyncio.run twice), keeps working."""
    store = GatedStore()
    journal = _journal(store)
    for i in range(2):
        asyncio.run(journal.arecord(StepRecorded, pos=i, call="step", name="s", result=i))
    assert journal.last_seq == 3


def test_arecord_without_the_awaited_form_is_record() -> None:
    """On a store without append_async, arecord and arecord_once append as record does."""
    store = MemoryStore()
    journal = _journal(store)
    first: Any = asyncio.run(journal.arecord(StepRecorded, pos=0, call="step", name="s",
                                             result=1))
    second: Any = asyncio.run(journal.arecord_once(StepRecorded, pos=1, call="step", name="s",
                                                   result=2))
    assert (first.seq, second.seq) == (2, 3)
    assert [e.seq for e in store.read("r")] == [1, 2, 3]
