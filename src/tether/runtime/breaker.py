"""Circuit breakers, one per dependency, on the run's clock.

A breaker is *closed* while its dependency works. ``failure_threshold`` consecutive failures
open it: calls are refused at once (the agent is told the dependency is unavailable) instead of
hammering it. After ``cooldown_s`` of clock time it is *half-open*: one probe call is let
through; success closes it, failure opens it again for another cooldown.

Breakers live in a :class:`Breakers` registry owned by a ``Runtime``, so every run of that
runtime shares what it learned about a dependency. Their state is not journaled: it is advice
about the present, and a resumed run starts from what its runtime knows now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum

from tether.clock import Clock

__all__ = ["BreakerState", "Breakers", "CircuitBreaker"]


class BreakerState(StrEnum):
    """Closed: calls flow. Open: calls are refused. Half-open: one probe is let through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """The state of one dependency. Use :meth:`allow`, then :meth:`record`."""

    name: str
    clock: Clock
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    probe_at: float = 0.0

    def allow(self) -> bool:
        """May a call go to the dependency now? In half-open state only one probe may."""
        if self.state is BreakerState.OPEN:
            if self.clock.now() - self.opened_at < self.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self.probing = False
        if self.state is BreakerState.HALF_OPEN:
            if self.probing and self.clock.now() - self.probe_at < self.cooldown_s:
                return False
            # No probe out, or one that never reported back within a cooldown: probe again.
            self.probing, self.probe_at = True, self.clock.now()
        return True

    def record(self, ok: bool) -> BreakerState:
        """Record a call's outcome; returns the state afterwards."""
        if ok:
            self.state, self.failures, self.probing = BreakerState.CLOSED, 0, False
            return self.state
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self.opened_at, self.probing = BreakerState.OPEN, self.clock.now(), False
        return self.state

    def retry_in_s(self) -> float:
        """Clock seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock.now() - self.opened_at))


class Breakers:
    """The breakers of one runtime, created on first use with shared settings."""

    def __init__(self, clock: Clock, *, failure_threshold: int = 5,
                 cooldown_s: float = 30.0) -> None:
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def __getitem__(self, dependency: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(dependency)
            if breaker is None:
                breaker = CircuitBreaker(dependency, self.clock, self.failure_threshold,
                                         self.cooldown_s)
                self._breakers[dependency] = breaker
            return breaker

    def states(self) -> dict[str, BreakerState]:
        with self._lock:
            return {name: b.state for name, b in sorted(self._breakers.items())}
