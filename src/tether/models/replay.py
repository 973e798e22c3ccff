"""A model that answers from a recorded journal: re-run an agent against the exact responses a
past run received (to debug it, or to test a harness change against real model output).

>>> from tether.events import ModelCalled
>>> model = ReplayModel([])          # normally: ReplayModel.from_store(store, run_id)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tether.errors import UsageError, rebuild_error
from tether.events import Event, ModelCalled, ModelFailed
from tether.models.base import ModelRequest, ModelResponse
from tether.store.base import Store

__all__ = ["ReplayDiverged", "ReplayModel"]


class ReplayDiverged(UsageError):
    """The replayed agent asked something the recording did not (strict replay only)."""


class ReplayModel:
    """Answers the n-th request with the n-th recorded model outcome (a response, or the
    recorded failure raised again).

    With ``strict=True`` a request whose digest differs from the recorded request raises
    :class:`ReplayDiverged` naming the call, so a harness change that alters what the model is
    asked is caught; otherwise the recorded answers are served regardless.
    """

    def __init__(self, events: Iterable[Event], *, name: str = "replay",
                 strict: bool = False) -> None:
        self.name = name
        self.strict = strict
        self.recorded: Sequence[ModelCalled | ModelFailed] = [
            e for e in events if isinstance(e, ModelCalled | ModelFailed)
        ]
        self.calls = 0

    @classmethod
    def from_store(cls, store: Store, run_id: str, *, strict: bool = False) -> ReplayModel:
        events = store.read(run_id)
        if not events:
            raise UsageError(f"no run {run_id!r} in the store to replay")
        return cls(events, strict=strict)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        index = self.calls
        self.calls += 1
        if index >= len(self.recorded):
            raise UsageError(f"the recording has {len(self.recorded)} model call(s); call "
                             f"{index + 1} was asked for")
        event = self.recorded[index]
        if self.strict and event.request_digest != request.digest():
            raise ReplayDiverged(
                f"model call {index + 1}: the request differs from the recorded one (digest "
                f"{request.digest()} vs {event.request_digest})")
        if isinstance(event, ModelFailed):
            raise rebuild_error(event.error)
        return ModelResponse.model_validate(event.response)
