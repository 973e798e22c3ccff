"""OpenTelemetry spans from journals: structure, conventions, clock times, errors, content."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.tracing import T0, agent_journal, approval_flow, failing_run, refund_run
from tether import MemoryStore, Runtime, SQLiteStore, VirtualClock
from tether.events import RunStatus
from tether.tracing import semconv as sc
from tether.tracing.ids import root_span_id, trace_id_of
from tether.tracing.otel import OTelSink, export_run, provider_of

CONTENT = (sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_TOOL_CALL_ARGUMENTS,
           sc.GEN_AI_TOOL_CALL_RESULT)


def ns(seconds: float) -> int:
    return round(seconds * 1_000_000) * 1_000


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_run_is_one_agent_span_with_a_child_per_tool_call(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """invoke_workflow {workflow} is the root; tool and backoff spans its children, one trace."""
    run_id = refund_run(MemoryStore(), [OTelSink(provider)])
    spans = exporter.get_finished_spans()
    named = by_name(spans)
    assert sorted(named) == ["backoff issue_refund", "execute_tool issue_refund",
                             "execute_tool lookup_order", "invoke_workflow refund"]
    root = named["invoke_workflow refund"]
    assert root.parent is None and root.kind is SpanKind.INTERNAL
    for span in spans:
        assert span.context is not None and root.context is not None
        assert span.context.trace_id == root.context.trace_id
        if span is not root:
            assert span.parent is not None and span.parent.span_id == root.context.span_id
            assert span.kind is SpanKind.INTERNAL
    assert {
        sc.GEN_AI_OPERATION_NAME: "invoke_workflow", sc.GEN_AI_WORKFLOW_NAME: "refund",
        sc.GEN_AI_CONVERSATION_ID: run_id, sc.TETHER_RUN_ID: run_id,
        sc.TETHER_RUN_STATUS: "completed", sc.TETHER_RETRIES: 1,
    }.items() <= attrs(root).items()
    assert root.status.status_code is StatusCode.UNSET


def test_span_times_are_the_run_clock_times(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Start and end come from the events' virtual-clock times, not the exporting process."""
    refund_run(MemoryStore(), [OTelSink(provider)])
    named = by_name(exporter.get_finished_spans())
    times = {name: (span.start_time, span.end_time) for name, span in named.items()}
    assert times == {
        "invoke_workflow refund": (ns(T0), ns(T0 + 32.2)),
        "execute_tool lookup_order": (ns(T0), ns(T0 + 0.2)),
        "execute_tool issue_refund": (ns(T0 + 30.2), ns(T0 + 32.2)),
        "backoff issue_refund": (ns(T0 + 30.7), ns(T0 + 31.7)),
    }


