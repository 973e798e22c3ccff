"""OpenTelemetry spans from journals: live with :class:`OTelSink`, or afterwards with
:func:`export_run`.

Each run (or each part of a run one process executed) becomes one trace::

    invoke_agent {workflow}      INTERNAL  the run; steps, sleeps, waits and decisions not
    │                                      about a call are span events on it
    ├── chat {model}             CLIENT    one per model_called / model_failed
    └── execute_tool {tool}      INTERNAL  one per tool call position; retries, ambiguous
                                           outcomes and decisions are span events on it

Every timestamp comes from the journal (the run's clock), never from the exporting process, so
spans of a run under a :class:`~tether.clock.VirtualClock` show simulated time exactly.

Why spans are built from buffered events instead of opened as the run goes: a run can stop in
one process (suspended on a wait, or killed) and go on in another, so a span opened in the first
could never be ended. The sink keeps a run's events until the run finishes or suspends (or
:meth:`OTelSink.flush` is called) and then emits that stretch as a finished trace. The stretches
of one run share ``gen_ai.conversation.id`` and ``tether.run.id``; :func:`export_run` turns a
whole stored journal into a single trace.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> sink = OTelSink(TracerProvider())          # Runtime(listeners=[sink]) or rt.add_listener
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from tether import __version__
from tether.events import (
    Decision,
    Event,
    ModelCalled,
    RunFinished,
    RunStarted,
    RunStatus,
    ToolAmbiguous,
    ToolIntent,
    ToolResult,
    ToolRetry,
    WaitResolved,
    WaitStarted,
)
from tether.store.base import Store
from tether.tracing import semconv as sc
from tether.tracing.attributes import (
    decision_attributes,
    event_attributes,
    json_text,
    messages,
    output_messages,
    text_part,
)
from tether.tracing.timeline import Item, Trace, build_trace

__all__ = ["OTelSink", "export_run", "provider_of"]

logger = logging.getLogger(__name__)

#: Names the provider of a model (``gen_ai.provider.name``) from the model's name.
ProviderOf = Callable[[str], str]


# Model-id prefixes of the providers whose adapters or ids are common; the values are the
# conventions' well-known ``gen_ai.provider.name`` values.
_MODEL_PREFIXES = (("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
                   ("claude", "anthropic"), ("gemini", "gcp.gemini"), ("mistral", "mistral_ai"),
                   ("deepseek", "deepseek"), ("grok", "x_ai"), ("command", "cohere"))


def provider_of(model: str) -> str:
    """The provider of a model name: the prefix of ``provider:model`` (``openai:gpt-4o`` →
    ``openai``), else a known model-id prefix (``claude-…`` → ``anthropic``), else ``_OTHER``.

    Pass your own to ``OTelSink(provider=...)`` when names follow another scheme.
    """
    head, sep, _ = model.partition(":")
    if sep and head:
        return head
    lowered = model.lower()
    return next((p for prefix, p in _MODEL_PREFIXES if lowered.startswith(prefix)),
                sc.OTHER)


class OTelSink:
    """A journal listener that turns runs into spans through ``tracer_provider`` (by default
    the global one, looked up when spans are emitted).

    ``capture_content`` adds the opt-in content attributes (workflow input and result, model
    output, tool arguments and results). ``store`` lets a process that resumed a run name the
    run's workflow and session although it never saw its ``run_started``. Exporting never
    raises into the run: a failure is logged on the ``tether.tracing.otel`` logger.

    Call :meth:`flush` before the process exits: a run cut short there (a crash, a cancelled
    task) has not finished or suspended, so its last stretch is still buffered.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        capture_content: bool = False,
        store: Store | None = None,
        provider: ProviderOf = provider_of,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.capture_content = capture_content
        self.store = store
        self.provider = provider
        self._lock = threading.Lock()
        self._buffers: dict[str, list[Event]] = {}
        # Kept until the run finishes, so a run resumed in this process keeps its name.
        self._started: dict[str, RunStarted] = {}

    def __call__(self, run_id: str, event: Event) -> None:
        with self._lock:
            self._buffers.setdefault(run_id, []).append(event)
            if isinstance(event, RunStarted):
                self._started[run_id] = event
        # A wait_started is always followed by the run suspending (or, past a deadline
        # already, by wait_expired, which then opens the next stretch).
        if isinstance(event, RunFinished | WaitStarted):
            self.flush(run_id)

    def flush(self, run_id: str | None = None) -> None:
        """Emit what is buffered for ``run_id`` (default: every run) as finished spans."""
        with self._lock:
            ids = list(self._buffers) if run_id is None else [run_id]
            batches = [(rid, self._buffers.pop(rid)) for rid in ids if rid in self._buffers]
            starts = {rid: self._started.get(rid) for rid, _ in batches}
            for rid, events in batches:
                if any(isinstance(e, RunFinished) for e in events):
                    self._started.pop(rid, None)
        for rid, events in batches:
            try:
                self._export(rid, events, starts[rid])
            except Exception:  # tracing must never change a run's outcome
                logger.warning("could not export the spans of run %s", rid, exc_info=True)

    def _export(self, run_id: str, events: Sequence[Event], started: RunStarted | None) -> None:
        if started is None and self.store is not None:
            head = self.store.read(run_id)[:1]
            started = head[0] if head and isinstance(head[0], RunStarted) else None
        _emit_trace(build_trace(run_id, events, started=started), _tracer(self.tracer_provider),
                    capture_content=self.capture_content, provider=self.provider)


