"""An in-memory store: for simulation and tests. Nothing survives the process."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tether.events import Event, RunStarted, RunStatus
from tether.store.base import RunInfo, advance, check_batch, conflict, status_filter

__all__ = ["MemoryStore"]


class MemoryStore:
    """Journals kept in a dict, guarded by a lock so threads may share one store.

    >>> store = MemoryStore()
    >>> store.list_runs()
    []
    """

    def __init__(self) -> None:
        self._events: dict[str, list[Event]] = {}
        self._runs: dict[str, RunInfo] = {}
        self._lock = threading.Lock()

    def append(
        self, run_id: str, events: Sequence[Event], *, expected_last_seq: int, sync: bool = False
    ) -> None:
        check_batch(run_id, events, expected_last_seq)
        with self._lock:
            info = self._runs.get(run_id)
            actual = info.last_seq if info is not None else None
            if (actual or 0) != expected_last_seq or (expected_last_seq == 0 and info is not None):
                raise conflict(run_id, expected_last_seq, actual)
            if info is None:
                first = events[0]
                assert isinstance(first, RunStarted)
                info = RunInfo(run_id, first.workflow, RunStatus.RUNNING, 0, first.at, first.at)
                self._events[run_id] = []
            self._events[run_id].extend(events)
            status, changed_at = advance(info.status, events)
            self._runs[run_id] = RunInfo(
                run_id,
                info.workflow,
                status,
                events[-1].seq,
                info.created_at,
                info.updated_at if changed_at is None else changed_at,
            )

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        with self._lock:
            return list(self._events.get(run_id, ())[after_seq:])

    def get_run(self, run_id: str) -> RunInfo | None:
        with self._lock:
            return self._runs.get(run_id)

    def list_runs(
        self, *, status: RunStatus | Sequence[RunStatus] | None = None, limit: int = 1000
    ) -> list[RunInfo]:
        wanted = status_filter(status)
        with self._lock:
            runs = [r for r in self._runs.values() if wanted is None or r.status in wanted]
        runs.sort(key=lambda r: (r.created_at, r.run_id))
        return runs[:limit]

    def close(self) -> None:
        return None

