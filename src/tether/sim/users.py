"""Simulated users: the person the agent talks to, scripted, played by a model, or replayed.

A scenario says how its user is played with a ``user:`` mapping (absent or empty: the scripted
persona)::

    user: {played_by: persona}                                  # the scripted User (default)
    user: {played_by: model, model: "mypkg.users:customer"}     # a model plays the persona
    user: {played_by: replay, answers: ["It's order 1042.", "Yes, go ahead."]}

* ``persona`` — :class:`User`: answers from the persona's facts by keyword, loses patience,
  changes its mind at turn ``changes_mind_at``; seeded, no model.
* ``model`` — :class:`ModelUser`: ``model`` names a function (``package.module:function`` or
  ``path/to/file.py:function``, relative to the scenario's folder) of no arguments, or of the
  :class:`~tether.sim.persona_spec.Persona`, returning a :class:`tether.models.base.Model` — e.g. an
  ``OpenAIModel`` pointed at a local server. The persona becomes the model's instructions and
  the agent's questions its prompts; the model sees nothing but the episode's own data (the
  persona, the questions asked, its own earlier answers), so a deterministic model gives a
  byte-identical episode.
* ``replay`` — :class:`ReplayUser`: the n-th question gets the n-th recorded answer. With the
  recorded ``questions`` too (optional, as many as the answers), the n-th question must also be
  the n-th recorded one. A question beyond the recording, or another question than recorded,
  raises :class:`~tether.models.replay.ReplayDiverged` (what a strict model replay raises when
  the agent leaves its recording): the episode left the recorded one.

When the user cannot answer as the persona would — a replay that diverged, a user model that
failed — the reason is kept on the user (``unsettled``) and :func:`inconclusive` returns it: the
agent's tool may have caught the error and gone on, so the episode's outcome says nothing about
the agent and is inconclusive, never a pass or a failure.

All three answer through one interface, ``await user.ask(question)`` (what an agent's tools reach
as ``env.client("user").ask(question)``, target ``user.ask``), and record every answer in the
ledger as a ``user.message`` effect (``turn``, ``text``, ``question``). That record is the
recording: :func:`recorded_answers` (and :func:`recorded_questions`) read it back from an
episode's ledger and :func:`replay_spec` makes the ``user:`` mapping that replays it, so a
model-played episode becomes a scenario that reruns it byte for byte without the model::

    result = run_episode(scenario, seed)
    user = replay_spec(recorded_answers(result.ledger), recorded_questions(result.ledger))
    # → {played_by: replay, answers: [...], questions: [...]}
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn

from tether.errors import UsageError
from tether.models.base import Message, Model, ModelRequest
from tether.models.replay import ReplayDiverged
from tether.sim.agent_ref import load_callable
from tether.sim.persona_spec import Persona
from tether.sim.world import World
from tether.specs import describe, short_repr

__all__ = [
    "PLAYED_BY",
    "ModelUser",
    "ReplayDiverged",
    "ReplayUser",
    "SimulatedUser",
    "User",
    "UserSpec",
    "build_user",
    "inconclusive",
    "recorded_answers",
    "recorded_questions",
    "replay_spec",
    "user_spec_from_dict",
]

#: The ways a scenario's user can be played.
PLAYED_BY = ("persona", "model", "replay")
PlayedBy = Literal["persona", "model", "replay"]

#: The keys each form of ``user:`` takes.
_KEYS: dict[str, tuple[str, ...]] = {
    "persona": ("played_by",),
    "model": ("played_by", "model"),
    "replay": ("played_by", "answers", "questions"),
}
_FORMS = ("{played_by: persona}, {played_by: model, model: package.module:function} or "
          "{played_by: replay, answers: [...]}")
_CALLABLE = re.compile(r"^\S.*:[A-Za-z_][A-Za-z0-9_]*$")

_OPENERS = {"plain": "", "terse": "", "chatty": "Oh, thanks for asking! ",
            "angry": "Honestly, this is taking too long. "}


@dataclass(frozen=True, slots=True)
class UserSpec:
    """How a scenario's user is played (the validated ``user:`` mapping)."""

    played_by: PlayedBy = "persona"
    #: ``played_by: model``: the function returning the user's model.
    model: str = ""
    #: ``played_by: replay``: the recorded answers, the n-th for the n-th question.
    answers: tuple[str, ...] = ()
    #: ``played_by: replay``, optional: the questions the recorded user was asked.
    questions: tuple[str, ...] | None = None

    def as_data(self) -> dict[str, Any]:
        """The ``user:`` mapping that states this spec."""
        if self.played_by == "model":
            return {"played_by": "model", "model": self.model}
        if self.played_by == "replay":
            return replay_spec(self.answers, self.questions)
        return {"played_by": "persona"}


