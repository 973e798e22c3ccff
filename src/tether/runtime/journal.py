"""One run's journal as the runtime sees it: what is recorded, and how to add to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tether.clock import Clock, VirtualClock
from tether.errors import AlreadyDecided, ConcurrencyConflict, LeaseLost, OwnershipLost
from tether.events import (
    Decision,
    Event,
    ModelCalled,
    ModelFailed,
    RunFinished,
    RunStarted,
    StepFailed,
    StepRecorded,
    TimerStarted,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    ToolRetry,
    WaitExpired,
    WaitResolved,
    WaitStarted,
    encode,
)
from tether.retries import retries_at
from tether.store.base import AsyncStore, Lease, Store, awaited_form

__all__ = [
    "Listener",
    "Probe",
    "ProbePoint",
    "RunJournal",
    "already_resolved",
    "call_identity",
    "instant",
    "read_events",
]


@dataclass(frozen=True, slots=True)
class ProbePoint:
    """A named instant inside a durable call, where tests and the simulator may crash a worker.

    ``point`` is one of ``before_intent``, ``after_intent`` (intent durable, handler not called),
    ``after_call`` (handler returned, result not journaled) and ``after_result``; steps report
    ``after_step``.
    """

    run_id: str
    position: int
    name: str
    point: str


class Probe(Protocol):
    """Called at every :class:`ProbePoint`; raising :class:`~tether.errors.Crash` abandons
    the run."""

    def __call__(self, point: ProbePoint) -> None: ...


#: Called with every event once it is appended (sinks: traces, JSONL, progress).
Listener = Callable[[str, Event], None]


def call_identity(event: Event) -> tuple[str, str] | None:
    """(call kind, name) of the durable call an event belongs to, for determinism checks."""
    if isinstance(event, StepRecorded | StepFailed):
        return (event.call, event.name)
    if isinstance(event, TimerStarted):
        return ("sleep", "")
    if isinstance(event, WaitStarted):
        return ("wait_for", event.key)
    if isinstance(event, ToolIntent):
        return ("compensate" if event.compensates is not None else "call_tool", event.tool)
    if isinstance(event, ToolResult | ToolError | ToolAmbiguous | ToolRetry):
        return ("call_tool", event.tool)
    if isinstance(event, ModelCalled | ModelFailed):
        return ("call_model", event.model)
    if isinstance(event, Decision):
        return ("decide", event.name)
    return None


async def read_events(store: Store, run_id: str, *, after_seq: int = 0) -> list[Event]:
    """``store.read``, awaited when the store has the awaited form (see
    :func:`~tether.store.base.awaited_form`): a long journal read at resume then leaves the
    event loop free."""
    awaited = awaited_form(store)
    if awaited is None:
        return store.read(run_id, after_seq=after_seq)
    return await awaited.read_async(run_id, after_seq=after_seq)


def instant(at: float) -> str:
    """A clock time for messages: UTC, to the second."""
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # a virtual clock far from the epoch
        return f"t={at:g}"


def already_resolved(run_id: str, first: WaitResolved) -> AlreadyDecided:
    """The error for a second resolution of a key: it names the first (who, what, when)."""
    what = f"with {first.value!r}"[:80]
    note = f" ({first.note})" if first.note else ""
    return AlreadyDecided(
        f"run {run_id!r}: {first.key!r} was already resolved {what} by {first.by or 'someone'}"
        f"{note} at {instant(first.at)}; the first decision stands and this one was not "
        "recorded",
        run_id=run_id, key=first.key, by=first.by, at=first.at, value=first.value,
        note=first.note,
    )


class RunJournal:
    """The events of one run, indexed by position, plus the means to append more.

    Appends stamp the next ``seq`` and the clock's time, write through the store with the
    expected last seq (so a second writer is detected), then tell the listeners.

    With a ``lease`` every append is fenced by it (see :mod:`tether.store.base`), and the lease
    is renewed before an append once past half of ``lease_ttl_s``. Once the lease is lost — a
    fenced append or a renewal refused, here or by a heartbeat (:meth:`renew_lease`) — the
    next append or durable call raises :class:`~tether.errors.OwnershipLost`.

    :meth:`arecord` is :meth:`record` for async code: on a store that is an
    :class:`~tether.store.base.AsyncStore` (PostgreSQL) the event loop goes on while the
    append travels, and the appends of one journal still take their seqs one at a time (an
    ``asyncio.Lock``), so parallel tool calls of one run never collide on a seq. A blocking
    :meth:`record` made while such an append is in flight (``now()``, ``decide()`` beside a
    tool call) recognises that append in the store as this journal's own and goes after it.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        clock: Clock,
        events: Sequence[Event] = (),
        listeners: Sequence[Listener] = (),
        *,
        lease: Lease | None = None,
        lease_ttl_s: float = 30.0,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.clock = clock
        self.listeners = tuple(listeners)
        self.lease = lease
        self.lease_ttl_s = lease_ttl_s
        # When the lease is past half its TTL and the next durable call renews it.
        self._renew_at = (float("inf") if lease is None
                          else lease.expires_at - lease_ttl_s / 2)
        self.lost: LeaseLost | None = None
        self._lease_lock = threading.Lock()
        self.last_seq = 0
        self.started: RunStarted | None = None
        self.finished: RunFinished | None = None
        self._by_pos: dict[int, list[Event]] = {}
        # Retries per position (tether.retries.retries_at), kept as events arrive and only
        # where there are some: the retry budget is checked before every call.
        self._retries: dict[int, int] = {}
        self._resolutions: dict[str, WaitResolved] = {}
        # The awaited appends: the store's async form (None: ``arecord`` is ``record``), the
        # lock that orders them (bound to the loop it was made on), and the event in flight.
        self._astore = awaited_form(store)
        self._alock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._inflight: Event | None = None
        for event in events:
            self._index(event)
            self.last_seq = event.seq
        if events and isinstance(clock, VirtualClock):
            # A run's clock never reads earlier than what its journal holds (a new process's
            # virtual clock starts at its origin again).
            clock.catch_up(max(event.at for event in events))

    def _index(self, event: Event) -> None:
        pos = getattr(event, "pos", None)
        if pos is not None:
            events = self._by_pos.setdefault(pos, [])
            events.append(event)
            if isinstance(event, ToolAmbiguous | ToolRetry | Decision) or (
                    isinstance(event, ToolIntent) and event.attempt > 1):
                # Only these change a position's retries (tether.retries.retries_at).
                spent = retries_at(events)
                if spent:
                    self._retries[pos] = spent
        elif isinstance(event, WaitResolved):
            self._resolutions.setdefault(event.key, event)
        elif isinstance(event, RunStarted):
            self.started = event
        elif isinstance(event, RunFinished):
            self.finished = event

    def _absorb_resolutions(self) -> bool:
        """After a lost append race, take in what was appended meanwhile if it is only
        resolutions delivered from outside (``Runtime.resolve``); then the append may retry.
        Anything else means another worker owns the run."""
        return self._take_in(self.store.read(self.run_id, after_seq=self.last_seq))

    async def _aabsorb_resolutions(self, store: AsyncStore) -> bool:
        """:meth:`_absorb_resolutions`, reading without blocking the event loop."""
        return self._take_in(await store.read_async(self.run_id, after_seq=self.last_seq))

    def _take_in(self, newer: Sequence[Event]) -> bool:
        """Index ``newer`` (read after ``last_seq``) if it is only resolutions, or this
        journal's own awaited append still in flight (then it is taken as appended, listeners
        told); False, taking nothing, if anything else is there."""
        inflight = self._inflight
        if not newer or not all(isinstance(e, WaitResolved) or _same(e, inflight)
                                for e in newer):
            return False
        for event in newer:
            if _same(event, inflight):
                self._took(event)
            else:
                self._index(event)
                self.last_seq = event.seq
        return True

    def refresh(self) -> None:
        """Take in resolutions delivered from outside since this journal was read."""
        self._absorb_resolutions()

    def at(self, position: int) -> list[Event]:
        """Events recorded for the durable call at ``position`` (empty if none).

        Every durable call starts here, so a worker that lost the run stops at its next one:
        past half its TTL the lease is renewed first, which finds out whether another worker
        took the run over (say, while this process was stalled past its lease)."""
        if self.clock.now() >= self._renew_at:  # cheap on the hot path: one comparison
            self.renew_lease(early=False)
        if self.lost is not None:
            raise OwnershipLost(self.lost)
        return self._by_pos.get(position, [])

    def retries_before(self, position: int) -> int:
        """Retries the run has spent at positions before ``position``, as
        :mod:`tether.retries` defines them (one per extra attempt of a tool call, one per
        retry decision). Counted from the journal, so a replay counts exactly what the first
        execution did."""
        return sum(n for pos, n in self._retries.items() if pos < position)

    def retries_elsewhere(self, position: int) -> int:
        """Retries the run has spent at every position but ``position`` (those before it, and
        any running beside it, as parallel tool calls do): the run's retry budget is a total."""
        return sum(n for pos, n in self._retries.items() if pos != position)

    def positions(self) -> list[int]:
        return sorted(self._by_pos)

    def resolution(self, key: str) -> WaitResolved | None:
        return self._resolutions.get(key)

    def waits(self) -> dict[str, float | None]:
        """Keys the run waited on without a resolution: ``None`` while the wait is open, the
        expiry's clock time once it expired."""
        waits: dict[str, float | None] = {}
        for pos in sorted(self._by_pos):
            for event in self._by_pos[pos]:
                if isinstance(event, WaitStarted) and event.key not in self._resolutions:
                    waits.setdefault(event.key, None)
                elif isinstance(event, WaitExpired) and event.key not in self._resolutions:
                    waits[event.key] = event.at
        return waits

    def expired(self, position: int) -> bool:
        return any(isinstance(e, WaitExpired) for e in self.at(position))

    # -- the lease ----------------------------------------------------------------------

    def renew_lease(self, *, early: bool = True) -> None:
        """Renew the lease (with ``early=False`` only once past half its time to live); a
        refusal marks the run lost. Safe to call from a heartbeat thread."""
        with self._lease_lock:
            lease = self.lease
            if lease is None or self.lost is not None:
                return
            now = self.clock.now()
            if not early and now < self._renew_at:
                return
            try:
                self.lease = self.store.renew(lease, now=now, ttl_s=self.lease_ttl_s)
                self._renew_at = self.lease.expires_at - self.lease_ttl_s / 2
            except LeaseLost as exc:
                self.lost = exc

    def _check_owned(self, event: Event) -> None:
        """Before an append: stop if the lease is lost, renew it if past half its TTL."""
        if self.lost is not None:
            raise OwnershipLost(self.lost)
        if event.at >= self._renew_at:  # piggy-backed: at most one renewal per half TTL
            self.renew_lease(early=False)
            if self.lost is not None:
                raise OwnershipLost(self.lost)

    def _fenced_append(self, event: Event, sync: bool) -> None:
        self._check_owned(event)
        try:
            if self.lease is None:  # the contract before leases: third-party stores keep working
                self.store.append(self.run_id, [event], expected_last_seq=self.last_seq,
                                  sync=sync)
            else:
                self.store.append(self.run_id, [event], expected_last_seq=self.last_seq,
                                  sync=sync, lease=self.lease)
        except LeaseLost as exc:
            self.lost = exc
            raise OwnershipLost(exc) from exc

    # -- appending ------------------------------------------------------------------------

    def record(self, cls: type[Any], *, sync: bool = False, **fields: Any) -> Any:
        """Append one event of type ``cls``; ``sync`` makes it (and all before it) durable."""
        while True:
            event = cls(seq=self.last_seq + 1, at=self.clock.now(), **fields)
            try:
                self._fenced_append(event, sync)
                break
            except ConcurrencyConflict:
                if not self._absorb_resolutions():
                    raise
        return self._took(event)

    def record_once(self, cls: type[Any], *, sync: bool = False, **fields: Any) -> Any:
        """Append one event of type ``cls`` at the next seq, or raise ConcurrencyConflict if
        anything was appended since this journal was read: a compare-and-set, for callers
        that must re-check what they decide on after losing a race."""
        event = cls(seq=self.last_seq + 1, at=self.clock.now(), **fields)
        self._fenced_append(event, sync)
        return self._took(event)

    async def _afenced_append(self, store: AsyncStore, event: Event, sync: bool) -> None:
        self._check_owned(event)
        self._inflight = event
        try:
            await store.append_async(self.run_id, [event], expected_last_seq=event.seq - 1,
                                     sync=sync, lease=self.lease)
        except LeaseLost as exc:
            self.lost = exc
            raise OwnershipLost(exc) from exc
        finally:
            if self._inflight is event:
                self._inflight = None

    def _append_lock(self) -> asyncio.Lock:
        """The lock ordering this journal's awaited appends, made anew on another loop (a
        runtime driven by ``run_sync`` twice sees two loops)."""
        loop = asyncio.get_running_loop()
        if self._alock is None or self._alock[0] is not loop:
            self._alock = (loop, asyncio.Lock())
        return self._alock[1]

    async def arecord(self, cls: type[Any], *, sync: bool = False, **fields: Any) -> Any:
        """:meth:`record`, awaited: the event loop is not blocked while the store appends.

        The same event, seq, fencing, lease renewal and resolution-absorbing retry; on a store
        without the async form it is exactly :meth:`record`."""
        store = self._astore
        if store is None:
            return self.record(cls, sync=sync, **fields)
        async with self._append_lock():
            while True:
                event = cls(seq=self.last_seq + 1, at=self.clock.now(), **fields)
                try:
                    await self._afenced_append(store, event, sync)
                except ConcurrencyConflict:
                    if self.last_seq >= event.seq:
                        continue  # a blocking append of this journal took the seq meanwhile
                    if not await self._aabsorb_resolutions(store):
                        raise
                    continue
                if self.last_seq >= event.seq:
                    return event  # a blocking append met it in the store and took it in
                return self._took(event)

    async def arecord_once(self, cls: type[Any], *, sync: bool = False, **fields: Any) -> Any:
        """:meth:`record_once`, awaited (see :meth:`arecord`)."""
        store = self._astore
        if store is None:
            return self.record_once(cls, sync=sync, **fields)
        async with self._append_lock():
            event = cls(seq=self.last_seq + 1, at=self.clock.now(), **fields)
            await self._afenced_append(store, event, sync)
            if self.last_seq >= event.seq:
                return event
            return self._took(event)

    def _took(self, event: Event) -> Event:
        self.last_seq = event.seq
        self._index(event)
        for listener in self.listeners:
            listener(self.run_id, event)
        return event


def _same(stored: Event, inflight: Event | None) -> bool:
    """Whether ``stored`` (read back) is the append ``inflight``: the same seq and bytes."""
    return inflight is not None and stored.seq == inflight.seq and \
        encode(stored) == encode(inflight)
