"""Simulated users: scripted, seeded people the agent talks to.

A :class:`User` answers the agent's questions from its persona: its goal, the facts it knows
(matched by keyword), its patience (after that many questions it answers curtly), its style,
and optionally a change of mind at turn ``k`` (from then on it asks for ``new_request``).
Every answer is recorded in the ledger as a ``user.message`` effect, so graders can see what the
user last asked for. Its randomness comes from the world's ``user`` stream.
"""

from __future__ import annotations

from typing import Any

from tether.models.base import Message, Model, ModelRequest
from tether.sim.scenario import Persona
from tether.sim.world import World

__all__ = ["ModelUser", "User"]

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


class ModelUser(User):
    """A user played by a language model (when a real one is configured): the persona becomes
    its instructions, the agent's questions its prompts. Answers are still recorded in the
    ledger; determinism is then only as good as the model's."""

    def __init__(self, world: World, persona: Persona, model: Model) -> None:
        super().__init__(world, persona)
        self.model = model
        self.history: list[Message] = [Message.system(self._instructions())]

    def _instructions(self) -> str:
        p = self.persona
        facts = "; ".join(f"{k}: {v}" for k, v in sorted(p.known_facts.items()))
        change = (f" From your message number {p.changes_mind_at} on, you want this instead: "
                  f"{p.new_request}" if p.changes_mind_at and p.new_request else "")
        return (f"You are {p.name}, a customer talking to a support agent. Your goal: {p.goal}. "
                f"You know: {facts or 'nothing special'}. Style: {p.style}. You answer in one "
                f"or two sentences and lose patience after {p.patience} questions.{change}")

    async def answer_async(self, question: str) -> str:
        """The model's reply to ``question``, in character."""
        self.turn += 1
        self.history.append(Message.user(question))
        response = await self.model.complete(ModelRequest(messages=tuple(self.history)))
        reply = response.text.strip() or "..."
        self.history.append(Message.assistant(reply))
        self.world.effect("user", "message", key=f"user:{self.turn}", turn=self.turn,
                          text=reply, question=question)
        return reply
