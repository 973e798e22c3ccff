"""Approval requests as the journal holds them: a durable wait on ``approval:{position}``.

A call held by policy waits on ``approval:{position}`` with the request (tool, arguments,
reason, role, tainting sources) journaled as the wait's data. This module reads those requests
out of journals; deciding one is a resolution of its wait (``Runtime.approve`` / ``deny``, both
through ``Runtime.resolve``). It sits in the runtime, below policy: the runtime owns the wait,
and :mod:`tether.policy.approvals` is a face over it.

>>> from tether.store.memory import MemoryStore
>>> pending_approvals(MemoryStore())
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.errors import AlreadyDecided, UsageError
from tether.events import Event, RunStatus, WaitExpired, WaitResolved, WaitStarted
from tether.runtime.journal import instant
from tether.store.base import Store

__all__ = ["APPROVAL_PREFIX", "PendingApproval", "Resolve", "already_decided", "decide",
           "latest_decision", "open_requests", "pending_approvals"]

APPROVAL_PREFIX = "approval:"


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A call waiting for a decision."""

    run_id: str
    step: int
    key: str
    tool: str
    args: dict[str, Any]
    reason: str
    role: str | None
    sources: tuple[str, ...]
    principal: str
    requested_at: float
    deadline: float | None

    def as_data(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "step": self.step, "tool": self.tool, "args": self.args,
                "reason": self.reason, "role": self.role, "sources": list(self.sources),
                "principal": self.principal, "requested_at": self.requested_at,
                "deadline": self.deadline}


def pending_approvals(store: Store, run_id: str | None = None) -> list[PendingApproval]:
    """Every unresolved approval in ``store``, oldest first (of one run, if given)."""
    # Read from the journal, not the status: a run resolved on another key may show as
    # running while it still holds a call for approval.
    open_statuses = (RunStatus.WAITING, RunStatus.RUNNING)
    if run_id is not None:
        infos = [i for i in [store.get_run(run_id)] if i is not None]
    else:
        infos = store.list_runs(status=list(open_statuses), limit=100_000)
    found = []
    for info in infos:
        if info.status in open_statuses:
            found += open_requests(info.run_id, store.read(info.run_id))
    return sorted(found, key=lambda p: (p.requested_at, p.run_id, p.step))


class Resolve(Protocol):
    """What delivers a decision: ``Runtime.resolve``, the one path every resolution takes."""

    def __call__(self, run_id: str, key: str, value: Any = None, *, by: str = "",
                 note: str = "") -> WaitResolved: ...


def decide(store: Store, resolve: Resolve, run_id: str, approved: bool, *, by: str,
           role: str | None, note: str, step: int | None, now: float) -> PendingApproval:
    """Decide the approval ``run_id`` waits for (the one at ``step`` if several are held)
    through ``resolve``; returns the request decided. A decision that loses the race to
    another raises :class:`~tether.errors.AlreadyDecided` naming the first one."""
    if not by:
        raise UsageError("an approval decision needs the name of who decides (by=...)")
    info = store.get_run(run_id)
    if info is None:
        raise UsageError(f"no run {run_id!r} in the store")
    if info.status.finished:
        raise UsageError(f"run {run_id!r} is already {info.status.value}; nothing to decide")
    events = store.read(run_id)
    waiting = [p for p in open_requests(run_id, events) if step is None or p.step == step]
    if not waiting:
        decided = latest_decision(events, step)
        if decided is not None:
            raise already_decided(run_id, decided)
        where = f" at step {step}" if step is not None else ""
        raise UsageError(f"run {run_id!r} has no approval waiting{where}")
    if len(waiting) > 1:
        steps = ", ".join(str(p.step) for p in waiting)
        raise UsageError(f"run {run_id!r} waits for several approvals (steps {steps}); "
                         "say which with --step")
    target = waiting[0]
    value = {"approved": approved, "role": role, "note": note, "decided_at": now}
    try:
        resolve(run_id, target.key, value, by=by, note=note)
    except AlreadyDecided as exc:  # another decision won the race: name it
        first = next(e for e in store.read(run_id)
                     if isinstance(e, WaitResolved) and e.key == target.key)
        raise already_decided(run_id, first) from exc
    return target


def open_requests(run_id: str, events: Sequence[Event]) -> list[PendingApproval]:
    """The approval requests of one journal that are neither decided nor expired."""
    closed = {e.key for e in events if isinstance(e, WaitResolved | WaitExpired)}
    return [_pending(run_id, e) for e in events if isinstance(e, WaitStarted)
            and e.key.startswith(APPROVAL_PREFIX) and e.key not in closed]


def latest_decision(events: Sequence[Event], step: int | None) -> WaitResolved | None:
    """The latest decision on an approval request (the one at ``step``, if given)."""
    requested = {e.key for e in events if isinstance(e, WaitStarted)
                 and e.key.startswith(APPROVAL_PREFIX) and (step is None or e.pos == step)}
    decided = [e for e in events if isinstance(e, WaitResolved) and e.key in requested]
    return decided[-1] if decided else None


def already_decided(run_id: str, first: WaitResolved) -> AlreadyDecided:
    """AlreadyDecided naming the first decision as a person reads it: who, which, when."""
    value = first.value if isinstance(first.value, dict) else {"approved": bool(first.value)}
    verb = "approved" if value.get("approved") else "denied"
    role = f" as {value['role']!r}" if value.get("role") else ""
    note = f" ({first.note})" if first.note else ""
    return AlreadyDecided(
        f"run {run_id!r}: the request at step {first.key.removeprefix(APPROVAL_PREFIX)} was "
        f"already {verb} by {first.by or 'someone'}{role}{note} at {instant(first.at)}; the "
        "first decision stands and this one was not recorded",
        run_id=run_id, key=first.key, by=first.by, at=first.at, value=first.value,
        note=first.note)


def _pending(run_id: str, event: WaitStarted) -> PendingApproval:
    data = event.data
    return PendingApproval(
        run_id=run_id, step=event.pos, key=event.key, tool=str(data.get("tool", "")),
        args=dict(data.get("args") or {}), reason=str(data.get("reason", "")),
        role=data.get("role"), sources=tuple(data.get("sources") or ()),
        principal=str(data.get("principal", "")), requested_at=event.at,
        deadline=event.deadline)
