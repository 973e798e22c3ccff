"""The store contract: how journals are written and read.

A store keeps, per run, an append-only list of events numbered 1, 2, 3 … and a small index row
(workflow, status, last seq) so runs can be listed by status. The contract is deliberately
small; the conformance kit in :mod:`tether.store.conformance` holds every implementation to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from tether.errors import ConcurrencyConflict, CorruptJournal, UsageError
from tether.events import Event, RunStarted, RunStatus, decode, status_after, status_change

__all__ = [
    "Durability",
    "RunInfo",
    "Store",
    "advance",
    "check_batch",
    "conflict",
    "decode_rows",
    "next_status",
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
class RunInfo:
    """The index row of one run.

    ``created_at`` is the clock time of the run's ``run_started`` event; ``updated_at`` the time
    of the event that last changed its status (started, suspended, resumed, finished …), so
    listing by ``updated_at`` answers "what changed lately" without touching every append.
    """

    run_id: str
    workflow: str
    status: RunStatus
    last_seq: int
    created_at: float
    updated_at: float


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
        self, run_id: str, events: Sequence[Event], *, expected_last_seq: int, sync: bool = False
    ) -> None: ...

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
