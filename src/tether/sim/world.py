"""A simulated world: services, a virtual clock, named random streams, and the effect ledger.

Everything an episode depends on hangs off one :class:`World`, built from a scenario and a
seed, so one seed reproduces one trajectory byte for byte in any process. Randomness is split
into *named streams* (``world.rng("payments")``, ``world.rng("fault:timeout-after-refund")``):
each stream is seeded from the world's seed and its name only, so adding a component or a fault
does not shift the draws of the others, and ``PYTHONHASHSEED`` never matters.

The :class:`Ledger` records every effect a service applied — a refund created, an email sent, an
event booked — with its business identity. It is the ground truth invariants are checked
against, whatever the agent believed or the journal says.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.clock import VirtualClock

__all__ = ["Ledger", "World", "WorldEffect"]


@dataclass(frozen=True, slots=True)
class WorldEffect:
    """One change a service applied to its state."""

    seq: int
    at: float
    service: str
    operation: str
    key: str
    data: Mapping[str, Any]

    def as_data(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "service": self.service,
                "operation": self.operation, "key": self.key, "data": dict(self.data)}


class Ledger:
    """Every effect, in the order applied."""

    def __init__(self) -> None:
        self.effects: list[WorldEffect] = []

    def record(self, at: float, service: str, operation: str, key: str,
               data: Mapping[str, Any]) -> WorldEffect:
        effect = WorldEffect(len(self.effects) + 1, at, service, operation, key,
                        json.loads(json.dumps(dict(data), sort_keys=True, default=str)))
        self.effects.append(effect)
        return effect

    def of(self, service: str, operation: str | None = None) -> list[WorldEffect]:
        return [e for e in self.effects
                if e.service == service and (operation is None or e.operation == operation)]

    def __iter__(self) -> Iterator[WorldEffect]:
        return iter(self.effects)

    def __len__(self) -> int:
        return len(self.effects)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of every effect."""
        body = json.dumps([e.as_data() for e in self.effects], sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class World:
    """The clock, the randomness, the ledger and the services of one episode.

    >>> world = World(seed=7)
    >>> world.rng("payments").random() == World(seed=7).rng("payments").random()
    True
    """

    seed: int
    clock: VirtualClock = field(default_factory=lambda: VirtualClock(start=1_767_225_600.0))
    ledger: Ledger = field(default_factory=Ledger)
    services: dict[str, Any] = field(default_factory=dict)
    _streams: dict[str, random.Random] = field(default_factory=dict, repr=False)

    def rng(self, name: str) -> random.Random:
        """The random stream ``name``: seeded by (world seed, name) alone."""
        stream = self._streams.get(name)
        if stream is None:
            digest = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
            stream = self._streams[name] = random.Random(int.from_bytes(digest[:8], "big"))
        return stream

    def now(self) -> float:
        return self.clock.now()

    def effect(self, service: str, operation: str, key: str, **data: Any) -> WorldEffect:
        """Record an effect at the current virtual time."""
        return self.ledger.record(self.clock.now(), service, operation, key, data)

    def add(self, name: str, service: Any) -> Any:
        self.services[name] = service
        return service
