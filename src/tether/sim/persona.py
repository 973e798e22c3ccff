"""Simulated users: scripted, seeded people the agent talks to.

A :class:`User` answers the agent's questions from its persona: its goal, the facts it knows
(matched by keyword), its patience (after that many questions it answers curtly), its style,
and optionally a change of mind at turn ``k`` (from then on it asks for ``new_request``).
Every answer is recorded in the ledger as a ``user.message`` effect, so graders can see what the
user last asked for. Its randomness comes from the world's ``user`` stream.
"""

from __future__ import annotations

from typing import Any

from tether.sim.scenario import Persona
from tether.sim.world import World

__all__ = ["User"]

_OPENERS = {"plain": "", "terse": "", "chatty": "Oh, thanks for asking! ",
            "angry": "Honestly, this is taking too long. "}


class User:
    """The person behind the task."""

    def __init__(self, world: World, persona: Persona) -> None:
        self.world, self.persona = world, persona
        self.turn = 0
        self.current_request = ""

    def answer(self, question: str) -> str:
        """The user's reply to ``question``."""
        self.turn += 1
        p = self.persona
        if p.changes_mind_at is not None and self.turn >= p.changes_mind_at and p.new_request:
            reply = f"Actually, I changed my mind: {p.new_request}"
            self.current_request = p.new_request
        elif self.turn > p.patience:
            reply = "I already told you everything. Please just do it."
        else:
            reply = self._from_facts(question)
        reply = _OPENERS[p.style] + reply
        self.world.effect("user", "message", key=f"user:{self.turn}", turn=self.turn,
                          text=reply, question=question)
        return reply

    def _from_facts(self, question: str) -> str:
        lowered = question.lower()
        for topic, fact in sorted(self.persona.known_facts.items()):
            if topic.lower() in lowered:
                return f"{topic}: {fact}"
        if "confirm" in lowered or "shall i" in lowered or "should i" in lowered:
            return "Yes, please go ahead."
        return "Yes."

    def snapshot(self) -> dict[str, Any]:
        return {"turns": self.turn, "current_request": self.current_request}