def export_run(
    events: Iterable[Event],
    tracer_provider: TracerProvider | None = None,
    *,
    run_id: str,
    capture_content: bool = False,
    provider: ProviderOf = provider_of,
) -> None:
    """Turn a stored journal into one trace, after the fact.

    ``run_id`` is needed because events do not carry it.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from tether.events import RunStarted
    >>> export_run([RunStarted(seq=1, at=0.0, workflow="w", seed=1)], TracerProvider(),
    ...            run_id="run_1")
    """
    _emit_trace(build_trace(run_id, events), _tracer(tracer_provider),
                capture_content=capture_content, provider=provider)


def _tracer(provider: TracerProvider | None) -> Tracer:
    chosen = provider if provider is not None else otel_trace.get_tracer_provider()
    return chosen.get_tracer("tether", __version__)


def _ns(at: float) -> int:
    # Whole microseconds: a float epoch time carries ~0.2 µs of noise below that.
    return round(at * 1_000_000) * 1_000


# -- mapping a trace to spans ----------------------------------------------------------------


def _emit_trace(trace: Trace, tracer: Tracer, *, capture_content: bool = False,
                provider: ProviderOf = provider_of) -> None:
    """Emit ``trace`` as finished spans: the run's span, then one per model and tool call."""
    common: dict[str, Any] = {sc.GEN_AI_CONVERSATION_ID: trace.conversation_id,
                              sc.TETHER_RUN_ID: trace.run_id}
    root = tracer.start_span(
        f"{sc.OP_INVOKE_AGENT} {trace.workflow}" if trace.workflow else sc.OP_INVOKE_AGENT,
        kind=SpanKind.INTERNAL, start_time=_ns(trace.started_at),
        attributes={**common, **_run_attributes(trace, provider, capture_content)},
    )
    context = otel_trace.set_span_in_context(root)
    bounds = (trace.started_at, trace.ended_at)
    for item in trace.items:
        if item.kind == "model":
            _model_span(tracer, context, item, common, bounds, capture_content, provider)
        elif item.kind == "tool":
            _tool_span(tracer, context, item, common, bounds, capture_content)
        else:
            for event in item.events:
                root.add_event(f"tether.{event.kind}", event_attributes(event), _ns(event.at))
    for event in trace.loose:
        if isinstance(event, WaitResolved):
            root.add_event(f"tether.{event.kind}", event_attributes(event), _ns(event.at))
    _set_run_status(root, trace)
    root.end(end_time=_ns(trace.ended_at))


def _run_attributes(trace: Trace, provider: ProviderOf, capture: bool) -> dict[str, Any]:
    totals = trace.totals
    providers = {provider(i.name) for i in trace.items if i.kind == "model"}
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
        sc.GEN_AI_PROVIDER_NAME: providers.pop() if len(providers) == 1 else sc.OTHER,
        sc.TETHER_RUN_STATUS: trace.status.value,
        sc.TETHER_RETRIES: totals.retries,
    }
    if trace.workflow:
        attrs[sc.GEN_AI_AGENT_NAME] = trace.workflow
    if totals.model_calls:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = totals.input_tokens
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = totals.output_tokens
        attrs[sc.TETHER_COST_USD] = totals.cost_usd
    if capture:
        started = next((e for e in trace.loose if isinstance(e, RunStarted)), None)
        if started is not None:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = messages("user", [text_part(started.input)])
        if trace.finished is not None and trace.finished.status is RunStatus.COMPLETED:
            result = text_part(trace.finished.result)
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = messages("assistant", [result])
    return attrs


def _set_run_status(root: Span, trace: Trace) -> None:
    finished = trace.finished
    if finished is None or finished.status not in (RunStatus.FAILED, RunStatus.ESCALATED):
        return
    error_type = (finished.error or {}).get("type") or finished.status.value
    root.set_attribute(sc.ERROR_TYPE, str(error_type))
    root.set_status(Status(StatusCode.ERROR, finished.reason or None))


