"""Durable approvals: list the calls waiting for a human, and decide them from any process.

A call held by policy waits on ``approval:{position}`` with the request (tool, arguments,
reason, role, tainting sources) journaled as the wait's data. Deciding appends the resolution
(who, with which role, when, a note) to the run's journal; the run continues when a worker
resumes it (``Runtime.resume`` / ``recover``), on any machine that has the agent's code.

A decision is a compare-and-set (see ``Runtime.resolve``): the first decision on a request wins
and a later one — even racing from another process — raises
:class:`~tether.errors.AlreadyDecided` naming it (who, approved or denied, when). An approval
lacking the role the request requires is refused when it is made, and the request stays
pending; a denial needs no role, since refusing a call is always the safe direction. A decision
after the request's deadline (``approval_timeout_s``) is refused too, whether or not a worker
has journaled the expiry yet. Both checks live in ``Runtime.resolve``, the one path every
decision takes, so no caller can go around them.

>>> from tether import MemoryStore
>>> Approvals(MemoryStore()).pending()
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.clock import Clock, SystemClock
from tether.errors import AlreadyDecided, UsageError
from tether.events import Event, RunStatus, WaitExpired, WaitResolved, WaitStarted
from tether.store.base import Store

__all__ = ["APPROVAL_PREFIX", "Approvals", "PendingApproval"]

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


class Approvals:
    """Approvals in one store."""

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock if clock is not None else SystemClock()

    def pending(self, run_id: str | None = None) -> list[PendingApproval]:
        """Every unresolved approval, oldest first (of one run, if given)."""
        # Read from the journal, not the status: a run resolved on another key may show as
        # running while it still holds a call for approval.
        open_statuses = (RunStatus.WAITING, RunStatus.RUNNING)
        if run_id is not None:
            infos = [i for i in [self.store.get_run(run_id)] if i is not None]
        else:
            infos = self.store.list_runs(status=list(open_statuses), limit=100_000)
        found = []
        for info in infos:
            if info.status not in open_statuses:
                continue
            events = self.store.read(info.run_id)
            closed = {e.key for e in events if isinstance(e, WaitResolved | WaitExpired)}
            for e in events:
                if (isinstance(e, WaitStarted) and e.key.startswith(APPROVAL_PREFIX)
                        and e.key not in closed):
                    found.append(_pending(info.run_id, e))
        return sorted(found, key=lambda p: (p.requested_at, p.run_id, p.step))

    def approve(self, run_id: str, *, by: str, role: str | None = None, note: str = "",
                step: int | None = None) -> PendingApproval:
        """Approve the held call of ``run_id`` (the one at ``step`` if several are held)."""
        return self._decide(run_id, True, by=by, role=role, note=note, step=step)

    def deny(self, run_id: str, *, by: str, role: str | None = None, note: str = "",
             step: int | None = None) -> PendingApproval:
        """Refuse the held call; the model is told who refused and why."""
        return self._decide(run_id, False, by=by, role=role, note=note, step=step)

    def _decide(self, run_id: str, approved: bool, *, by: str, role: str | None, note: str,
                step: int | None) -> PendingApproval:
        if not by:
            raise UsageError("an approval decision needs the name of who decides (by=...)")
        info = self.store.get_run(run_id)
        if info is None:
            raise UsageError(f"no run {run_id!r} in the store")
        if info.status.finished:
            raise UsageError(f"run {run_id!r} is already {info.status.value}; nothing to decide")
        events = self.store.read(run_id)
        waiting = [p for p in _open_requests(run_id, events)
                   if step is None or p.step == step]
        if not waiting:
            decided = _decided(events, step)
            if decided is not None:
                raise _already(run_id, decided)
            where = f" at step {step}" if step is not None else ""
            raise UsageError(f"run {run_id!r} has no approval waiting{where}")
        if len(waiting) > 1:
            steps = ", ".join(str(p.step) for p in waiting)
            raise UsageError(f"run {run_id!r} waits for several approvals (steps {steps}); "
                             "say which with --step")
        target = waiting[0]
        from tether.runtime.runtime import Runtime

        value = {"approved": approved, "role": role, "note": note,
                 "decided_at": self.clock.now()}
        try:
            Runtime(self.store, clock=self.clock).resolve(run_id, target.key, value, by=by,
                                                          note=note)
        except AlreadyDecided as exc:  # another decision won the race: name it
            first = next(e for e in self.store.read(run_id)
                         if isinstance(e, WaitResolved) and e.key == target.key)
            raise _already(run_id, first) from exc
        return target


def _open_requests(run_id: str, events: list[Event]) -> list[PendingApproval]:
    """The approval requests of one journal that are neither decided nor expired."""
    closed = {e.key for e in events if isinstance(e, WaitResolved | WaitExpired)}
    return [_pending(run_id, e) for e in events if isinstance(e, WaitStarted)
            and e.key.startswith(APPROVAL_PREFIX) and e.key not in closed]


def _decided(events: list[Event], step: int | None) -> WaitResolved | None:
    """The latest decision on an approval request (the one at ``step``, if given)."""
    requested = {e.key for e in events if isinstance(e, WaitStarted)
                 and e.key.startswith(APPROVAL_PREFIX) and (step is None or e.pos == step)}
    decided = [e for e in events if isinstance(e, WaitResolved) and e.key in requested]
    return decided[-1] if decided else None


def _already(run_id: str, first: WaitResolved) -> AlreadyDecided:
    """AlreadyDecided naming the first decision as a person reads it: who, which, when."""
    from tether.runtime.journal import instant

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
