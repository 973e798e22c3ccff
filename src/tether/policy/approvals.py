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

Approvals are a durable wait, so the runtime owns them (:mod:`tether.runtime.approvals` reads
the requests, ``Runtime.approve`` / ``deny`` decide them); this class is a face over that for
callers that hold a store rather than a runtime (the command line, ``tether view``).

>>> from tether import MemoryStore
>>> Approvals(MemoryStore()).pending()
[]
"""

from __future__ import annotations

from tether.clock import Clock, SystemClock
from tether.runtime.approvals import APPROVAL_PREFIX, PendingApproval, pending_approvals
from tether.runtime.runtime import Runtime
from tether.store.base import Store

__all__ = ["APPROVAL_PREFIX", "Approvals", "PendingApproval"]


class Approvals:
    """Approvals in one store."""

    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock if clock is not None else SystemClock()

    def pending(self, run_id: str | None = None) -> list[PendingApproval]:
        """Every unresolved approval, oldest first (of one run, if given)."""
        return pending_approvals(self.store, run_id)

    def approve(self, run_id: str, *, by: str, role: str | None = None, note: str = "",
                step: int | None = None) -> PendingApproval:
        """Approve the held call of ``run_id`` (the one at ``step`` if several are held)."""
        return Runtime(self.store, clock=self.clock).approve(run_id, by=by, role=role,
                                                             note=note, step=step)

    def deny(self, run_id: str, *, by: str, role: str | None = None, note: str = "",
             step: int | None = None) -> PendingApproval:
        """Refuse the held call; the model is told who refused and why."""
        return Runtime(self.store, clock=self.clock).deny(run_id, by=by, role=role,
                                                          note=note, step=step)