def test_tool_spans_carry_effect_key_attempts_and_retry_events(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A re-issued write shows effect, key, attempt 2, and its ambiguous first try as events."""
    run_id = refund_run(MemoryStore(), [OTelSink(provider)])
    named = by_name(exporter.get_finished_spans())
    refund = named["execute_tool issue_refund"]
    assert {
        sc.GEN_AI_OPERATION_NAME: "execute_tool", sc.GEN_AI_TOOL_NAME: "issue_refund",
        sc.GEN_AI_TOOL_TYPE: "function", sc.GEN_AI_TOOL_CALL_ID: f"{run_id}:3",
        sc.TETHER_POSITION: 3, sc.TETHER_EFFECT: "idempotent",
        sc.TETHER_IDEMPOTENCY_KEY: "refund:o-1", sc.TETHER_ATTEMPT: 2, sc.TETHER_RETRIES: 1,
        sc.GEN_AI_CONVERSATION_ID: run_id,
    }.items() <= attrs(refund).items()
    assert [(e.name, e.timestamp) for e in refund.events] == [
        ("tether.tool_ambiguous", ns(T0 + 30.7)), ("tether.tool_intent", ns(T0 + 31.7))]
    assert refund.status.status_code is StatusCode.UNSET
    assert attrs(named["execute_tool lookup_order"])[sc.TETHER_EFFECT] == "read"


def test_steps_and_sleeps_are_events_on_the_run_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """ctx.step and ctx.sleep show as timed events of the root span."""
    refund_run(MemoryStore(), [OTelSink(provider)])
    root = by_name(exporter.get_finished_spans())["invoke_workflow refund"]
    events = [(e.name, e.timestamp, dict(e.attributes or {})) for e in root.events]
    assert events == [
        ("tether.step", ns(T0), {sc.TETHER_POSITION: 0, sc.TETHER_NAME: "validate"}),
        ("tether.timer_started", ns(T0 + 0.2),
         {sc.TETHER_POSITION: 2, sc.TETHER_WAKE_AT: T0 + 30.2}),
        ("tether.timer_fired", ns(T0 + 30.2), {sc.TETHER_POSITION: 2}),
    ]


def test_model_spans_follow_the_genai_conventions(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """chat {model} spans are CLIENT with provider, models, finish reasons, usage and cost."""
    store = MemoryStore()
    run_id = agent_journal(store)
    export_run(store.read(run_id), provider, run_id=run_id)
    spans = exporter.get_finished_spans()
    chats = [s for s in spans if s.name == "chat openai:gpt-4o"]
    assert len(chats) == 3 and all(s.kind is SpanKind.CLIENT for s in chats)
    asks = chats[1]
    assert {
        sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "openai:gpt-4o", sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
        sc.GEN_AI_RESPONSE_FINISH_REASONS: ("tool_calls",), sc.GEN_AI_USAGE_INPUT_TOKENS: 1000,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 200, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 100,
        sc.TETHER_COST_USD: 0.03, sc.TETHER_POSITION: 3, sc.GEN_AI_CONVERSATION_ID: "sess-1",
        sc.TETHER_REQUEST_DIGEST: "d3",
    }.items() <= attrs(asks).items()
    assert (asks.start_time, asks.end_time) == (ns(T0 + 3.5), ns(T0 + 5.0))
    root = by_name(spans)["invoke_agent support_agent"]
    assert {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_USAGE_INPUT_TOKENS: 1030,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 204}.items() <= attrs(root).items()
    assert attrs(root)[sc.TETHER_COST_USD] == pytest.approx(0.042)


def test_a_failed_model_call_is_an_error_span_with_its_decision(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """ModelFailed sets ERROR and error.type to the failure class; the retry is a span event."""
    store = MemoryStore()
    run_id = agent_journal(store)
    export_run(store.read(run_id), provider, run_id=run_id)
    failed = next(s for s in exporter.get_finished_spans() if s.name.startswith("chat"))
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "429: slow down"
    assert {sc.ERROR_TYPE: "rate_limited", sc.TETHER_FAILURE_CLASS: "rate_limited",
            sc.TETHER_FAILURE_DOMAIN: "infrastructure",
            sc.TETHER_RETRIES: 1}.items() <= attrs(failed).items()
    (decision,) = failed.events
    assert decision.name == "tether.decision" and decision.timestamp == ns(T0 + 1.5)
    assert dict(decision.attributes or {}) == {
        sc.TETHER_DECISION_NAME: "recover", sc.TETHER_POSITION: 1,
        sc.TETHER_FAILURE_CLASS: "rate_limited", sc.TETHER_FAILURE_DOMAIN: "infrastructure",
        sc.TETHER_DECISION_ACTION: "backoff", sc.TETHER_ATTEMPT: 1, sc.TETHER_DELAY_S: 2.0,
        "tether.decision.message": "RateLimited: 429: slow down",
        "tether.decision.retry_after_s": 2.0}


def test_a_failed_run_marks_its_span_and_the_failed_tool(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A permanent tool failure: tool span ERROR (`permanent`), run span ERROR (ToolFailed)."""
    failing_run(MemoryStore(), [OTelSink(provider)])
    named = by_name(exporter.get_finished_spans())
    tool_span, root = named["execute_tool close_order"], named["invoke_workflow close"]
    assert tool_span.status.status_code is StatusCode.ERROR
    assert attrs(tool_span)[sc.ERROR_TYPE] == "permanent_tool_error"
    assert root.status.status_code is StatusCode.ERROR
    # One error.type for one failure: the failure class, on the tool's span and the run's.
    assert attrs(root)[sc.ERROR_TYPE] == "permanent_tool_error"
    assert attrs(root)[sc.TETHER_RUN_STATUS] == "failed"


def test_content_is_recorded_only_when_opted_in(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """No message, argument or result attributes by default; all of them with capture_content."""
    store = MemoryStore()
    refund_id = refund_run(store)
    agent_id = agent_journal(store)
    for run_id in (refund_id, agent_id):
        export_run(store.read(run_id), provider, run_id=run_id)
    assert all(not set(CONTENT) & set(attrs(s)) for s in exporter.get_finished_spans())
    exporter.clear()
    for run_id in (refund_id, agent_id):
        export_run(store.read(run_id), provider, run_id=run_id, capture_content=True)
    named = by_name(exporter.get_finished_spans())
    refund = attrs(named["execute_tool issue_refund"])
    assert json.loads(refund[sc.GEN_AI_TOOL_CALL_ARGUMENTS]) == {"order_id": "o-1"}
    assert json.loads(refund[sc.GEN_AI_TOOL_CALL_RESULT]) == {"refund_id": "re_refund:o-1"}
    root = attrs(named["invoke_agent support_agent"])
    assert json.loads(root[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": '{"question":"where is o-1?"}'}]}]
    assert json.loads(root[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == (
        "It ships tomorrow.")
    chats = [s for s in exporter.get_finished_spans() if s.name.startswith("chat")]
    assert json.loads(attrs(chats[1])[sc.GEN_AI_OUTPUT_MESSAGES]) == [{
        "role": "assistant", "finish_reason": "tool_calls",
        "parts": [{"type": "tool_call", "id": "call_1", "name": "lookup_order",
                   "arguments": '{"order_id":"o-1"}'}]}]


def test_a_run_suspended_in_one_process_and_resumed_in_another_is_one_trace(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The run's span leaves when the run ends, from the whole journal: one trace, one root."""
    path = tmp_path / "runs.db"
    clock = VirtualClock(start=T0)
    first = Runtime(SQLiteStore(path), clock=clock, seed=1, workflows=[approval_flow],
                    listeners=[OTelSink(provider)])
    run_id = asyncio.run(first.start(approval_flow)).run_id
    assert exporter.get_finished_spans() == ()  # nothing over yet but the wait

    clock.advance(60)
    store = SQLiteStore(path)
    second = Runtime(store, clock=clock, seed=2, workflows=[approval_flow],
                     listeners=[OTelSink(provider, store=store)])
    second.resolve(run_id, "approval", "yes", by="ada")
    assert asyncio.run(second.resume(run_id)).status is RunStatus.COMPLETED
    (root,) = exporter.get_finished_spans()
    assert root.name == "invoke_workflow approval_flow"
    assert {sc.TETHER_RUN_STATUS: "completed", sc.GEN_AI_CONVERSATION_ID: run_id,
            sc.GEN_AI_WORKFLOW_NAME: "approval_flow"}.items() <= attrs(root).items()
    assert (root.start_time, root.end_time) == (ns(T0), ns(T0 + 60))
    assert root.context is not None and root.context.trace_id == trace_id_of(run_id)
    assert root.context.span_id == root_span_id(run_id)
    assert [e.name for e in root.events] == ["tether.wait_started", "tether.wait_resolved"]
    assert dict(root.events[1].attributes or {}) == {sc.TETHER_NAME: "approval",
                                                     sc.TETHER_RESOLVED_BY: "ada"}
    first.store.close()
    store.close()


def test_call_spans_leave_as_the_run_moves_past_them(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A call's span (with its decisions) leaves once a later event closes it; the last open
    call and the run's span wait; flush() sends nothing twice."""
    sink = OTelSink(provider)
    run_id = agent_journal(MemoryStore(), [sink], finish=False)
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["chat openai:gpt-4o", "backoff openai:gpt-4o", "chat openai:gpt-4o",
                     "execute_tool lookup_order"]
    failed = exporter.get_finished_spans()[0]
    assert [e.name for e in failed.events] == ["tether.decision"]
    sink.flush()
    assert len(exporter.get_finished_spans()) == 4
    assert all(s.context is not None and s.context.trace_id == trace_id_of(run_id)
               and s.parent is not None and s.parent.span_id == root_span_id(run_id)
               for s in exporter.get_finished_spans())


def test_export_after_the_fact_matches_the_live_sink(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """export_run of a stored journal gives the spans the live sink gave, times included."""
    store = MemoryStore()
    run_id = refund_run(store, [OTelSink(provider)])
    live = exporter.get_finished_spans()
    exporter.clear()
    export_run(store.read(run_id), provider, run_id=run_id)
    after = exporter.get_finished_spans()

    def shape(spans: Sequence[ReadableSpan]) -> list[tuple[Any, ...]]:
        return sorted((s.name, s.kind, s.start_time, s.end_time, sorted(attrs(s).items()),
                       [e.name for e in s.events]) for s in spans)

    assert shape(live) == shape(after)


def test_a_broken_tracer_never_breaks_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """An exporting failure is logged and the run still completes."""

    class Broken(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("collector is down")

    with caplog.at_level(logging.WARNING, logger="tether.tracing.otel"):
        refund_run(MemoryStore(), [OTelSink(Broken())])
    assert "could not export the spans of run" in caplog.text


def test_provider_comes_from_the_model_name() -> None:
    """`openai:gpt-4o` names openai; known model ids name their provider; others `_OTHER`."""
    assert provider_of("openai:gpt-4o") == "openai"
    assert provider_of("gpt-4o-mini") == "openai"
    assert provider_of("claude-sonnet-4-5") == "anthropic"
    assert provider_of("scripted") == "_OTHER"
    assert provider_of(":odd") == "_OTHER"
