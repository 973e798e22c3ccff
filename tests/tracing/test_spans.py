"""Span details: deterministic ids, rebased virtual time, the model's tool call ids, sessions
and principals, backoff spans, one error.type."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from tests.tracing import T0, agent_journal, failing_run, refund_run
from tether import (
    MemoryStore,
    RunContext,
    Runtime,
    SQLiteStore,
    ToolContext,
    VirtualClock,
    tool,
    workflow,
)
from tether.events import Event, RunFinished, RunStarted, RunStatus, StepFailed
from tether.tracing import export_run
from tether.tracing import semconv as sc
from tether.tracing.attributes import event_attributes, run_error_type
from tether.tracing.ids import root_span_id, span_id_of, trace_id_of
from tether.tracing.otel import OTelSink


class NoArgs(BaseModel):
    pass


REAL_NOW = 1_900_000_000.0  # any real date; the core never reads the wall clock itself


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def named(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_ids_are_derived_from_the_run_and_the_journal(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The same journal exported twice gives the same trace and span ids; runs differ."""
    store = MemoryStore()
    run_id = agent_journal(store)
    export_run(store.read(run_id), provider, run_id=run_id)
    export_run(store.read(run_id), provider, run_id=run_id)
    spans = exporter.get_finished_spans()
    first = sorted((s.context.span_id, s.name) for s in spans[:len(spans) // 2] if s.context)
    again = sorted((s.context.span_id, s.name) for s in spans[len(spans) // 2:] if s.context)
    assert first == again and len(set(first)) == len(first) == 6
    assert {s.context.trace_id for s in spans if s.context} == {trace_id_of(run_id)}
    assert trace_id_of(run_id) != trace_id_of("run_other")
    tool = named(spans)["execute_tool lookup_order"]
    assert tool.context is not None and tool.context.span_id == span_id_of(run_id, "tool", 4, 7)
    root = named(spans)["invoke_agent support_agent"]
    assert root.context is not None and root.context.span_id == root_span_id(run_id)


def test_rebasing_moves_every_time_by_one_offset_and_keeps_the_originals(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """rebase_time puts the run's start at that instant; spacing stays exact; the run-clock
    times ride along as attributes."""
    refund_run(MemoryStore(), [OTelSink(provider, rebase_time=REAL_NOW)])
    spans = named(exporter.get_finished_spans())
    root, refund = spans["invoke_workflow refund"], spans["execute_tool issue_refund"]
    assert root.start_time == round(REAL_NOW * 1e6) * 1000
    assert root.end_time is not None and refund.start_time is not None
    assert root.end_time - root.start_time == 32_200_000_000
    assert refund.start_time - root.start_time == 30_200_000_000
    assert attrs(refund)[sc.TETHER_RUN_CLOCK_START_S] == pytest.approx(T0 + 30.2)
    assert attrs(refund)[sc.TETHER_RUN_CLOCK_END_S] == pytest.approx(T0 + 32.2)
    assert attrs(root)[sc.TETHER_RUN_CLOCK_START_S] == T0
    event = next(e for e in root.events if e.name == "tether.timer_fired")
    assert event.timestamp - root.start_time == 30_200_000_000


def test_without_rebasing_there_are_no_run_clock_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The default keeps the run's own clock and adds nothing."""
    refund_run(MemoryStore(), [OTelSink(provider)])
    assert all(sc.TETHER_RUN_CLOCK_START_S not in attrs(s)
               for s in exporter.get_finished_spans())


def test_a_tool_call_a_model_asked_for_carries_the_models_call_id(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """gen_ai.tool.call.id is the id in the model's response; a workflow's own call keeps
    run:position."""
    store = MemoryStore()
    run_id = agent_journal(store)
    export_run(store.read(run_id), provider, run_id=run_id)
    tool = named(exporter.get_finished_spans())["execute_tool lookup_order"]
    assert attrs(tool)[sc.GEN_AI_TOOL_CALL_ID] == "call_1"
    exporter.clear()
    refund_id = refund_run(MemoryStore(), [OTelSink(provider)])
    refund = named(exporter.get_finished_spans())["execute_tool issue_refund"]
    assert attrs(refund)[sc.GEN_AI_TOOL_CALL_ID] == f"{refund_id}:3"


def test_session_and_principal_are_on_every_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A session's turn: session.id and its principal as user.id; a plain run has neither."""
    events: list[Event] = [RunStarted(seq=1, at=T0, workflow="desk", seed=1, session_id="sess-9",
                         input={"text": "hi", "principal": "ada@example.com"}),
              RunFinished(seq=2, at=T0 + 1, status=RunStatus.COMPLETED, result="ok")]
    export_run(events, provider, run_id="run_turn")
    (root,) = exporter.get_finished_spans()
    assert {sc.SESSION_ID: "sess-9", sc.USER_ID: "ada@example.com",
            sc.GEN_AI_CONVERSATION_ID: "sess-9"}.items() <= attrs(root).items()
    exporter.clear()
    refund_run(MemoryStore(), [OTelSink(provider)])
    assert all(sc.SESSION_ID not in attrs(s) and sc.USER_ID not in attrs(s)
               for s in exporter.get_finished_spans())


def test_backoff_waits_are_spans(provider: TracerProvider,
                                 exporter: InMemorySpanExporter) -> None:
    """A model call's backoff decision and a tool's re-issue after an ambiguous attempt each
    become a span covering the wait."""
    store = MemoryStore()
    run_id = agent_journal(store)
    export_run(store.read(run_id), provider, run_id=run_id)
    wait = named(exporter.get_finished_spans())["backoff openai:gpt-4o"]
    assert (wait.start_time, wait.end_time) == (round((T0 + 1.5) * 1e6) * 1000,
                                                round((T0 + 3.5) * 1e6) * 1000)
    assert {sc.TETHER_DELAY_S: 2.0, sc.TETHER_FAILURE_CLASS: "rate_limited",
            sc.TETHER_ATTEMPT: 1}.items() <= attrs(wait).items()
    assert wait.parent is not None and wait.parent.span_id == root_span_id(run_id)


def test_error_type_is_the_failure_class_everywhere(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The failed tool's span, the run's span and step events name the same class."""
    failing_run(MemoryStore(), [OTelSink(provider)])
    types = {s.name: attrs(s).get(sc.ERROR_TYPE) for s in exporter.get_finished_spans()}
    assert types == {"execute_tool close_order": "permanent_tool_error",
                     "invoke_workflow close": "permanent_tool_error"}
    # A failure without a class (a step's own exception): its type, on the event and the run.
    error: dict[str, Any] = {"type": "builtins.ValueError", "message": "no"}
    step = StepFailed(seq=3, at=T0, pos=0, call="step", name="charge", error=error)
    finished = RunFinished(seq=4, at=T0, status=RunStatus.FAILED, error=error)
    assert event_attributes(step)[sc.ERROR_TYPE] == run_error_type(finished) == (
        "builtins.ValueError")


def test_a_namespace_separates_runs_whose_ids_repeat(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The same run id in two namespaces makes two traces; one namespace, the same ids."""
    store = MemoryStore()
    run_id = agent_journal(store)
    for namespace in ("campaign-1", "campaign-2", "campaign-1"):
        export_run(store.read(run_id), provider, run_id=run_id, namespace=namespace)
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    traces = [s.context.trace_id for s in roots if s.context]
    assert len(traces) == 3 and traces[0] == traces[2] != traces[1]
    assert trace_id_of(run_id) not in traces
    assert traces[0] == trace_id_of(f"campaign-1/{run_id}")


def test_one_sink_sees_a_run_suspend_and_resume_and_sends_each_span_once(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A sink with a store forgets a suspended run and reads it back on resumption: the
    calls before and after the wait leave once each, under one root."""

    @tool(name="ping", args=NoArgs, result=dict[str, Any])
    async def ping(ctx: ToolContext, args: NoArgs) -> dict[str, Any]:
        return {"pong": True}

    @workflow(name="ask_then_ping")
    async def flow(ctx: RunContext) -> str:
        await ctx.call_tool(ping, {})
        answer = await ctx.wait_for("approval", timeout_s=3600)
        await ctx.call_tool(ping, {})
        return str(answer)

    store = SQLiteStore(":memory:")
    clock = VirtualClock(start=T0)
    runtime = Runtime(store, clock=clock, seed=5, workflows=[flow],
                      listeners=[OTelSink(provider, store=store)])
    run_id = asyncio.run(runtime.start(flow)).run_id
    assert [s.name for s in exporter.get_finished_spans()] == ["execute_tool ping"]
    clock.advance(5)
    runtime.resolve(run_id, "approval", "yes", by="ada")
    assert asyncio.run(runtime.resume(run_id)).status is RunStatus.COMPLETED
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["execute_tool ping", "execute_tool ping",
                                       "invoke_workflow ask_then_ping"]
    assert len({s.context.span_id for s in spans if s.context}) == 3
    assert spans[2].start_time == round(T0 * 1e6) * 1000
    store.close()


def test_a_queued_run_is_traced_by_the_worker_that_takes_it_up(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The enqueuer's sink keeps nothing; the worker's sink names the run from the store and
    sends its spans once, the run's span from the enqueue on."""

    @tool(name="ping", args=NoArgs, result=dict[str, Any])
    async def ping(ctx: ToolContext, args: NoArgs) -> dict[str, Any]:
        return {"pong": True}

    @workflow(name="queued_ping")
    async def flow(ctx: RunContext) -> str:
        await ctx.call_tool(ping, {})
        await ctx.call_tool(ping, {})
        return "done"

    store = SQLiteStore(":memory:")
    clock = VirtualClock(start=T0)
    enqueuer_sink = OTelSink(provider, store=store)
    enqueuer = Runtime(store, clock=clock, seed=6, workflows=[flow], listeners=[enqueuer_sink])
    run_id = enqueuer.enqueue(flow)
    assert enqueuer_sink._runs == {}  # re-read from the store by whoever takes it up
    clock.advance(2)
    worker = Runtime(store, clock=clock, seed=7, workflows=[flow],
                     listeners=[OTelSink(provider, store=store)])
    assert asyncio.run(worker.resume(run_id)).status is RunStatus.COMPLETED
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["execute_tool ping", "execute_tool ping",
                                       "invoke_workflow queued_ping"]
    assert spans[2].start_time == round(T0 * 1e6) * 1000
    assert {s.context.trace_id for s in spans if s.context} == {trace_id_of(run_id)}
    store.close()
