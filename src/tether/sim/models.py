"""Model faults: a wrapper that makes any model fail the way providers do, on the world's clock.

Faults target ``model`` (``model.complete`` calls are counted like service calls):
``rate_limit`` raises :class:`~tether.errors.RateLimited` (``retry_after_s``),
``error`` raises :class:`~tether.errors.ModelUnavailable`, ``context_overflow`` raises
:class:`~tether.errors.ContextOverflow`, ``latency`` waits on the clock, and
``malformed_output`` corrupts the arguments of the response's first tool call (or empties a
text answer).
"""

from __future__ import annotations

from tether.errors import ContextOverflow, ModelUnavailable, RateLimited
from tether.models.base import Model, ModelRequest, ModelResponse, ToolCall
from tether.sim.faults import FaultLayer

__all__ = ["FaultyModel"]

TARGET = "model.complete"
#: The kinds that mean something for a model; others (e.g. a ``timeout_after@*``) do not fire.
MODEL_KINDS = ("latency", "rate_limit", "error", "context_overflow", "malformed_output")


class FaultyModel:
    """``model`` behind the fault layer."""

    def __init__(self, model: Model, layer: FaultLayer) -> None:
        self.model, self.layer = model, layer
        self.name = model.name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        fired = self.layer.firing(TARGET, MODEL_KINDS)
        faults = {f.kind: f for f in fired}
        for fault in fired:
            if fault.kind == "latency":
                await self.layer.world.clock.sleep(self.layer.latency_s(fault))
        if "rate_limit" in faults:
            raise RateLimited("429 Too Many Requests", model=self.name,
                              retry_after_s=faults["rate_limit"].retry_after_s, status=429)
        if "error" in faults:
            raise ModelUnavailable(f"HTTP {faults['error'].status}", model=self.name,
                                   status=faults["error"].status)
        if "context_overflow" in faults:
            raise ContextOverflow("the request exceeds the context window", model=self.name,
                                  status=400)
        response = await self.model.complete(request)
        if "malformed_output" in faults:
            response = corrupt(response)
        return response


def corrupt(response: ModelResponse) -> ModelResponse:
    """The response as a sloppy model writes it: a tool call's JSON cut short, or no text."""
    if response.tool_calls:
        first = response.tool_calls[0]
        broken = ToolCall(id=first.id, name=first.name, arguments=first.arguments[:-1])
        return response.model_copy(update={"tool_calls": (broken, *response.tool_calls[1:])})
    return response.model_copy(update={"text": ""})
