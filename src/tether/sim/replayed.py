"""A model that answers with a recorded run's answers: what a captured scenario's
``model: {replay: [...]}`` runs (see :mod:`tether.sim.capture` for how the answers are captured).

Each answer is a ``ModelResponse`` as JSON, or ``{failed: <journaled error>}`` (raised again);
an answer may carry ``seen``, what the recorded model had read of its previous tool calls. See
:class:`RecordedAnswers` for what it answers when asked more or less than recorded, and
:func:`replay_divergence` for when its answers cannot stand for the model's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tether.errors import UsageError, rebuild_error
from tether.models.base import Model, ModelRequest, ModelResponse

__all__ = ["EXHAUSTED", "RecordedAnswers", "replay_divergence", "replay_model"]

#: The final answer a replayed model gives once the recorded answers are used up.
EXHAUSTED = ("[replay] the recorded run's model gave no further answer (all {n} recorded "
             "answers were used)")


class RecordedAnswers:
    """A model answering with a recorded run's answers, in order.

    * The n-th request gets the n-th recorded answer (a recorded failure is raised again).
    * A request identical to the first one it answered starts over: the conversation was
      started afresh (the naive harness restarting its task after a crash), and the recorded
      run's first answers are what its model said to that conversation. (Not right after a
      recorded failure: that request is the failed call's retry.)
    * Past the end, it gives a final text answer (:data:`EXHAUSTED`) and counts it in
      ``exhausted``: the replaying harness asked more than the recorded run did, so the model's
      answer to that conversation is unknown; :func:`replay_divergence` says so and the episode
      is inconclusive.
    * An answer may carry ``seen`` (``{tool call id: observation}``, written by
      :func:`capture`): what the recorded model had read of its previous answer's tool calls
      that succeeded. A request whose tool message for such a call reads otherwise (a policy
      denied the call, a harness gave up where the run got an answer) still gets the answer,
      and the mismatch is listed in ``diverged``: the answer was the run's reply to another
      conversation. (Both harnesses render a tool's answer the same way, so a faithful naive
      replay matches too.)

    Under ``default`` the model is asked exactly as the recorded run asked it (resumed runs
    replay their journaled model calls), so the answers line up one for one.
    """

    def __init__(self, answers: Sequence[ModelResponse | dict[str, Any]], *,
                 name: str = "replay") -> None:
        self.answers = list(answers)
        self.name = name
        self.seen: list[dict[str, str]] = [{} for _ in self.answers]
        self.served = 0
        self.exhausted = 0
        self.diverged: list[str] = []
        self._first: str | None = None
        self._failed = False

    async def complete(self, request: ModelRequest) -> ModelResponse:
        digest = request.digest()
        if self._first is None:
            self._first = digest
        elif digest == self._first and not self._failed:
            # (After a recorded failure the same request is the retry of the failed call.)
            self.served = 0
        if self.served >= len(self.answers):
            self.exhausted += 1
            return ModelResponse(text=EXHAUSTED.format(n=len(self.answers)),
                                 finish_reason="stop", model=self.name)
        answer = self.answers[self.served]
        self._compare(request, self.served)
        self.served += 1
        self._failed = isinstance(answer, dict)
        if isinstance(answer, dict):
            raise rebuild_error(answer)
        return answer


    def _compare(self, request: ModelRequest, index: int) -> None:
        """Note where ``request`` shows the model other observations than answer ``index``
        was recorded after."""
        told = {m.tool_call_id: m.content for m in request.messages
                if m.role == "tool" and m.tool_call_id}
        for call_id, expected in self.seen[index].items():
            got = told.get(call_id)
            if got != expected:
                read = "no answer to that call" if got is None else f"{_clip(got)!r}"
                self.diverged.append(
                    f"recorded answer {index + 1} was given after tool call {call_id} returned "
                    f"{_clip(expected)!r}; in this replay the model read {read}")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def replay_divergence(model: Any) -> list[str]:
    """Why ``model``'s answers cannot be trusted as the recorded run's (empty: they can).

    ``model`` is the episode's model, or a wrapper of it (its ``inner`` or ``model``
    attribute is followed); a model that is not a :class:`RecordedAnswers` never diverges.
    Non-empty when a request came past the recorded answers: the conversation went where the
    recorded run never went, and the episode is inconclusive."""
    seen: set[int] = set()
    while model is not None and not isinstance(model, RecordedAnswers) and id(model) not in seen:
        seen.add(id(model))
        model = getattr(model, "inner", None) or getattr(model, "model", None)
    if not isinstance(model, RecordedAnswers):
        return []
    found = [f"{why}: the replayed answer belongs to a conversation the recorded run never had; "
             "the episode is inconclusive" for why in dict.fromkeys(model.diverged)]
    if model.exhausted:
        found.append(f"the replayed model was asked {model.exhausted} time(s) past the recorded "
                     f"run's {len(model.answers)} recorded answers: the conversation left the "
                     "recorded run, so what the model would have answered is unknown; the "
                     "episode is inconclusive")
    return found


def replay_model(data: Any) -> Model:
    """The model of a scenario's ``model: {replay: ...}``: a list of recorded answers (each a
    ``ModelResponse`` as JSON, or ``{failed: <journaled error>}``), or ``{answers: [...]}``.
    See :class:`RecordedAnswers` for what it answers when asked more or less than recorded."""
    items = data.get("answers") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise UsageError("model.replay: expected a non-empty list of recorded model answers "
                         f"(or {{answers: [...]}}), found {_short(data)}")
    answers: list[ModelResponse | dict[str, Any]] = []
    seen: list[dict[str, str]] = []
    for index, item in enumerate(items):
        observed = item.get("seen") if isinstance(item, dict) else None
        if observed is not None and not (isinstance(observed, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in observed.items())):
            raise UsageError(f"model.replay[{index}].seen: expected a mapping of tool call ids "
                             f"to the observations the model read, found {_short(observed)}")
        seen.append(dict(observed or {}))
        if isinstance(item, dict) and set(item) == {"failed"} and isinstance(item["failed"],
                                                                              dict):
            answers.append(dict(item["failed"]))
            continue
        try:
            answers.append(ModelResponse.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(f"model.replay[{index}]: not a model response "
                             f"({'.'.join(str(p) for p in first['loc'])}: {first['msg']}); "
                             "expected {text, tool_calls, usage, model, finish_reason} or "
                             "{failed: {type, message}}") from exc
    model = RecordedAnswers(answers)
    model.seen = seen
    return model


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:60]}…"
