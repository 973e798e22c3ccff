"""The agent's durable memory as a simulated service: facts about subjects, written by key.

Stands for the store behind :class:`tether.Memory` (or any key-value memory an agent keeps
between conversations). A write that is new — not the replay of a write already made under the
same idempotency key — is a ledger effect ``memory.write``, so a memory written twice by a blind
retry shows in the ledger like any other duplicate effect. Seeded with
``memory: {facts: [{subject, key, value}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, StrictStr

from tether.memory import Memory
from tether.sim.world import World
from tether.store.memory import MemoryStore

__all__ = ["AgentMemory", "SeedFact"]


class SeedFact(BaseModel):
    """One fact the scenario seeds the agent's memory with (``world: {memory: {facts: [...]}}``);
    remembered as a :class:`tether.Fact` from the source ``seed``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: StrictStr
    key: StrictStr
    value: StrictStr


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    facts: list[SeedFact] = []


class AgentMemory:
    """Facts by subject and key; idempotent writes."""

    EFFECTS: ClassVar[dict[str, dict[str, tuple[type, ...]]]] = {
        "write": {"value": (str,), "subject": (str,), "fact": (str,)},
    }

    #: What its clients may call (``env.client("memory")``).
    OPERATIONS: ClassVar[tuple[str, ...]] = ("remember", "recall")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        self.memory = Memory(MemoryStore(), clock=world.clock)
        self._keys: dict[str, dict[str, Any]] = {}
        for fact in _Seed.model_validate(seed_state or {}).facts:
            self.memory.remember(fact.subject, fact.key, fact.value, source="seed",
                                 trust="system")

    def remember(self, subject: str, fact: str, value: str,
                 idempotency_key: str | None = None) -> dict[str, Any]:
        """Store ``value`` as ``fact`` about ``subject``; the stored fact."""
        if idempotency_key and idempotency_key in self._keys:
            return self._keys[idempotency_key]
        written = self.memory.remember(subject, fact, value, source="agent", trust="system")
        self.world.effect("memory", "write", key=f"memory:{subject}:{fact}", value=value,
                          subject=subject, fact=fact)
        result = {"subject": written.subject, "key": written.key, "value": written.value}
        if idempotency_key:
            self._keys[idempotency_key] = result
        return result

    def recall(self, subject: str) -> dict[str, str]:
        """Every fact about ``subject``."""
        return {f.key: f.value for f in self.memory.recall(subject)}

    def snapshot(self) -> dict[str, Any]:
        return {s: {f.key: f.value for f in self.memory.recall(s)}
                for s in self.memory.subjects()}
