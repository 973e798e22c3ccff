"""A Python client of ``tether serve``: the same verbs as the HTTP API, typed answers, and
streams that resume on their own after a dropped connection (``Last-Event-ID``), yielding every
event of a run once.

::

    from tether.client import Client

    with Client("http://127.0.0.1:8000", "tk_…") as client:
        session = client.create_session("support-chat")
        for event in client.fire(session.id, "user-message", {"text": "Hi"}):
            print(event.id, event.type, event.data)

Needs httpx (``pip install 'tether[serve]'``). Of the server it imports only the framework-free
SSE reader (:mod:`tether.serve.sse`), so the wire format is read by the code that writes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    import httpx  # noqa: F401  (checked here so the hint comes before any other import error)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from tether.errors import UsageError

    raise UsageError("tether.client needs httpx: pip install 'tether[serve]'") from exc

from tether.client.aio import AsyncClient
from tether.client.common import Options
from tether.client.errors import (
    RENAMED,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    GoneError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RequestTooLargeError,
    ServerError,
    UnprocessableEntityError,
    renamed,
)
from tether.client.follow import Reconnect
from tether.client.models import (
    TERMINAL_EVENTS,
    Approval,
    ApprovalDecision,
    ResourceView,
    RunSummary,
    SessionView,
    StreamEvent,
    TranscriptRow,
    TurnView,
)
from tether.client.streams import AsyncEventStream, EventStream
from tether.client.sync import Client

__all__ = [
    "TERMINAL_EVENTS",
    "Approval",
    "ApprovalDecision",
    "AsyncClient",
    "AsyncEventStream",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "ConnectionFailedError",
    "EventStream",
    "GoneError",
    "InternalServerError",
    "NotFoundError",
    "Options",
    "PermissionDeniedError",
    "Reconnect",
    "RequestTooLargeError",
    "ResourceView",
    "RunSummary",
    "ServerError",
    "SessionView",
    "StreamEvent",
    "TranscriptRow",
    "TurnView",
    "UnprocessableEntityError",
]

if not TYPE_CHECKING:  # the names before the client's errors took their SDK names (deprecated)
    def __getattr__(name: str) -> Any:
        return renamed(__name__, name, {**RENAMED, "Resource": "ResourceView"}, globals())
