"""What the server answers, as typed values (pydantic).

Every model accepts fields it does not name (``extra="allow"``): a newer server may say more,
and an older client must still read what it knows.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TERMINAL_EVENTS", "Approval", "ApprovalDecision", "ResourceView", "RunSummary",
           "SessionView", "StreamEvent", "TranscriptRow", "TurnView"]

#: Event types after which the server ends a run's stream: the turn finished, or its run
#: waits for something (a client tool's result, an approval) before it can go on.
TERMINAL_EVENTS = frozenset({"turn.finished", "run.waiting"})


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class StreamEvent(_Answer):
    """One event of a run's stream: ``id`` is the journal seq (``None`` for ephemeral events
    such as ``model.delta`` and for ``resource.updated``), ``type`` the SSE event name and
    ``data`` its decoded JSON."""

    id: int | None
    type: str
    data: Any = None

    @property
    def terminal(self) -> bool:
        """Whether the server ends the stream after this event."""
        return self.type in TERMINAL_EVENTS


class ResourceView(_Answer):
    """A session resource's current version, content and where it came from."""

    version: int
    content: Any = None
    provenance: Any = None


class TurnView(_Answer):
    """One turn of a session: its number, its run, the trigger that started it, its status."""

    number: int
    run_id: str
    trigger: str | None = None
    status: str


class TranscriptRow(_Answer):
    """One message of a session's history, as ``Session.transcript()`` gives it."""

    role: str
    content: Any = None
    run_id: str | None = None
    seq: int | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    source: str | None = None
    trust: str | None = None


class SessionView(_Answer):
    """A session as the server shows it: status, revision, variables, resources, turns, history."""

    id: str
    agent: str
    status: str
    revision: int
    variables: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, ResourceView] = Field(default_factory=dict)
    turns: list[TurnView] = Field(default_factory=list)
    history: list[TranscriptRow] = Field(default_factory=list)


class Approval(_Answer):
    """A pending approval of the tenant: the run waiting, and (when the server says) the tool,
    its arguments, the role that may decide and why it was asked."""

    run_id: str
    tool: str | None = None
    args: Any = None
    role: str | None = None
    why: str | None = None


class ApprovalDecision(_Answer):
    """The server's record of a decision on an approval (who decided is the key's principal)."""

    run_id: str | None = None


class RunSummary(_Answer):
    """One of the tenant's turn runs."""

    run_id: str
    status: str | None = None
