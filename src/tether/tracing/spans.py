"""How a run's trace items become OpenTelemetry spans (see :mod:`tether.tracing.otel`).

One run is one trace::

    invoke_agent {workflow}     INTERNAL  the run (``invoke_workflow`` when it called no model);
    │                                     steps, sleeps, waits and root decisions are events
    ├── chat {model}            CLIENT    one per model_called / model_failed
    ├── execute_tool {tool}     INTERNAL  one per tool call position; ambiguous outcomes,
    │                                     re-issues and decisions are events on it
    └── backoff {tool|model}    INTERNAL  each wait before a retry (its delay on the run clock)

Every id comes from :mod:`tether.tracing.ids`, so spans exported by different processes fit
together, and every time from the journal, moved by ``offset_s`` when the export rebases the
run's clock (the original times then ride along as ``tether.run_clock.*``).

>>> from opentelemetry.sdk.trace import TracerProvider
>>> writer = SpanWriter(TracerProvider().get_tracer("doc"), "run_1")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)

from tether.events import (
    Decision,
    ModelCalled,
    ModelFailed,
    RunStarted,
    RunStatus,
    ToolAmbiguous,
    ToolIntent,
    ToolResult,
    ToolRetry,
    WaitResolved,
)
from tether.retries import is_retry_decision
from tether.tracing import semconv as sc
from tether.tracing.attributes import (
    decision_attributes,
    event_attributes,
    input_attributes,
    json_text,
    messages,
    output_messages,
    run_error_type,
    text_part,
)
from tether.tracing.ids import planned, root_span_id, span_id_of, trace_id_of
from tether.tracing.timeline import Item, Trace

__all__ = ["ProviderOf", "SpanWriter", "asked_calls", "provider_of", "tool_call_ids"]

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


def _ns(at: float) -> int:
    # Whole microseconds: a float epoch time carries ~0.2 µs of noise below that.
    return round(at * 1_000_000) * 1_000


def asked_calls(items: Iterable[Item]) -> dict[int, tuple[str, str]]:
    """What the model said of each tool call it asked for, by the tool item's sequence number:
    ``(call id, tool description)``, either ``""`` when unknown. A tool item takes the first
    unused call of its name the latest model response asked for; the description is the one
    that response's entry journaled (``ModelCalled.tool_descriptions``)."""
    asked: list[tuple[str, str]] = []
    described: dict[str, str] = {}
    found: dict[int, tuple[str, str]] = {}
    for item in sorted(items, key=lambda i: i.seq):
        event = item.events[0] if item.events else None
        if item.kind == "model" and isinstance(event, ModelCalled):
            asked = [(str(c.get("name", "")), str(c.get("id") or ""))
                     for c in event.response.get("tool_calls") or ()]
            described = event.tool_descriptions
        elif item.kind == "tool":
            match = next((n for n, (name, _) in enumerate(asked) if name == item.name), None)
            if match is not None:
                _, call_id = asked.pop(match)
                found[item.seq] = (call_id, described.get(item.name, ""))
    return found


def tool_call_ids(items: Iterable[Item]) -> dict[int, str]:
    """The model's own id of each tool call, by the tool item's sequence number (see
    :func:`asked_calls`)."""
    return {seq: call_id for seq, (call_id, _) in asked_calls(items).items() if call_id}