def user_spec_from_dict(data: Any, where: str = "<scenario>") -> UserSpec:
    """The scenario's ``user:`` mapping, checked; ``where`` (the file) leads every error."""
    if data is None or data == {}:
        return UserSpec()
    if not isinstance(data, Mapping):
        raise UsageError(f"{where}: user: expected a mapping, one of {_FORMS}; found "
                         f"{describe(data)}")
    played_by = data.get("played_by", "persona")
    if not isinstance(played_by, str) or played_by not in PLAYED_BY:
        raise UsageError(f"{where}: user.played_by: expected one of {', '.join(PLAYED_BY)}, "
                         f"found {short_repr(played_by)}")
    for key in data:
        if key not in _KEYS[played_by]:
            owner = next((form for form, keys in _KEYS.items() if key in keys), None)
            hint = (f"it belongs with played_by: {owner}" if owner else
                    f"played_by: {played_by} takes {', '.join(_KEYS[played_by])}")
            at = key if isinstance(key, str) else short_repr(key)
            raise UsageError(f"{where}: user.{at}: not a setting of played_by: {played_by} "
                             f"({hint})")
    if played_by == "model":
        model = data.get("model")
        if model is None:
            raise UsageError(f"{where}: user.model: played_by: model needs the function that "
                             "returns the user's model, as package.module:function or "
                             "path/to/file.py:function; found nothing")
        if not isinstance(model, str) or not _CALLABLE.match(model.strip()):
            raise UsageError(f"{where}: user.model: expected package.module:function or "
                             f"path/to/file.py:function, found {short_repr(model)}")
        return UserSpec(played_by="model", model=model.strip())
    if played_by == "replay":
        answers = _strings(data.get("answers"), where, "answers")
        questions = None
        if "questions" in data:
            questions = _strings(data["questions"], where, "questions")
            if len(questions) != len(answers):
                raise UsageError(f"{where}: user.questions: expected one question per answer "
                                 f"({len(answers)}), found {len(questions)}")
        return UserSpec(played_by="replay", answers=answers, questions=questions)
    return UserSpec()


