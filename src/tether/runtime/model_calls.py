"""Model calls as durable calls: a resumed run never pays twice for the same completion.

The response (or the classified failure) is journaled at the call's position; on replay the
recorded response is returned, or the recorded error raised, without calling the model.

With ``settings.stream`` a :class:`~tether.models.base.StreamingModel` streams: its text deltas
go to the run's delta sink (``RunInternals.deltas``) as ``(run_id, position, text)`` while the
model writes, and only the complete response is journaled. A stream cut mid-way is a failed
call like a lost connection (journaled as ``model_failed``; its deltas are void); a replay
returns the recorded response and sends no delta.

Beside the response, each entry records facts for traces (see
:class:`~tether.events.ModelCalled`): where the model was asked (its ``server_address`` and
``server_port``, when it has them), the descriptions of the tools the response asked for, and,
only when ``settings.journal_input`` asks for it, the request itself.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tether.errors import ModelUnavailable, error_record, rebuild_error
from tether.events import TOOL_DESCRIPTION_CHARS, ModelCalled, ModelFailed
from tether.models.base import Model, ModelRequest, ModelResponse, StreamingModel
from tether.models.pricing import PriceTable
from tether.runtime.ambiguity import cancel_requested
from tether.runtime.codec import to_json
from tether.runtime.failures import Failure, FailureType, classify
from tether.runtime.timeouts import within

if TYPE_CHECKING:
    from tether.runtime.run_internals import RunInternals

__all__ = ["call_facts", "call_model", "classify_model_error"]

_DEFAULT_PRICES = PriceTable()


def classify_model_error(exc: BaseException) -> Failure:
    """A model-side failure; exceptions that are not model errors are the provider refusing
    or the adapter breaking, not a tool's fault. A client library's timeout or lost connection
    (see :mod:`tether.runtime.ambiguity`) is the model being unavailable."""
    failure = classify(exc)
    if failure.type in (FailureType.AMBIGUOUS_WRITE, FailureType.TRANSIENT_TOOL_ERROR):
        return Failure(FailureType.MODEL_UNAVAILABLE, failure.message, failure.retry_after_s)
    if failure.type is FailureType.PERMANENT_TOOL_ERROR:
        return Failure(FailureType.MODEL_REJECTED, failure.message)
    return failure



async def call_model(run: RunInternals, model: Model, request: ModelRequest,
                     prices: PriceTable | None = None) -> ModelResponse:
    """Call ``model`` once at the next position, or replay what that position recorded."""
    pos, recorded = run.claim("call_model", model.name)
    if recorded:
        last = recorded[-1]
        if isinstance(last, ModelCalled):
            return ModelResponse.model_validate(last.response)
        if isinstance(last, ModelFailed):
            raise rebuild_error(last.error)
    digest = request.digest()
    started = run.clock.now()
    try:
        response = await within(run.clock, _ask(run, pos, model, request),
                                run.call_timeout_s(request.settings.timeout_s))
    except TimeoutError as exc:
        error = ModelUnavailable(f"model {model.name!r}: {exc}", model=model.name)
        await _record_failure(run, pos, model, request, error, started)
        raise error from exc
    except asyncio.CancelledError as exc:
        if cancel_requested():
            raise
        # The model (or its client library) cancelled its own work: a failed call, journaled
        # and left to the retry policy — it must not stop the run as if the run were cancelled.
        error = ModelUnavailable(f"model {model.name!r} raised CancelledError while the run was "
                                 f"not being cancelled: {exc}", model=model.name)
        await _record_failure(run, pos, model, request, error, started)
        raise error from exc
    except Exception as exc:
        await _record_failure(run, pos, model, request, exc, started)
        raise
    # Returned as journaled (lone surrogates replaced …), so the live run sees what a replay sees.
    response = ModelResponse.model_validate(to_json(response, what=f"model {model.name!r}"))
    table = prices if prices is not None else _DEFAULT_PRICES
    cost = table.cost_usd(response.model or model.name, response.usage)
    await run.journal.arecord(ModelCalled, pos=pos, model=model.name, request_digest=digest,
                              response=response.model_dump(mode="json"), cost_usd=cost,
                              latency_s=max(0.0, run.clock.now() - started),
                              **call_facts(model, request),
                              **_descriptions(request, response))
    run.probe(pos, model.name, "after_model")
    return response


async def _ask(run: RunInternals, pos: int, model: Model, request: ModelRequest) -> ModelResponse:
    """The live call: streamed to the run's delta sink when the settings ask for it and the
    model can; otherwise one ``complete``."""
    if not (request.settings.stream and isinstance(model, StreamingModel)):
        return await model.complete(request)
    sink = run.deltas
    run_id = run.run_id

    def on_delta(text: str) -> None:
        if sink is not None and text:
            sink(run_id, pos, text)

    return await model.stream(request, on_delta)


async def _record_failure(run: RunInternals, pos: int, model: Model, request: ModelRequest,
                          exc: BaseException, started: float) -> None:
    failure = classify_model_error(exc)
    await run.journal.arecord(ModelFailed, pos=pos, model=model.name,
                              request_digest=request.digest(),
                              failure=failure.type.value, error=error_record(exc),
                              latency_s=max(0.0, run.clock.now() - started),
                              **call_facts(model, request))


def call_facts(model: Model, request: ModelRequest) -> dict[str, Any]:
    """The optional trace facts of a call's journal entry: the model's ``server_address`` and
    ``server_port`` when it has them (a wrong type counts as none), and the request's
    messages and tools when ``settings.journal_input`` is on; nothing otherwise, so the entry
    is what it was before these facts existed."""
    facts: dict[str, Any] = {}
    address = getattr(model, "server_address", None)
    port = getattr(model, "server_port", None)
    if isinstance(address, str) and address:
        facts["server_address"] = address
        if isinstance(port, int) and not isinstance(port, bool):
            facts["server_port"] = port
    if request.settings.journal_input:
        facts["input"] = to_json(request.model_dump(mode="json", include={"messages", "tools"},
                                                     exclude_defaults=True),
                                 what=f"model {model.name!r} request")
    return facts


def _descriptions(request: ModelRequest, response: ModelResponse) -> dict[str, Any]:
    """``tool_descriptions`` of the tools ``response`` asks for (the request's descriptions,
    cut to ``TOOL_DESCRIPTION_CHARS``), or nothing."""
    asked = {call.name for call in response.tool_calls}
    found = {spec.name: _cut(spec.description) for spec in request.tools
             if spec.name in asked and spec.description}
    return {"tool_descriptions": found} if found else {}


def _cut(text: str) -> str:
    return text if len(text) <= TOOL_DESCRIPTION_CHARS else text[:TOOL_DESCRIPTION_CHARS - 1] + "…"