@dataclass
class SpanWriter:
    """Writes one run's spans through ``tracer``.

    ``started`` is the run's ``run_started`` (for its session, principal and start);
    ``offset_s`` is added to every journal time (rebasing; ``None`` keeps the run's clock);
    ``namespace`` goes into every id with the run id (see :class:`~tether.tracing.OTelSink`);
    ``call_ids`` and ``descriptions`` are the model's id and the tool's description of each
    tool item, by its sequence number (see :func:`asked_calls`).
    """

    tracer: Tracer
    run_id: str
    capture_content: bool = False
    provider: ProviderOf = provider_of
    started: RunStarted | None = None
    offset_s: float | None = None
    call_ids: dict[int, str] = field(default_factory=dict)
    namespace: str = ""
    descriptions: dict[int, str] = field(default_factory=dict)

    @property
    def id_key(self) -> str:
        """What the trace and span ids are derived from: the run id, in its namespace."""
        return f"{self.namespace}/{self.run_id}" if self.namespace else self.run_id

    # -- shared ------------------------------------------------------------------------------

    def common(self) -> dict[str, Any]:
        """Attributes every span of the run carries: conversation, run, session and user."""
        started = self.started
        session = started.session_id if started is not None else None
        attrs: dict[str, Any] = {sc.GEN_AI_CONVERSATION_ID: session or self.run_id,
                                 sc.TETHER_RUN_ID: self.run_id}
        if session:
            attrs[sc.SESSION_ID] = session
        principal = _principal(started)
        if principal:
            attrs[sc.USER_ID] = principal
        return attrs

    def _time(self, at: float) -> int:
        return _ns(at + (self.offset_s or 0.0))

    def _clock(self, start: float, end: float) -> dict[str, Any]:
        if self.offset_s is None:
            return {}
        return {sc.TETHER_RUN_CLOCK_START_S: start, sc.TETHER_RUN_CLOCK_END_S: end}

    def _root_context(self) -> Context:
        parent = SpanContext(trace_id_of(self.id_key), root_span_id(self.id_key),
                             is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return otel_trace.set_span_in_context(NonRecordingSpan(parent))

    def _start(self, span_id: int, name: str, kind: SpanKind, attrs: Mapping[str, Any],
               start: float, end: float) -> Span:
        attrs = {**self.common(), **attrs, **self._clock(start, end)}
        with planned(self.tracer, span_id):
            return self.tracer.start_span(name, context=self._root_context(), kind=kind,
                                          attributes=attrs, start_time=self._time(start))

    # -- calls -------------------------------------------------------------------------------

    def call(self, item: Item, not_before: float | None = None) -> None:
        """Emit the span of a model or tool item, and the spans of its backoff waits."""
        start = item.start_at if not_before is None else max(item.start_at, not_before)
        end = max(item.end_at, start)
        if item.kind == "model":
            span = self._start(span_id_of(self.id_key, "model", item.pos, item.seq),
                               f"{sc.OP_CHAT} {item.name}", SpanKind.CLIENT,
                               self._model_attributes(item), start, end)
        else:
            span = self._start(span_id_of(self.id_key, "tool", item.pos, item.seq),
                               f"{sc.OP_EXECUTE_TOOL} {item.name}", SpanKind.INTERNAL,
                               self._tool_attributes(item), start, end)
            for event in item.events:
                if isinstance(event, ToolRetry | ToolAmbiguous) or (
                        isinstance(event, ToolIntent) and event.attempt > 1):
                    span.add_event(f"tether.{event.kind}", event_attributes(event),
                                   self._time(event.at))
        self._finish_call(span, item, self._time(end))
        for seq, pos, at, delay_s, attrs in _backoffs(item):
            self._start(span_id_of(self.id_key, "backoff", pos, seq),
                        f"{sc.SPAN_BACKOFF} {item.name}", SpanKind.INTERNAL, attrs,
                        at, at + delay_s).end(end_time=self._time(at + delay_s))

    def _model_attributes(self, item: Item) -> dict[str, Any]:
        event = item.events[0]
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_PROVIDER_NAME: self.provider(item.name),
            sc.GEN_AI_REQUEST_MODEL: item.name,
            sc.TETHER_POSITION: item.pos,
            sc.TETHER_REQUEST_DIGEST: getattr(event, "request_digest", ""),
            sc.TETHER_RETRIES: item.retries,
        }
        if isinstance(event, ModelCalled | ModelFailed):
            if event.server_address:
                attrs[sc.SERVER_ADDRESS] = event.server_address
                if event.server_port is not None:
                    attrs[sc.SERVER_PORT] = event.server_port
            if self.capture_content and event.input is not None:
                attrs.update(input_attributes(event.input))
        if isinstance(event, ModelCalled):
            response = event.response
            if response.get("id"):
                attrs[sc.GEN_AI_RESPONSE_ID] = str(response["id"])
            if response.get("model"):
                attrs[sc.GEN_AI_RESPONSE_MODEL] = str(response["model"])
            if response.get("finish_reason"):
                attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [str(response["finish_reason"])]
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = item.input_tokens
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = item.output_tokens
            attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = item.cached_input_tokens
            attrs[sc.TETHER_COST_USD] = item.cost_usd
            if self.capture_content:
                attrs[sc.GEN_AI_OUTPUT_MESSAGES] = output_messages(response)
        return attrs

    def _tool_attributes(self, item: Item) -> dict[str, Any]:
        intent = next((e for e in item.events if isinstance(e, ToolIntent)), None)
        ambiguous = next((e for e in item.events if isinstance(e, ToolAmbiguous)), None)
        result = next((e for e in item.events if isinstance(e, ToolResult)), None)
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.GEN_AI_TOOL_NAME: item.name,
            sc.GEN_AI_TOOL_TYPE: sc.TOOL_TYPE_FUNCTION,
            # The model's own id when a model asked for the call; a tool a workflow calls
            # itself has none, and the run and position name the call stably instead.
            sc.GEN_AI_TOOL_CALL_ID: self.call_ids.get(item.seq, f"{self.run_id}:{item.pos}"),
            sc.TETHER_POSITION: item.pos,
            sc.TETHER_ATTEMPT: item.retries + 1,
            sc.TETHER_RETRIES: item.retries,
        }
        description = self.descriptions.get(item.seq)
        if description:
            attrs[sc.GEN_AI_TOOL_DESCRIPTION] = description
        if intent is not None:
            attrs[sc.TETHER_EFFECT] = intent.effect
        elif ambiguous is None:
            attrs[sc.TETHER_EFFECT] = "read"  # only reads journal no intent
        key = intent.key if intent is not None else (ambiguous.key if ambiguous else None)
        if key:
            attrs[sc.TETHER_IDEMPOTENCY_KEY] = key
        if result is not None and result.reconciled:
            attrs[sc.TETHER_RECONCILED] = True
        if self.capture_content and intent is not None:
            attrs[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = json_text(intent.args)
        if self.capture_content and result is not None:
            attrs[sc.GEN_AI_TOOL_CALL_RESULT] = json_text(result.result)
        return attrs

    def _finish_call(self, span: Span, item: Item, end: int) -> None:
        """Decisions as span events, the error status of a failed call, then the end."""
        domain = None
        for child in item.children:
            decision = child.events[0]
            if isinstance(decision, Decision):
                span.add_event(sc.EVENT_DECISION, decision_attributes(decision),
                               self._time(decision.at))
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

    # -- the run -----------------------------------------------------------------------------

    def root(self, trace: Trace) -> None:
        """Emit the run's span over ``trace`` (the whole journal, or what is known of it)."""
        start, end = trace.started_at, trace.ended_at
        attrs = {**self.common(), **self._run_attributes(trace), **self._clock(start, end)}
        operation = attrs[sc.GEN_AI_OPERATION_NAME]
        name = f"{operation} {trace.workflow}" if trace.workflow else operation
        with planned(self.tracer, root_span_id(self.id_key), trace_id_of(self.id_key)):
            root = self.tracer.start_span(name, context=Context(), kind=SpanKind.INTERNAL,
                                          attributes=attrs, start_time=self._time(start))
        for item in trace.items:
            if item.kind not in ("model", "tool"):
                for event in item.events:
                    root.add_event(f"tether.{event.kind}", event_attributes(event),
                                   self._time(event.at))
        for event in trace.loose:
            if isinstance(event, WaitResolved):
                root.add_event(f"tether.{event.kind}", event_attributes(event),
                               self._time(event.at))
        finished = trace.finished
        if finished is not None and finished.status in (RunStatus.FAILED, RunStatus.ESCALATED):
            root.set_attribute(sc.ERROR_TYPE, run_error_type(finished))
            root.set_status(Status(StatusCode.ERROR, finished.reason or None))
        root.end(end_time=self._time(end))

    def _run_attributes(self, trace: Trace) -> dict[str, Any]:
        totals = trace.totals
        providers = {self.provider(i.name) for i in trace.items if i.kind == "model"}
        agent = totals.model_calls > 0
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT if agent else sc.OP_INVOKE_WORKFLOW,
            sc.TETHER_RUN_STATUS: trace.status.value,
            sc.TETHER_RETRIES: totals.retries,
        }
        if agent:
            attrs[sc.GEN_AI_PROVIDER_NAME] = providers.pop() if len(providers) == 1 else sc.OTHER
        if trace.workflow:
            attrs[sc.GEN_AI_AGENT_NAME if agent else sc.GEN_AI_WORKFLOW_NAME] = trace.workflow
        if totals.model_calls:
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = totals.input_tokens
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = totals.output_tokens
            attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = totals.cached_input_tokens
            attrs[sc.TETHER_COST_USD] = totals.cost_usd
        if self.capture_content:
            started = trace.started
            if started is not None:
                attrs[sc.GEN_AI_INPUT_MESSAGES] = messages("user", [text_part(started.input)])
            if trace.finished is not None and trace.finished.status is RunStatus.COMPLETED:
                result = text_part(trace.finished.result)
                attrs[sc.GEN_AI_OUTPUT_MESSAGES] = messages("assistant", [result])
        return attrs