def _child(tracer: Tracer, context: Context, name: str, kind: SpanKind, item: Item,
           attrs: Mapping[str, Any], bounds: tuple[float, float]) -> tuple[Span, int]:
    """Start a child span inside the run's bounds; returns it with its end time."""
    start = min(max(item.start_at, bounds[0]), bounds[1])
    end = min(max(item.end_at, start), bounds[1])
    span = tracer.start_span(name, context=context, kind=kind, attributes=attrs,
                             start_time=_ns(start))
    return span, _ns(end)


def _model_span(tracer: Tracer, context: Context, item: Item, common: Mapping[str, Any],
                bounds: tuple[float, float], capture: bool, provider: ProviderOf) -> None:
    event = item.events[0]
    attrs: dict[str, Any] = {
        **common,
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        sc.GEN_AI_PROVIDER_NAME: provider(item.name),
        sc.GEN_AI_REQUEST_MODEL: item.name,
        sc.TETHER_POSITION: item.pos,
        sc.TETHER_REQUEST_DIGEST: getattr(event, "request_digest", ""),
        sc.TETHER_RETRIES: item.retries,
    }
    if isinstance(event, ModelCalled):
        response = event.response
        if response.get("model"):
            attrs[sc.GEN_AI_RESPONSE_MODEL] = str(response["model"])
        if response.get("finish_reason"):
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [str(response["finish_reason"])]
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = item.input_tokens
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = item.output_tokens
        attrs[sc.TETHER_USAGE_CACHED_INPUT_TOKENS] = item.cached_input_tokens
        attrs[sc.TETHER_COST_USD] = item.cost_usd
        if capture:
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = output_messages(response)
    span, end = _child(tracer, context, f"{sc.OP_CHAT} {item.name}", SpanKind.CLIENT, item,
                       attrs, bounds)
    _finish_call(span, item, end)


def _tool_span(tracer: Tracer, context: Context, item: Item, common: Mapping[str, Any],
               bounds: tuple[float, float], capture: bool) -> None:
    intent = next((e for e in item.events if isinstance(e, ToolIntent)), None)
    ambiguous = next((e for e in item.events if isinstance(e, ToolAmbiguous)), None)
    result = next((e for e in item.events if isinstance(e, ToolResult)), None)
    attrs: dict[str, Any] = {
        **common,
        sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
        sc.GEN_AI_TOOL_NAME: item.name,
        sc.GEN_AI_TOOL_TYPE: sc.TOOL_TYPE_FUNCTION,
        # The model's own call id is not journaled; run and position name the call stably.
        sc.GEN_AI_TOOL_CALL_ID: f"{common[sc.TETHER_RUN_ID]}:{item.pos}",
        sc.TETHER_POSITION: item.pos,
        sc.TETHER_ATTEMPT: item.retries + 1,
        sc.TETHER_RETRIES: item.retries,
    }
    if intent is not None:
        attrs[sc.TETHER_EFFECT] = intent.effect
    elif ambiguous is None:
        attrs[sc.TETHER_EFFECT] = "read"  # only reads journal no intent
    key = intent.key if intent is not None else (ambiguous.key if ambiguous else None)
    if key:
        attrs[sc.TETHER_IDEMPOTENCY_KEY] = key
    if result is not None and result.reconciled:
        attrs[sc.TETHER_RECONCILED] = True
    if capture and intent is not None:
        attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = json_text(intent.args)
    if capture and result is not None:
        attrs[sc.GEN_AI_TOOL_CALL_RESULT] = json_text(result.result)
    span, end = _child(tracer, context, f"{sc.OP_EXECUTE_TOOL} {item.name}", SpanKind.INTERNAL,
                       item, attrs, bounds)
    for event in item.events:
        if isinstance(event, ToolRetry | ToolAmbiguous) or (
            isinstance(event, ToolIntent) and event.attempt > 1
        ):
            span.add_event(f"tether.{event.kind}", event_attributes(event), _ns(event.at))
    _finish_call(span, item, end)


def _finish_call(span: Span, item: Item, end: int) -> None:
    """Decisions as span events, the error status of a failed call, then the end."""
    domain = None
    for child in item.children:
        decision = child.events[0]
        if isinstance(decision, Decision):
            span.add_event(sc.EVENT_DECISION, decision_attributes(decision), _ns(decision.at))
            domain = domain or decision.data.get("domain")
    if item.status in ("failed", "unknown"):
        failure = item.failures[-1] if item.failures else sc.OTHER
        if item.status == "unknown":
            # Not a failure of the call: its outcome is not known (whatever the settling
            # attempts met on the way), and the class says so.
            failure = "ambiguous_write"
        span.set_attribute(sc.ERROR_TYPE, failure)
        span.set_attribute(sc.TETHER_FAILURE_CLASS, failure)
        if domain:
            span.set_attribute(sc.TETHER_FAILURE_DOMAIN, str(domain))
        span.set_status(Status(StatusCode.ERROR, item.detail or item.error_type or failure))
    span.end(end_time=end)
