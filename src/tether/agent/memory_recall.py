"""Remembered facts recalled into an agent's context at the start of every run.

An :class:`~tether.agent.agent.Agent` with ``memory=MemoryRecall(...)`` reads the current facts
of some subjects of a :class:`~tether.memory.Memory` namespace (on the run's own store and
clock) before its first model call, in **one durable step**: the facts are journaled, so a
resumed or replayed run sees exactly the facts the first execution saw, whatever the memory
holds since.

Each fact enters the context as its own message carrying the fact's source and trust (the
trust it was written with, however long ago): a fact an agent extracted from an email stays
``external`` to the policy, so a write whose arguments came from it is judged as from external
content, and no fact ever becomes system-role text. To the policy a fact is data, as the same
content returned by a tool would be, never part of the request (the instructions and the
user's own words) unless its trust is the user's (:func:`is_recalled_fact`).

>>> recall = MemoryRecall(namespace="support", subjects=["customer:{{ id }}"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.errors import UsageError
from tether.memory import Fact, Memory
from tether.models.base import Message
from tether.runtime.context import internals
from tether.runtime.provenance import Trust

if TYPE_CHECKING:
    from tether.runtime.context import RunContext

__all__ = ["MemoryRecall", "Recalled", "Subject", "fact_message", "is_recalled_fact"]

#: A subject to recall: a name, or a function of the run's variables returning one.
Subject = str | Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True, slots=True)
class Recalled:
    """What a run recalled: the facts shown, and how many more matched but were left out
    (over ``max_facts``)."""

    facts: tuple[Fact, ...]
    left_out: int = 0

    def messages(self) -> list[Message]:
        """The context the facts make: one message per fact (:func:`fact_message`), then, if
        some were left out, a note of the harness saying so (no source of content: the policy
        does not count it as an observation)."""
        shown = [fact_message(f) for f in self.facts]
        if self.left_out:
            shown.append(Message(role="user", source="harness",
                                 content=f"({self.left_out} more remembered facts were not "
                                         "shown: over the agent's memory max_facts)"))
        return shown


@dataclass(frozen=True)
class MemoryRecall:
    """What a run recalls: the ``subjects`` of memory ``namespace`` (each a name or a function
    of the run's variables), facts at least ``minimum_trust`` (all when ``None``), at most
    ``max_facts`` of them in subject order, then key order (left-over facts are not shown)."""

    namespace: str = "default"
    subjects: Sequence[Subject] = ()
    minimum_trust: Trust | str | None = None
    max_facts: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.max_facts, int) or isinstance(self.max_facts, bool) or \
                self.max_facts < 0:
            raise UsageError(f"MemoryRecall.max_facts must be a whole number >= 0, not "
                             f"{self.max_facts!r}")
        if self.minimum_trust is not None:
            try:
                Trust(self.minimum_trust)
            except ValueError as exc:
                choices = ", ".join(t.value for t in Trust)
                raise UsageError(f"MemoryRecall.minimum_trust {self.minimum_trust!r} is not a "
                                 f"trust level; choose one of {choices}") from exc

    def subjects_for(self, variables: Mapping[str, Any]) -> list[str]:
        """The subjects to recall for a run with ``variables``, in order, without repeats."""
        names: list[str] = []
        for subject in self.subjects:
            name = subject if isinstance(subject, str) else subject(variables)
            if not isinstance(name, str) or not name:
                raise UsageError(f"memory {self.namespace!r}: a subject came out as "
                                 f"{name!r}; a subject must be a non-empty string")
            if name not in names:
                names.append(name)
        return names

    async def recall(self, ctx: RunContext, variables: Mapping[str, Any]) -> Recalled:
        """The facts for this run, as one durable step of ``ctx`` on the run's store."""
        subjects = self.subjects_for(variables)
        run = internals(ctx)
        memory = Memory(run.store, clock=run.clock, namespace=self.namespace)

        def read() -> dict[str, Any]:
            facts: list[Fact] = []
            for subject in subjects:
                facts += memory.recall(subject, minimum_trust=self.minimum_trust)
            return {"facts": [f.to_dict() for f in facts[:self.max_facts]],
                    "left_out": max(0, len(facts) - self.max_facts)}

        data = await ctx.step(f"memory.recall {self.namespace}", read)
        return Recalled(tuple(Fact.from_dict(d) for d in data["facts"]), data["left_out"])


def fact_message(fact: Fact) -> Message:
    """``fact`` as context for the model: a user-role message (never system text) whose
    source names the memory and what the fact was derived from, with the fact's trust."""
    value = json.dumps(fact.value, ensure_ascii=False, sort_keys=True)
    source = fact.sourced().source
    return Message(role="user",
                   content=f"Remembered fact {fact.subject}/{fact.key} = {value} "
                           f"(from {fact.source}, trust {fact.trust.value})",
                   source=source, trust=fact.trust.value)


#: How a recalled fact's source starts (as :meth:`tether.memory.Fact.sourced` names it).
FACT_SOURCE_PREFIX = "memory:"


def is_recalled_fact(message: Message) -> bool:
    """Whether ``message`` is a fact recalled at the start of the run (:func:`fact_message`):
    context the policy weighs as data with the fact's trust, like a tool's answer, though it
    rides a user-role message."""
    return message.role == "user" and (message.source or "").startswith(FACT_SOURCE_PREFIX)
