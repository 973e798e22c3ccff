"""What the sync and async clients share besides the wire: options and answer shaping."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from tether.client import wire
from tether.client.follow import Reconnect
from tether.client.models import TranscriptRow
from tether.errors import UsageError

__all__ = ["Options", "checked_key", "history_rows", "listing"]

M = TypeVar("M", bound=BaseModel)

#: The fields of a history row the server's restore reads (the rest is the server's bookkeeping:
#: run ids, seqs, provenance — a restored message is the client's word whatever it claims).
_MESSAGE_FIELDS = ("role", "content", "tool_calls", "tool_call_id")


@dataclass(frozen=True)
class Options:
    """How a client talks to the server.

    ``timeout_s`` bounds plain requests. A stream's read timeout, ``stream_read_timeout_s``,
    must exceed the server's keep-alive interval: a stream silent for longer is taken as a
    dead connection and resumed. ``rng`` jitters reconnect waits (seed it for reproducible
    tests).
    """

    timeout_s: float = 30.0
    stream_read_timeout_s: float = 60.0
    reconnect: Reconnect = field(default_factory=Reconnect)
    rng: random.Random | None = None

    def stream_timeout(self) -> httpx.Timeout:
        """The timeouts of a streaming request."""
        return httpx.Timeout(self.timeout_s, read=self.stream_read_timeout_s)


def history_rows(history: list[TranscriptRow | dict[str, Any]]) -> list[Any]:
    """``history`` as the restore endpoint takes it: transcript rows reduced to messages."""
    rows: list[Any] = []
    for row in history:
        if isinstance(row, TranscriptRow):
            dumped = row.model_dump(mode="json")
            rows.append({k: dumped[k] for k in _MESSAGE_FIELDS if dumped.get(k) is not None})
        else:
            rows.append(row)
    return rows


def listing(body: Any, key: str, model: type[M] | None) -> list[Any]:
    """The items of a listing answer, validated as ``model`` (kept as JSON when ``None``)."""
    found = wire.items(body, key)
    return found if model is None else [model.model_validate(item) for item in found]


def checked_key(api_key: str) -> str:
    """``api_key`` if it can be sent as a bearer token; :class:`UsageError` otherwise (an empty
    key would otherwise fail later as a malformed header, looking like a network error)."""
    if not isinstance(api_key, str) or not api_key or not api_key.isprintable() \
            or any(c.isspace() for c in api_key) or not api_key.isascii():
        raise UsageError("api_key must be the non-empty key the server's keys file was made "
                         "with (printable ASCII, no spaces)")
    return api_key
