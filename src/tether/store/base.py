"""The store contract: how journals are written and read.

A store keeps, per run, an append-only list of events numbered 1, 2, 3 … and a small index row
(workflow, status, last seq, owner) so runs can be listed by status. The contract is deliberately
small; the conformance kit in :mod:`tether.store.conformance` holds every implementation to it.

Ownership. A run being executed has one owner, a worker holding a :class:`Lease` on it: the
owner's name, an ``epoch`` and an expiry. Times are the *caller's* clock (stores have none):
:meth:`Store.acquire` takes a run whose lease is free, expired at ``now``, or already the
caller's, and bumps the epoch, so every takeover makes the previous holder's lease stale;
:meth:`Store.renew` extends a lease that is still current; :meth:`Store.release` frees it. An
append made with ``lease=`` is *fenced*: it stores nothing and raises
:class:`~tether.errors.LeaseLost` unless that lease (owner and epoch) is still the run's. An
append without a lease may only deliver resolutions (``wait_resolved`` events) to a run that has
an owner, the way ``Runtime.resolve`` and approvals do from outside; anything else is refused
with :class:`~tether.errors.LeaseLost`.

>>> lease = Lease("run-1", "host:42", epoch=3, expires_at=130.0)
>>> lease.live(at=100.0), lease.live(at=130.0)
(True, False)

The work queue. Every run's index row also carries its ``queue`` and ``wake_at``: when a worker
should next look at the run, on the callers' clock, if nobody holds a live lease on it.
:func:`wake_after` computes it from the events appended, so every store agrees. A store that is
also a :class:`WorkQueue` hands runs that need a worker to :meth:`WorkQueue.claim` — queued runs,
waiting runs whose resolution, deadline or parked timer is due, and running runs whose owner
died or let go — each under a fresh lease, and keeps the registry of workers
(:class:`WorkerInfo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, runtime_checkable

from tether.errors import (
    ConcurrencyConflict,
    CorruptJournal,
    LeaseLost,
    RunOwned,
    UsageError,
)
from tether.events import (
    STATUS_KINDS,
    Event,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    RunWaiting,
    TimerFired,
    TimerStarted,
    WaitExpired,
    WaitResolved,
    WaitStarted,
    decode,
    status_after,
    status_change,
)

__all__ = [
    "DEFAULT_QUEUE",
    "AsyncStore",
    "Durability",
    "Lease",
    "RunInfo",
    "Store",
    "WorkQueue",
    "WorkerInfo",
    "advance",
    "awaited_form",
    "check_batch",
    "check_claim_args",
    "check_lease_args",
    "claim_order",
    "claimable",
    "conflict",
    "decode_rows",
    "lease_lost",
    "next_status",
    "only_resolutions",
    "queue_of",
    "run_owned",
    "status_filter",
    "take",
    "touches_index",
    "wake_after",
    "wake_time",
]

#: The queue of runs started in place and of runs enqueued without naming one.
DEFAULT_QUEUE = "default"


class Durability(StrEnum):
    """What an append survives.

    * ``OUTPUT_COMMIT`` (default): every append survives a crash of the process (``kill -9``);
      appends marked ``sync`` — a write's intent, a run's completion, a wait that shows something
      to a human — and everything before them also survive power loss. After power loss at most
      a suffix of non-effect events is lost, and those steps run again.
    * ``EVERY_EVENT``: every append is flushed to stable storage before it returns.
    * ``PROCESS``: nothing is flushed explicitly; appends survive a process crash, not power loss.
      For tests and throwaway runs.
    """

    OUTPUT_COMMIT = "output_commit"
    EVERY_EVENT = "every_event"
    PROCESS = "process"


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's hold on a run: ``owner`` may append to ``run_id`` while ``epoch`` is the
    run's current one. ``expires_at`` is the owner's clock time after which other workers may
    take the run over (which bumps the epoch and fences this lease off)."""

    run_id: str
    owner: str
    epoch: int
    expires_at: float

    def live(self, *, at: float) -> bool:
        """Whether the lease still holds at clock time ``at``."""
        return at < self.expires_at


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The index row of one run.

    ``created_at`` is the clock time of the run's ``run_started`` event; ``updated_at`` the time
    of the event that last changed its status (started, suspended, resumed, finished …), so
    listing by ``updated_at`` answers "what changed lately" without touching every append.
    ``owner`` and ``lease_expires_at`` are the current lease (``None`` when nobody holds the
    run); ``epoch`` counts its acquisitions (0 for a run never leased). ``queue`` is the queue
    the run was enqueued on (:data:`DEFAULT_QUEUE` for a run started in place) and ``wake_at``
    when a worker should next look at it if nobody holds it (see :func:`wake_after`).
    """

    run_id: str
    workflow: str
    status: RunStatus
    last_seq: int
    created_at: float
    updated_at: float
    owner: str | None = None
    epoch: int = 0
    lease_expires_at: float | None = None
    queue: str = DEFAULT_QUEUE
    wake_at: float | None = None

    @property
    def lease(self) -> Lease | None:
        """The run's current lease, if someone holds it (live or expired)."""
        if self.owner is None or self.lease_expires_at is None:
            return None
        return Lease(self.run_id, self.owner, self.epoch, self.lease_expires_at)

    def leased(self, *, at: float) -> bool:
        """Whether a worker holds a live lease on the run at clock time ``at``."""
        lease = self.lease
        return lease is not None and lease.live(at=at)