def _strings(given: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(given, list):
        raise UsageError(f"{where}: user.{key}: played_by: replay needs the recorded {key} as a "
                         f"list of strings (the n-th answer for the n-th question); found "
                         f"{describe(given)}")
    for index, item in enumerate(given):
        if not isinstance(item, str):
            raise UsageError(f"{where}: user.{key}[{index}]: expected a string (quote it), "
                             f"found {describe(item)} {short_repr(item)}")
    return tuple(given)


def build_user(spec: UserSpec, world: World, persona: Persona,
               base_dir: Path | None = None) -> SimulatedUser:
    """The simulated user ``spec`` describes, in ``world``; ``base_dir`` (the scenario's
    folder) is where a ``path/to/file.py:function`` model is looked up."""
    if spec.played_by == "model":
        return ModelUser(world, persona, _user_model(spec.model, persona, base_dir))
    if spec.played_by == "replay":
        return ReplayUser(world, persona, spec.answers, spec.questions)
    return User(world, persona)


def _user_model(spec: str, persona: Persona, base_dir: Path | None) -> Model:
    try:
        function = load_callable(spec, base_dir, what="user.model")
    except UsageError as exc:
        # The shared loader words a module it cannot import as the agent's; say whose it is.
        message = str(exc).removeprefix(f"agent {spec!r}: ")
        if not message.startswith("user.model"):
            message = f"user.model {spec!r}: {message}"
        raise UsageError(message) from exc.__cause__
    try:
        parameters = [p for p in inspect.signature(function).parameters.values()
                      if p.default is p.empty
                      and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # a builtin without a signature: called as it is
        parameters = []
    if len(parameters) > 1:
        raise UsageError(f"user.model {spec!r}: the function takes {len(parameters)} "
                         "arguments; it must take none, or one (the persona)")
    made = function(persona) if parameters else function()
    if inspect.isawaitable(made):
        close = getattr(made, "close", None)
        if close is not None:
            close()
        raise UsageError(f"user.model {spec!r}: the function is async; make it a plain def "
                         "that returns the model")
    if not callable(getattr(made, "complete", None)):
        raise UsageError(f"user.model {spec!r}: returned {type(made).__name__}; expected a "
                         "tether model (an object with async complete(request))")
    return made  # type: ignore[no-any-return]


def recorded_answers(ledger_effects: Sequence[Mapping[str, Any]]) -> list[str]:
    """The user's answers in an episode's ledger (``EpisodeResult.ledger``), in order."""
    return _messages(ledger_effects, "text")


def recorded_questions(ledger_effects: Sequence[Mapping[str, Any]]) -> list[str]:
    """The questions the user was asked in an episode's ledger, in order."""
    return _messages(ledger_effects, "question")


def _messages(ledger_effects: Sequence[Mapping[str, Any]], field: str) -> list[str]:
    found: list[str] = []
    for effect in ledger_effects:
        if effect.get("service") == "user" and effect.get("operation") == "message":
            value = (effect.get("data") or {}).get(field)
            if not isinstance(value, str):
                raise UsageError(f"ledger effect {effect.get('seq')}: a user.message without "
                                 f"its {field} (found {short_repr(value)})")
            found.append(value)
    return found


def replay_spec(answers: Sequence[str],
                questions: Sequence[str] | None = None) -> dict[str, Any]:
    """The scenario's ``user:`` mapping that replays ``answers`` (and, when given, checks
    that the n-th question asked is the n-th of ``questions``)."""
    spec: dict[str, Any] = {"played_by": "replay", "answers": list(answers)}
    if questions is not None:
        if len(questions) != len(answers):
            raise UsageError(f"replay_spec: {len(answers)} answers but {len(questions)} "
                             "questions; expected one question per answer")
        spec["questions"] = list(questions)
    return spec


def inconclusive(world: World) -> list[str]:
    """Why the simulated user of this episode could not answer as the persona would (empty:
    it always could). Non-empty means the episode is inconclusive: a replay left the
    recording, or the user's model failed, and the agent may have caught the error and gone
    on, so the outcome says nothing about the agent."""
    user = world.services.get("user")
    return list(user.unsettled) if isinstance(user, SimulatedUser) else []


class SimulatedUser:
    """What every simulated user offers: ``await ask(question)`` and ``snapshot()``; each
    answer is recorded in the ledger as a ``user.message`` effect."""

    #: The operations an agent reaches through ``env.client("user")``.
    OPERATIONS: ClassVar[tuple[str, ...]] = ("ask",)
    #: The ``played_by`` this user stands for.
    played_by: ClassVar[str] = ""

    def __init__(self, world: World, persona: Persona) -> None:
        self.world, self.persona = world, persona
        self.turn = 0
        self.current_request = ""
        #: Each time the user could not answer as the persona would, said in words.
        self.unsettled: list[str] = []

    async def ask(self, question: str) -> str:
        """The user's reply to ``question``."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """The user's final state, beside the services'."""
        found: dict[str, Any] = {"turns": self.turn, "current_request": self.current_request}
        if self.unsettled:
            found["unsettled"] = list(self.unsettled)
        return found

    def _record(self, question: str, reply: str) -> str:
        self.world.effect("user", "message", key=f"user:{self.turn}", turn=self.turn,
                          text=reply, question=question)
        return reply


class User(SimulatedUser):
    """The scripted person behind the task: answers from the persona's facts by keyword, grows
    curt past its patience, and changes its mind at turn ``changes_mind_at`` (from then on it
    asks for ``new_request``)."""

    played_by = "persona"

    async def ask(self, question: str) -> str:
        """The user's reply to ``question``."""
        return self.answer(question)

    def answer(self, question: str) -> str:
        """The user's reply to ``question`` (synchronous; the scripted user needs no wait)."""
        self.turn += 1
        p = self.persona
        if p.changes_mind_at is not None and self.turn >= p.changes_mind_at and p.new_request:
            reply = f"Actually, I changed my mind: {p.new_request}"
            self.current_request = p.new_request
        elif self.turn > p.patience:
            reply = "I already told you everything. Please just do it."
        else:
            reply = self._from_facts(question)
        return self._record(question, _OPENERS[p.style] + reply)

    def _from_facts(self, question: str) -> str:
        lowered = question.lower()
        for topic, fact in sorted(self.persona.known_facts.items()):
            if topic.lower() in lowered:
                return f"{topic}: {fact}"
        if "confirm" in lowered or "shall i" in lowered or "should i" in lowered:
            return "Yes, please go ahead."
        return "Yes."


class ModelUser(SimulatedUser):
    """A user played by a language model: the persona becomes its instructions, the agent's
    questions its prompts. The model is sent only the episode's own data (the persona, the
    questions, its own earlier answers), never a clock or a random draw, so a deterministic
    model gives a byte-identical episode; a real model's episode is replayed from its recorded
    answers (:func:`recorded_answers`, :func:`replay_spec`)."""

    played_by = "model"

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

    async def ask(self, question: str) -> str:
        """The model's reply to ``question``, in character."""
        asked = Message.user(question)
        try:
            response = await self.model.complete(
                ModelRequest(messages=(*self.history, asked)))
        except Exception as exc:
            # The person would have answered; what they would have said is unknown.
            self.unsettled.append(f"the user's model ({getattr(self.model, 'name', '?')}) "
                                  f"failed on question {self.turn + 1} "
                                  f"({short_repr(question)}): {type(exc).__name__}: {exc}")
            raise
        self.turn += 1
        self.history.append(asked)
        # An empty answer is still an answer the agent must see (and a replay must repeat).
        reply = response.text.strip() or "..."
        self.history.append(Message.assistant(reply))
        return self._record(question, reply)

    async def answer_async(self, question: str) -> str:
        """The same as :meth:`ask` (the earlier name)."""
        return await self.ask(question)


class ReplayUser(SimulatedUser):
    """A recorded user: the n-th question gets the n-th recorded answer."""

    played_by = "replay"

    def __init__(self, world: World, persona: Persona, answers: Sequence[str],
                 questions: Sequence[str] | None = None) -> None:
        super().__init__(world, persona)
        self.answers = tuple(answers)
        self.questions = tuple(questions) if questions is not None else None
        if self.questions is not None and len(self.questions) != len(self.answers):
            raise UsageError(f"a replayed user needs one recorded question per answer; "
                             f"found {len(self.answers)} answers, {len(self.questions)} "
                             "questions")

    async def ask(self, question: str) -> str:
        """The recorded answer to this turn's question."""
        n = self.turn + 1
        if n > len(self.answers):
            self._diverge(f"the simulated user was asked question {n} ({short_repr(question)})"
                          f" but the recording holds {len(self.answers)} answer(s)")
        if self.questions is not None and question != self.questions[n - 1]:
            self._diverge(f"question {n} was {short_repr(question)}, the recorded question "
                          f"{n} {short_repr(self.questions[n - 1])}")
        self.turn = n
        return self._record(question, self.answers[n - 1])

    def _diverge(self, what: str) -> NoReturn:
        why = (f"{what}: the episode diverged from the recorded one, so what the user would "
               "say is unknown and the episode is inconclusive")
        self.unsettled.append(why)
        raise ReplayDiverged(why)
