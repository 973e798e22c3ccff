"""A session's state: the fold of its event stream (see :mod:`tether.sessions.session`).

The stream of session ``s`` is the journal ``session:s`` on the ordinary store: ``run_started``
(workflow ``tether.session``) and ``run_finished`` at once, so recovery never resumes it and run
listings skip it, then ``session_created`` and one event per change. The last seq of that journal
is the session's **revision**.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from tether.errors import UsageError
from tether.events import (
    Event,
    ResourceVersion,
    RunFinished,
    RunStarted,
    SessionClosed,
    SessionCreated,
    SessionRestored,
    TriggerFired,
    TurnFinished,
    TurnStarted,
    VariableSet,
)
from tether.models.base import Message

__all__ = ["SESSION_WORKFLOW", "Resource", "SessionState", "SessionStatus", "Turn", "fold",
           "stream_id", "turn_run_id"]

#: The workflow name of session streams (``tether runs list`` hides them).
SESSION_WORKFLOW = "tether.session"


def stream_id(session_id: str) -> str:
    """The run id under which session ``session_id`` is stored."""
    return f"session:{session_id}"


def turn_run_id(session_id: str, number: int) -> str:
    """The run id of turn ``number`` of session ``session_id``: derived, never chosen, so a
    turn recorded before a crash is resumed under the same id rather than started again."""
    return f"{stream_id(session_id)}:turn:{number}"


class SessionStatus(StrEnum):
    """Where a session stands: ``active``, ``expired`` (its TTL passed since its last turn, on
    the injected clock) or ``closed``."""

    ACTIVE = "active"
    EXPIRED = "expired"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn: its number, the run that carries it, what started it and, once it finished,
    the run's final status (``None`` while it is under way)."""

    number: int
    run_id: str
    trigger: str
    input: Any
    started_at: float
    status: str | None = None
    principal: str = "anonymous"
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resource:
    """The latest version of a session's named document and its provenance."""

    name: str
    version: int
    content: Any
    provenance: dict[str, Any]


@dataclass(slots=True)
class SessionState:
    """Everything the stream of one session says, as of ``revision``."""

    session_id: str
    agent: str = ""
    ttl_s: float | None = None
    created_at: float = 0.0
    revision: int = 0
    variables: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    #: The client's restored history (demoted) and how many turns came before the restore.
    restored: list[Message] = field(default_factory=list)
    turns_before_restore: int = 0
    restored_seq: int = 0
    closed: bool = False
    last_activity_at: float = 0.0

    @property
    def exists(self) -> bool:
        return self.revision > 0

    @property
    def pending(self) -> Turn | None:
        """The turn that started and has not finished, if any."""
        last = self.turns[-1] if self.turns else None
        return last if last is not None and last.status is None else None

    def status(self, now: float) -> SessionStatus:
        """The session's status at clock time ``now``."""
        if self.closed:
            return SessionStatus.CLOSED
        if self.pending is None and self.ttl_s is not None and \
                now >= self.last_activity_at + self.ttl_s:
            return SessionStatus.EXPIRED
        return SessionStatus.ACTIVE


def fold(state: SessionState, event: Event) -> None:
    """Apply one stream event to ``state``."""
    if isinstance(event, SessionCreated):
        state.agent, state.ttl_s, state.created_at = event.agent, event.ttl_s, event.created_at
        state.variables = dict(event.variables)
        state.last_activity_at = event.created_at
    elif isinstance(event, VariableSet):
        state.variables[event.name] = event.value
    elif isinstance(event, ResourceVersion):
        state.resources[event.name] = Resource(event.name, event.version, event.content,
                                               dict(event.provenance))
    elif isinstance(event, TurnStarted):
        state.turns.append(Turn(event.turn, event.run_id, event.trigger, event.input, event.at,
                                principal=event.principal, roles=tuple(event.roles)))
        state.last_activity_at = event.at
    elif isinstance(event, TurnFinished):
        last = state.turns[-1]
        state.turns[-1] = replace(last, status=event.status.value)
        state.last_activity_at = event.at
    elif isinstance(event, SessionRestored):
        state.restored = [Message.model_validate(m) for m in event.messages]
        state.turns_before_restore = len(state.turns)
        state.restored_seq = event.seq
        state.last_activity_at = event.at
    elif isinstance(event, SessionClosed):
        state.closed = True
    elif isinstance(event, RunStarted):
        if event.workflow != SESSION_WORKFLOW:
            raise UsageError(f"run {stream_id(state.session_id)!r} is a {event.workflow!r} run, "
                             "not a session; run ids starting with 'session:' are reserved for "
                             "tether.sessions")
    elif not isinstance(event, RunFinished | TriggerFired):  # triggers.py reads TriggerFired
        raise UsageError(f"session {state.session_id!r} holds a {event.kind!r} event at seq "
                         f"{event.seq}; only session changes belong there")
    state.revision = event.seq
