"""An in-memory store: for simulation and tests. Nothing survives the process.

It is also a :class:`~tether.store.base.WorkQueue` (claims under its lock; no notifications:
:meth:`MemoryStore.wait_for_work` returns at once and workers poll)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from tether.errors import UsageError
from tether.events import Event, RunStarted, RunStatus
from tether.store.base import (
    Lease,
    RunInfo,
    WorkerInfo,
    advance,
    check_batch,
    check_claim_args,
    check_lease_args,
    claim_order,
    claimable,
    conflict,
    lease_lost,
    only_resolutions,
    queue_of,
    run_owned,
    status_filter,
    take,
    wake_after,
    wake_time,
)

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
        self._workers: dict[str, WorkerInfo] = {}
        self._lock = threading.Lock()

    def append(
        self,
        run_id: str,
        events: Sequence[Event],
        *,
        expected_last_seq: int,
        sync: bool = False,
        lease: Lease | None = None,
    ) -> None:
        check_batch(run_id, events, expected_last_seq)
        with self._lock:
            info = self._runs.get(run_id)
            actual = info.last_seq if info is not None else None
            if info is not None and expected_last_seq > 0:
                # The fence first: a worker that lost the run hears that, not a seq conflict.
                _check_fence(info, events, lease)
            if (actual or 0) != expected_last_seq or (expected_last_seq == 0 and info is not None):
                raise conflict(run_id, expected_last_seq, actual)
            status_before = None if info is None else info.status
            wake_before = None if info is None else info.wake_at
            if info is None:
                first = events[0]
                assert isinstance(first, RunStarted)
                info = RunInfo(run_id, first.workflow, RunStatus.RUNNING, 0, first.at, first.at,
                               queue=queue_of(first))
                if lease is not None:
                    info = dataclasses.replace(info, owner=lease.owner, epoch=lease.epoch,
                                               lease_expires_at=lease.expires_at)
                self._events[run_id] = []
            self._events[run_id].extend(events)
            status, changed_at = advance(info.status, events)
            self._runs[run_id] = dataclasses.replace(
                info,
                status=status,
                last_seq=events[-1].seq,
                updated_at=info.updated_at if changed_at is None else changed_at,
                wake_at=wake_after(status_before, wake_before, events),
            )

    def acquire(self, run_id: str, owner: str, *, now: float, ttl_s: float) -> Lease:
        check_lease_args(owner, now, ttl_s)
        with self._lock:
            info = self._runs.get(run_id)
            if info is None:
                raise UsageError(f"no run {run_id!r} in the store; nothing to acquire")
            held = info.lease
            if held is not None and held.owner != owner and held.live(at=now):
                raise run_owned(run_id, held.owner, held.expires_at, held.epoch)
            lease = Lease(run_id, owner, info.epoch + 1, now + ttl_s)
            self._hold(info, lease)
            return lease

    def renew(self, lease: Lease, *, now: float, ttl_s: float) -> Lease:
        check_lease_args(lease.owner, now, ttl_s)
        with self._lock:
            info = self._runs.get(lease.run_id)
            if info is None or (info.owner, info.epoch) != (lease.owner, lease.epoch):
                raise lease_lost(lease.run_id, lease, info.owner if info else None,
                                 info.epoch if info else 0)
            renewed = dataclasses.replace(lease, expires_at=now + ttl_s)
            self._hold(info, renewed)
            return renewed

    def release(self, lease: Lease) -> bool:
        with self._lock:
            info = self._runs.get(lease.run_id)
            if info is None or (info.owner, info.epoch) != (lease.owner, lease.epoch):
                return False
            self._runs[lease.run_id] = dataclasses.replace(info, owner=None,
                                                           lease_expires_at=None)
            return True

    def _hold(self, info: RunInfo, lease: Lease) -> None:
        self._runs[info.run_id] = dataclasses.replace(
            info, owner=lease.owner, epoch=lease.epoch, lease_expires_at=lease.expires_at)

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

    # -- the work queue -------------------------------------------------------------------

    def claim(self, owner: str, *, now: float, ttl_s: float,
              queues: Sequence[str] | None = None, limit: int = 1) -> list[Lease]:
        check_claim_args(owner, now, ttl_s, limit, queues)
        with self._lock:
            due = sorted((r for r in self._runs.values()
                          if claimable(r, now=now, queues=queues)), key=claim_order)
            leases = []
            for info in due[:limit]:
                self._runs[info.run_id], lease = take(info, owner, now=now, ttl_s=ttl_s)
                leases.append(lease)
            return leases

    def next_wake(self, *, queues: Sequence[str] | None = None) -> float | None:
        with self._lock:
            times = [t for r in self._runs.values()
                     if (queues is None or r.queue in queues)
                     and (t := wake_time(r)) is not None]
        return min(times, default=None)

    def beat(self, worker: WorkerInfo) -> None:
        with self._lock:
            self._workers[worker.name] = worker

    def forget(self, name: str) -> None:
        with self._lock:
            self._workers.pop(name, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return [self._workers[name] for name in sorted(self._workers)]

    def wait_for_work(self, timeout_s: float) -> bool:
        return False


def _check_fence(info: RunInfo, events: Sequence[Event], lease: Lease | None) -> None:
    """Refuse an append the run's lease does not allow (see :mod:`tether.store.base`)."""
    if lease is None:
        if info.owner is not None and not only_resolutions(events):
            raise lease_lost(info.run_id, None, info.owner, info.epoch)
    elif (info.owner, info.epoch) != (lease.owner, lease.epoch):
        raise lease_lost(info.run_id, lease, info.owner, info.epoch)
