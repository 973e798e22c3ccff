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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    Event,
    RunStarted,
    RunStatus,
    WaitResolved,
    decode,
    status_after,
    status_change,
)

__all__ = [
    "Durability",
    "Lease",
    "RunInfo",
    "Store",
    "advance",
    "check_batch",
    "check_lease_args",
    "conflict",
    "decode_rows",
    "lease_lost",
    "next_status",
    "only_resolutions",
    "run_owned",
    "status_filter",
]


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
    run); ``epoch`` counts its acquisitions (0 for a run never leased).
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