@runtime_checkable
class Store(Protocol):
    """Where journals live.

    ``append`` is atomic and ordered: either every event of the batch is stored or none is. The
    batch's first event must carry ``seq == expected_last_seq + 1``; if the run's last stored
    seq differs (another writer got there first) it raises :class:`ConcurrencyConflict` and
    stores nothing. A batch starting at seq 1 creates the run and must begin with
    :class:`RunStarted`. ``sync=True`` asks for the batch, and everything appended before it, to
    be on stable storage before returning (see :class:`Durability`).
    """

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_seq: int,
        sync: bool = False,
        lease: Lease | None = None,
    ) -> None:
        """Append a batch; with ``lease``, only while that lease is the run's current one (a
        batch creating the run makes ``lease`` its owner). Raises ConcurrencyConflict,
        LeaseLost (fenced off) or UsageError (malformed batch), storing nothing."""
        ...

    def acquire(self, run_id: str, owner: str, *, now: float, ttl_s: float) -> Lease:
        """Take the lease of an existing run for ``owner`` until ``now + ttl_s``, bumping its
        epoch; raises RunOwned when another owner's lease is live at ``now`` and UsageError
        for an unknown run. One atomic compare-and-set."""
        ...

    def renew(self, lease: Lease, *, now: float, ttl_s: float) -> Lease:
        """Extend ``lease`` to ``now + ttl_s``; raises LeaseLost if it is no longer the run's
        current lease (even an expired lease renews while nobody took the run over)."""
        ...

    def release(self, lease: Lease) -> bool:
        """Free the run if ``lease`` is still its current one; False (and no change) if not."""
        ...

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        """Events of ``run_id`` with ``seq > after_seq``, in order; [] for an unknown run."""
        ...

    def get_run(self, run_id: str) -> RunInfo | None: ...

    def list_runs(
        self, *, status: RunStatus | Sequence[RunStatus] | None = None, limit: int = 1000
    ) -> list[RunInfo]:
        """Runs, oldest first, optionally only those in the given status(es)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncStore(Protocol):
    """What a store whose I/O is a network round trip (PostgreSQL) offers async code: the
    journal's appends and reads without blocking the event loop. The same arguments and
    semantics as :meth:`Store.append` and :meth:`Store.read` (atomic, ordered, fenced,
    ``ConcurrencyConflict`` / ``LeaseLost`` / ``UsageError`` alike). Optional: embedded stores
    (memory, SQLite) leave it out, as their blocking path is cheaper than any hop off the loop.
    Usable from any event loop, one after another (``asyncio.run`` twice). The runtime uses it
    only when the store's class defines it (see :func:`awaited_form`)."""

    async def append_async(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_seq: int,
        sync: bool = False,
        lease: Lease | None = None,
    ) -> None:
        """:meth:`Store.append`, awaited."""
        ...

    async def read_async(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        """:meth:`Store.read`, awaited."""
        ...


def awaited_form(store: object) -> AsyncStore | None:
    """``store`` as an :class:`AsyncStore` if its class defines the awaited form, else None.

    The class, not the instance: a wrapper that forwards unknown attributes to an inner store
    (``__getattr__``) would otherwise offer the inner store's ``append_async``, and the
    journal would append around the wrapper's own ``append`` (its counting, filtering or
    crash points) without a word. For the same reason a store whose ``append`` or ``read`` was
    replaced on the instance (instrumented in place) is used through that replacement only.

    >>> from tether.store.memory import MemoryStore
    >>> awaited_form(MemoryStore()) is None
    True
    """
    cls = type(store)
    replaced = any(name in getattr(store, "__dict__", {}) for name in ("append", "read"))
    if not replaced and all(callable(getattr(cls, name, None))
                            for name in ("append_async", "read_async")):
        return store  # type: ignore[return-value]
    return None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's row in the store's registry, written by its heartbeat (:meth:`WorkQueue.beat`).

    Times are the worker's clock; whether a worker is alive is the reader's call (``seen_at``
    against its own clock and the beat interval)."""

    name: str  # the owner name in its leases
    host: str
    pid: int
    queues: tuple[str, ...]  # the queue names it serves
    concurrency: int  # runs at once
    started_at: float
    seen_at: float  # its last beat
    stopping: bool = False  # got SIGTERM, draining


@runtime_checkable
class WorkQueue(Protocol):
    """The work queue a store offers workers: runs that need one, and who the workers are.

    A run *needs a worker* at ``now`` when nobody holds a live lease on it and it is
    ``queued`` with ``wake_at <= now``; ``waiting`` with ``wake_at`` set and ``<= now`` (a
    resolution arrived, a deadline or a parked timer is due); or ``running`` (its owner died or
    let go without the run finishing or waiting). :func:`claimable` is that rule as a function.
    """

    def claim(self, owner: str, *, now: float, ttl_s: float,
              queues: Sequence[str] | None = None, limit: int = 1) -> list[Lease]:
        """Take up to ``limit`` runs that need a worker — runs under way before queued ones,
        then oldest due first (see :func:`claim_order`) — each as :meth:`Store.acquire`
        would (epoch bumped, lease until ``now + ttl_s``) and atomically, so two claimers
        never get the same run. ``queues`` None serves every queue. Returns [] when nothing
        is due."""
        ...

    def next_wake(self, *, queues: Sequence[str] | None = None) -> float | None:
        """The earliest time a run of ``queues`` is or becomes due (see :func:`wake_time`:
        a pending wake_at, the expiry of the lease that holds it), or None when nothing is
        pending: a worker with nothing to claim may sleep until then. A time already past
        means a run due now that someone else just claimed or holds."""
        ...

    def beat(self, worker: WorkerInfo) -> None:
        """Insert or update the worker's row (by name)."""
        ...

    def forget(self, name: str) -> None:
        """Delete the worker's row (a graceful exit)."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker, by name."""
        ...

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` real seconds for a signal that work may be due; True if one
        came. Stores without notifications return False at once (the worker polls)."""
        ...


def wake_after(status: RunStatus | None, wake_at: float | None,
               events: Sequence[Event]) -> float | None:
    """A run's ``wake_at`` once ``events`` are appended to a run in ``status`` whose ``wake_at``
    is ``wake_at`` (``None, None`` for a new run). The rules:

    * run_started: its time when enqueued (due at once), None when started in place;
    * wait_started, parked timer_started: the deadline or wake time (None for a wait without a
      deadline), or the earlier of it and the current one while the run already waits;
    * wait_resolved of a waiting run: its time (the run can go on now);
    * run_waiting (a woken run that had nothing to do waits again): the time it names;
    * timer_fired, wait_expired, run_dequeued, run_finished: None (a worker is on it or it is
      over).

    >>> from tether.events import RunStarted, WaitStarted
    >>> wake_after(None, None, [RunStarted(seq=1, at=5.0, workflow="w", seed=0, queue="q")])
    5.0
    >>> wake_after(RunStatus.RUNNING, None, [WaitStarted(seq=4, at=6.0, pos=2, key="k",
    ...                                                  deadline=66.0)])
    66.0
    """
    for event in events:
        keep, due = _wake_rule(status, event)
        wake_at = _earlier(wake_at, due) if keep else due
        status = status_after(status, event)
    return wake_at


def wake_transform(status: RunStatus | None,
                   events: Sequence[Event]) -> tuple[bool, float | None]:
    """:func:`wake_after` for a run in ``status`` as a function of its current ``wake_at``
    ``w``: ``(keep, due)`` means the new ``wake_at`` is the earlier of ``w`` and ``due`` when
    ``keep`` (``None`` counting as never), else ``due``. Lets a store that cannot read the row
    first (one-statement appends) compute it in SQL: ``CASE WHEN keep THEN LEAST(w, due) ELSE
    due END``.

    >>> from tether.events import WaitResolved
    >>> wake_transform(RunStatus.WAITING, [WaitResolved(seq=5, at=9.0, key="k")])
    (False, 9.0)
    >>> wake_transform(RunStatus.RUNNING, [WaitResolved(seq=5, at=9.0, key="k")])
    (True, None)
    """
    keep_all, due_all = True, None
    for event in events:
        keep, due = _wake_rule(status, event)
        keep_all, due_all = (keep_all, _earlier(due_all, due)) if keep else (False, due)
        status = status_after(status, event)
    return keep_all, due_all


def _earlier(a: float | None, b: float | None) -> float | None:
    """The earlier of two times, ``None`` meaning never."""
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


def _wake_rule(status: RunStatus | None, event: Event) -> tuple[bool, float | None]:
    """How ``event`` appended to a run in ``status`` changes its ``wake_at`` ``w``: ``(True,
    t)`` makes it the earlier of ``w`` and ``t``, ``(False, t)`` makes it ``t``. (True, None)
    leaves it as it is."""
    if isinstance(event, RunStarted):
        return (False, None if event.queue is None else event.at)
    if isinstance(event, WaitStarted | TimerStarted):
        if isinstance(event, TimerStarted) and not event.parked:
            return (True, None)
        due = event.deadline if isinstance(event, WaitStarted) else event.wake_at
        # A run already waiting keeps an earlier pending time: whichever comes first is when
        # a worker must look at it.
        return (status is RunStatus.WAITING, due)
    if isinstance(event, WaitResolved):
        return (False, event.at) if status is RunStatus.WAITING else (True, None)
    if isinstance(event, RunWaiting):  # the run says when it is next due
        return (False, event.wake_at)
    if isinstance(event, TimerFired | WaitExpired | RunDequeued | RunFinished):
        return (False, None)
    return (True, None)


def touches_index(event: Event) -> bool:
    """Whether appending ``event`` may change its run's index row (status or ``wake_at``):
    stores skip the row update for the events that cannot."""
    if event.kind not in STATUS_KINDS:  # most appends (steps, results): a set lookup, no more
        return False
    return status_change(event) is not None or isinstance(event, WaitResolved)


def claimable(info: RunInfo, *, now: float, queues: Sequence[str] | None = None) -> bool:
    """Whether ``info``'s run needs a worker at ``now`` (the :class:`WorkQueue` rule)."""
    if info.leased(at=now) or (queues is not None and info.queue not in queues):
        return False
    if info.status is RunStatus.RUNNING:
        return True
    if info.status in (RunStatus.QUEUED, RunStatus.WAITING):
        return info.wake_at is not None and info.wake_at <= now
    return False


def claim_order(info: RunInfo) -> tuple[int, float, float, str]:
    """The order claims take due runs in: runs already under way (running, or waiting and
    due) before queued runs that have not started, so a backlog of new work never holds up a
    takeover or a fired timer; within each, oldest due first — by ``wake_at`` for queued and
    waiting runs, and for running ones by ``wake_at``, else the lease's expiry, else the last
    status change; then by creation and run id."""
    due = info.wake_at
    if due is None and info.status is RunStatus.RUNNING:
        due = info.lease_expires_at if info.lease_expires_at is not None else info.updated_at
    queued = 1 if info.status is RunStatus.QUEUED else 0
    return (queued, due if due is not None else float("inf"), info.created_at, info.run_id)


def wake_time(info: RunInfo) -> float | None:
    """When a run nobody can claim now becomes due (for :meth:`WorkQueue.next_wake`): a queued
    or waiting run at its ``wake_at`` or, while a lease holds it, at the later of that and the
    lease's expiry; a running run whose lease holds it when the lease expires (a takeover).
    None for a run nothing will make due (finished, waiting without a deadline)."""
    expiry = info.lease_expires_at if info.owner is not None else None
    if info.status in (RunStatus.QUEUED, RunStatus.WAITING) and info.wake_at is not None:
        return info.wake_at if expiry is None else max(info.wake_at, expiry)
    if info.status is RunStatus.RUNNING:
        return expiry if expiry is not None else info.updated_at
    return None


def check_claim_args(owner: str, now: float, ttl_s: float, limit: int,
                     queues: Sequence[str] | None) -> None:
    """Validate the arguments of claim before any store touches its storage."""
    check_lease_args(owner, now, ttl_s)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UsageError(f"claim needs a limit of 0 or more runs, got {limit!r}")
    if isinstance(queues, str):
        raise UsageError(f"claim takes a sequence of queue names, got the string {queues!r}; "
                         f"write queues=[{queues!r}]")


def take(info: RunInfo, owner: str, *, now: float, ttl_s: float) -> tuple[RunInfo, Lease]:
    """``info`` leased to ``owner`` as acquire would: epoch bumped, until ``now + ttl_s``."""
    lease = Lease(info.run_id, owner, info.epoch + 1, now + ttl_s)
    return replace(info, owner=owner, epoch=lease.epoch, lease_expires_at=lease.expires_at), lease


def check_batch(run_id: str, events: Sequence[Event], expected_last_seq: int) -> None:
    """Validate a batch before any store touches its storage."""
    if not events:
        raise UsageError("append needs at least one event")
    for offset, event in enumerate(events):
        if event.seq != expected_last_seq + 1 + offset:
            raise UsageError(
                f"run {run_id!r}: event {offset} of the batch has seq {event.seq}, expected "
                f"{expected_last_seq + 1 + offset}; seqs must follow the last stored one"
            )
    if not run_id or "\x00" in run_id:
        raise UsageError(f"run id {run_id!r} must be a non-empty string without NUL characters")
    if expected_last_seq == 0 and not isinstance(events[0], RunStarted):
        raise UsageError(f"run {run_id!r}: a journal must begin with run_started")
    queue = events[0].queue if isinstance(events[0], RunStarted) else None
    if queue is not None and (not queue or "\x00" in queue):
        raise UsageError(f"run {run_id!r}: queue name {queue!r} must be a non-empty string "
                         "without NUL characters")


def queue_of(started: RunStarted) -> str:
    """The queue a run is on: the one it was enqueued on, else :data:`DEFAULT_QUEUE`."""
    return DEFAULT_QUEUE if started.queue is None else started.queue


def check_lease_args(owner: str, now: float, ttl_s: float) -> None:
    """Validate the arguments of acquire/renew before any store touches its storage."""
    if not owner or "\x00" in owner:
        raise UsageError(f"lease owner {owner!r} must be a non-empty string without NUL")
    if not ttl_s > 0 or ttl_s != ttl_s or now != now:
        raise UsageError(f"a lease needs a positive ttl_s and a time, got ttl_s={ttl_s!r} "
                         f"now={now!r}")


def only_resolutions(events: Sequence[Event]) -> bool:
    """Whether an unfenced batch may go to a run that has an owner: resolutions only."""
    return all(isinstance(event, WaitResolved) for event in events)


def run_owned(run_id: str, owner: str, expires_at: float, epoch: int) -> RunOwned:
    """The error for acquiring a run another worker holds, with the facts and the fix."""
    return RunOwned(
        f"run {run_id!r} is owned by worker {owner!r} (lease epoch {epoch}) until "
        f"{expires_at:.3f} on the caller's clock; leave it to that worker, or take it over "
        "after the lease expires (recover() does)",
        run_id=run_id, owner=owner, expires_at=expires_at, epoch=epoch,
    )


def lease_lost(run_id: str, lease: Lease | None, holder: str | None,
               holder_epoch: int) -> LeaseLost:
    """The error for a fenced-off append or renewal (``lease`` None: an unfenced append of
    more than resolutions to a run that has an owner)."""
    now_held = (f"worker {holder!r} holds it under epoch {holder_epoch}" if holder
                else f"nobody holds it now (epoch {holder_epoch})")
    if lease is None:
        return LeaseLost(
            f"run {run_id!r}: an append without a lease may only deliver resolutions while a "
            f"worker owns the run, and {now_held}; append through the owner, or acquire the "
            "run's lease first",
            run_id=run_id, holder=holder or "", holder_epoch=holder_epoch,
        )
    return LeaseLost(
        f"run {run_id!r}: worker {lease.owner!r} lost its lease (epoch {lease.epoch}) and "
        f"{now_held}; nothing was stored, and this worker must stop executing the run",
        run_id=run_id, owner=lease.owner, epoch=lease.epoch, holder=holder or "",
        holder_epoch=holder_epoch,
    )


def next_status(current: RunStatus | None, events: Sequence[Event]) -> RunStatus:
    """The status a run has once ``events`` are appended."""
    status = current
    for event in events:
        status = status_after(status, event)
    if status is None:  # pragma: no cover - check_batch guarantees a run_started first
        raise UsageError("a run has no status before run_started")
    return status


def advance(current: RunStatus | None, events: Sequence[Event]) -> tuple[RunStatus, float | None]:
    """The status a run has once ``events`` are appended, and the clock time of the last event
    that changed it (``None`` when none did): what a store writes to ``status``/``updated_at``."""
    status, changed_at = current, None
    for event in events:
        change = status_change(event)
        if change is not None and change[1] in (None, status):
            status, changed_at = change[0], event.at
    if status is None:
        raise UsageError("a run has no status before run_started")
    return status, changed_at


def conflict(run_id: str, expected_last_seq: int, actual: int | None) -> ConcurrencyConflict:
    """The error for a lost race, with the facts."""
    found = "no such run" if actual is None else f"its last seq is {actual}"
    return ConcurrencyConflict(
        f"run {run_id!r}: expected last seq {expected_last_seq} but {found}; another writer "
        "appended first and owns the run now",
        run_id=run_id,
        expected_seq=expected_last_seq,
    )


def status_filter(status: RunStatus | Sequence[RunStatus] | None) -> set[RunStatus] | None:
    """Normalize a ``list_runs`` status argument to a set (``None`` means every status)."""
    if status is None:
        return None
    if isinstance(status, RunStatus | str):
        return {RunStatus(status)}
    return {RunStatus(s) for s in status}


def decode_rows(
    where: str, run_id: str, rows: Sequence[Sequence[object]], after_seq: int, last_seq: int
) -> list[Event]:
    """Decode stored rows, insisting on seqs after_seq+1 … last_seq with none missing."""
    events: list[Event] = []
    expected = after_seq + 1
    for seq, body, crc in rows:
        if seq != expected:
            raise CorruptJournal(
                f"{where}: run {run_id!r} is missing event seq {expected} (next stored is {seq})"
            )
        events.append(decode(str(body), run_id=run_id, seq=int(seq), crc=int(crc)))  # type: ignore[call-overload]
        expected += 1
    if expected - 1 < last_seq:
        raise CorruptJournal(
            f"{where}: run {run_id!r} index says the journal reached seq {last_seq} but events "
            f"stop at "
            f"{expected - 1}; events were lost"
        )
    return events