def _principal(started: RunStarted | None) -> str | None:
    """The principal a session's turn runs for: its task input carries it."""
    if started is None or not started.session_id or not isinstance(started.input, dict):
        return None
    principal = started.input.get("principal")
    return principal if isinstance(principal, str) and principal else None


_Backoff = tuple[int, int | None, float, float, dict[str, Any]]


def _backoffs(item: Item) -> list[_Backoff]:
    """The waits before a call's retries: ``(seq, pos, at, delay_s, attributes)`` each."""
    out: list[_Backoff] = []
    events = list(item.events)
    for n, event in enumerate(events):
        if isinstance(event, ToolRetry) and event.delay_s > 0:
            out.append((event.seq, event.pos, event.at, event.delay_s,
                        _backoff_attrs(event.pos, event.attempt, event.failure, event.delay_s)))
        elif isinstance(event, ToolAmbiguous):
            again = next((e for e in events[n + 1:] if isinstance(e, ToolIntent)), None)
            if again is not None and again.at > event.at:
                out.append((event.seq, event.pos, event.at, again.at - event.at,
                            _backoff_attrs(event.pos, event.attempt, "ambiguous_write",
                                           again.at - event.at)))
    for child in item.children:
        decision = child.events[0]
        delay_s = decision.data.get("delay_s") if isinstance(decision, Decision) else None
        if (isinstance(decision, Decision) and is_retry_decision(decision)
                and isinstance(delay_s, int | float) and delay_s > 0):
            out.append((decision.seq, decision.pos, decision.at, float(delay_s),
                        _backoff_attrs(decision.pos, decision.data.get("attempt"),
                                       decision.data.get("failure"), float(delay_s))))
    return out


def _backoff_attrs(pos: int | None, attempt: Any, failure: Any, delay_s: float) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.TETHER_DELAY_S: delay_s}
    if pos is not None:
        attrs[sc.TETHER_POSITION] = pos
    if isinstance(attempt, int):
        attrs[sc.TETHER_ATTEMPT] = attempt
    if failure:
        attrs[sc.TETHER_FAILURE_CLASS] = str(failure)
    return attrs
