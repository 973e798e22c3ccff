"""Idempotency keys with Stripe's semantics, shared by the services that accept them.

The first request made with a key has its outcome saved (a result *or* an error raised once
the operation began executing) together with a fingerprint of its parameters. Within the
key's lifetime (24 hours of virtual time by default):

* the same key with the same parameters replays the saved outcome, applying nothing;
* the same key with other parameters is refused (:class:`KeyReused`);
* a request arriving while the key is in flight is refused (:class:`KeyInFlight`).

After the lifetime the key is forgotten and a reuse runs as a new request, exactly the hazard
a retry after a long outage meets in production. Requests that fail validation are never saved:
the caller validates before executing and saves only what executed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tether.sim.services.errors import ServiceError

__all__ = ["DEFAULT_TTL_S", "IdempotencyKeys", "KeyInFlight", "KeyReused", "Saved",
           "fingerprint"]

T = TypeVar("T")

DEFAULT_TTL_S = 24 * 3600.0


class KeyInFlight(Exception):
    """Another request with this key has not finished yet."""


class KeyReused(Exception):
    """The key was first used with different parameters."""


def fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    """Canonical JSON of an operation and its parameters, compared across requests."""
    return json.dumps({"operation": operation, "params": dict(params)}, sort_keys=True,
                      separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Saved(Generic[T]):
    """The outcome saved for a key: the result, or the service error it raised."""

    fingerprint: str
    saved_at: float
    outcome: T | ServiceError

    def replay(self) -> T:
        """The saved result, or the saved error raised again (a fresh copy of it)."""
        if isinstance(self.outcome, ServiceError):
            raise type(self.outcome)(*self.outcome.args)
        return self.outcome


class IdempotencyKeys(Generic[T]):
    """Saved outcomes by key, forgotten ``ttl_s`` after they were saved.

    >>> now = [0.0]
    >>> keys: IdempotencyKeys[str] = IdempotencyKeys(lambda: now[0])
    >>> keys.save("k", "fp", "re_0001")
    >>> keys.lookup("k", "fp").replay()
    're_0001'
    >>> now[0] = DEFAULT_TTL_S
    >>> keys.lookup("k", "fp") is None
    True
    """

    def __init__(self, now: Callable[[], float], ttl_s: float = DEFAULT_TTL_S) -> None:
        self._now = now
        self.ttl_s = ttl_s
        self._saved: dict[str, Saved[T]] = {}
        self._in_flight: set[str] = set()

    def begin(self, key: str) -> None:
        """Mark ``key`` as held by a request still executing."""
        self._in_flight.add(key)

    def finish(self, key: str) -> None:
        """Release ``key``: requests using it are served again."""
        self._in_flight.discard(key)

    def is_in_flight(self, key: str) -> bool:
        """Whether a request holding ``key`` has not finished."""
        return key in self._in_flight

    def lookup(self, key: str, fingerprint: str) -> Saved[T] | None:
        """The live saved outcome for ``key``; raises if in flight or used otherwise."""
        if key in self._in_flight:
            raise KeyInFlight(key)
        saved = self._saved.get(key)
        if saved is not None and self._now() - saved.saved_at >= self.ttl_s:
            del self._saved[key]
            saved = None
        if saved is not None and saved.fingerprint != fingerprint:
            raise KeyReused(key)
        return saved

    def save(self, key: str, fingerprint: str, outcome: T | ServiceError) -> None:
        """Save the outcome of the first request executed with ``key``."""
        self._saved[key] = Saved(fingerprint, self._now(), outcome)

    def live(self) -> list[str]:
        """The keys not yet forgotten, in the order first saved."""
        now = self._now()
        return [k for k, s in self._saved.items() if now - s.saved_at < self.ttl_s]
