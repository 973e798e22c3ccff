"""tether.client's public surface is pinned, and the sync and async clients offer the same
verbs with the same parameters."""

from __future__ import annotations

import inspect

import tether.client
from tether.client import AsyncClient, Client

EXPORTS = [
    "TERMINAL_EVENTS", "Approval", "ApprovalDecision", "AsyncClient", "AsyncEventStream",
    "AuthenticationError", "BadRequestError", "Client", "ConflictError", "ConnectionFailedError",
    "EventStream", "GoneError", "InternalServerError", "NotFoundError", "Options",
    "PermissionDeniedError", "Reconnect", "RequestTooLargeError", "ResourceView", "RunSummary",
    "ServerError", "SessionView", "StreamEvent", "TranscriptRow", "TurnView",
    "UnprocessableEntityError",
]
VERBS = ["approvals", "approve", "continue_execution", "create_session", "deny", "events",
         "fire", "restore", "run_events", "runs", "session"]


def test_the_export_list_is_pinned_and_sorted() -> None:
    """__all__ is exactly the documented names, sorted, each importable."""
    assert tether.client.__all__ == EXPORTS == sorted(EXPORTS, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(tether.client, name) for name in EXPORTS)


def test_sync_and_async_clients_have_the_same_verbs() -> None:
    """Every verb exists on both clients with the same parameters; the async ones are
    coroutines."""
    for verb in VERBS:
        sync, aio = getattr(Client, verb), getattr(AsyncClient, verb)
        assert inspect.signature(sync).parameters.keys() == \
            inspect.signature(aio).parameters.keys(), verb
        assert inspect.iscoroutinefunction(aio) and not inspect.iscoroutinefunction(sync)
    public = {n for n in vars(Client) if not n.startswith("_")} - {"close"}
    assert public == set(VERBS)
