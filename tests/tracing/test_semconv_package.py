"""Every attribute name and enumerated value tether emits is the installed
``opentelemetry-semantic-conventions`` package's own, and none is one it retired.

The package marks each ``gen_ai`` constant "Deprecated: Moved to the OpenTelemetry GenAI
semantic conventions repository": the name is current, its home moved. A name the package says
was *replaced* or *removed* fails here, as does a name it does not know.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.tracing import T0, agent_journal, approval_flow, failing_run, refund_run
from tether import MemoryStore, Runtime, VirtualClock
from tether.events import ModelCalled, RunFinished, RunStarted, RunStatus, ToolResult
from tether.tracing import export_run
from tether.tracing import semconv as sc
from tether.tracing.otel import OTelSink

MODULES = (
    "opentelemetry.semconv._incubating.attributes.gen_ai_attributes",
    "opentelemetry.semconv.attributes.error_attributes",
    "opentelemetry.semconv.attributes.server_attributes",
    "opentelemetry.semconv._incubating.attributes.session_attributes",
    "opentelemetry.semconv._incubating.attributes.user_attributes",
)


def package_names() -> dict[str, str]:
    """Every attribute name the modules define, with its docstring ('' when it has none)."""
    names: dict[str, str] = {}
    for module_name in MODULES:
        tree = ast.parse(Path(inspect.getfile(importlib.import_module(module_name))).read_text())
        body = tree.body
        for node, following in zip(body, [*body[1:], None], strict=True):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                doc = ""
                if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                        and isinstance(following.value.value, str)):
                    doc = following.value.value.strip()
                names[node.value.value] = doc
    return names


def retired(doc: str) -> bool:
    """Whether the package says the name was replaced or removed (not merely moved)."""
    return doc.startswith("Deprecated:") and not doc.startswith("Deprecated: Moved to")


def emitted_spans() -> list[ReadableSpan]:
    """The spans of every kind of run the tests know, content captured, a session's principal
    set."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OTelSink(provider, capture_content=True, rebase_time=T0 + 86_400)
    refund_run(MemoryStore(), [sink])
    failing_run(MemoryStore(), [sink])
    agent_journal(MemoryStore(), [sink])
    runtime = Runtime(MemoryStore(), clock=VirtualClock(start=T0), seed=3,
                      workflows=[approval_flow], listeners=[sink])
    asyncio.run(runtime.start(approval_flow))
    turn = [RunStarted(seq=1, at=T0, workflow="desk", seed=1, session_id="sess-9",
                       input={"text": "hi", "principal": "ada@example.com"})]
    export_run(turn, provider, run_id="run_turn", capture_content=True)
    export_run(call_facts_journal(), provider, run_id="run_facts", capture_content=True)
    return list(exporter.get_finished_spans())


def call_facts_journal() -> list[Any]:
    """A model call with every optional fact journaled (response id, server, tool
    descriptions, the request itself), the tool it asked for, the end."""
    request = {"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "where is o-1?"}],
               "tools": [{"name": "lookup_order", "description": "Look up an order.",
                          "parameters": {"type": "object"}}]}
    response = {"id": "chatcmpl-9", "text": "", "model": "gpt-4o", "finish_reason": "tool_calls",
                "tool_calls": [{"id": "call_9", "name": "lookup_order", "arguments": "{}"}]}
    return [RunStarted(seq=1, at=T0, workflow="support", seed=1),
            ModelCalled(seq=2, at=T0 + 1, pos=0, model="gpt-4o", request_digest="d",
                        response=response, server_address="api.openai.com", server_port=443,
                        tool_descriptions={"lookup_order": "Look up an order."}, input=request),
            ToolResult(seq=3, at=T0 + 2, pos=1, tool="lookup_order", result={}),
            RunFinished(seq=4, at=T0 + 3, status=RunStatus.COMPLETED, result="ok")]


def emitted_names(spans: list[ReadableSpan]) -> Iterator[str]:
    for span in spans:
        yield from (span.attributes or {})
        for event in span.events:
            yield from (event.attributes or {})


@pytest.fixture(scope="module")
def spans() -> list[ReadableSpan]:
    return emitted_spans()


def test_every_emitted_name_is_a_current_package_name(spans: list[ReadableSpan]) -> None:
    """Names outside ``tether.*`` are the package's constants, none replaced or removed."""
    known = package_names()
    names = set(emitted_names(spans))
    assert {sc.SESSION_ID, sc.USER_ID, sc.GEN_AI_TOOL_CALL_ID, sc.ERROR_TYPE,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.GEN_AI_WORKFLOW_NAME,
            sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_RESPONSE_ID,
            sc.SERVER_ADDRESS, sc.SERVER_PORT, sc.GEN_AI_TOOL_DESCRIPTION,
            sc.GEN_AI_SYSTEM_INSTRUCTIONS, sc.GEN_AI_TOOL_DEFINITIONS} <= names
    foreign = sorted(n for n in names if not n.startswith("tether."))
    assert [n for n in foreign if n not in known] == []
    assert [(n, known[n]) for n in foreign if retired(known[n])] == []


def test_every_convention_constant_of_semconv_is_current() -> None:
    """The module's own non-tether constants (emitted or not) pass the same check."""
    known = package_names()
    values = [getattr(sc, n) for n in sc.__all__
              if not n.startswith(("TETHER_", "OP_", "OTHER", "EVENT_", "SPAN_", "TOOL_TYPE"))]
    assert values and [v for v in values if v not in known or retired(known[v])] == []


def test_a_retired_name_would_fail() -> None:
    """The check can fail: gen_ai.system (replaced) and gen_ai.completion (removed) do."""
    known = package_names()
    assert retired(known["gen_ai.system"]) and retired(known["gen_ai.completion"])
    assert not retired(known[sc.GEN_AI_PROVIDER_NAME])


def test_enumerated_values_are_the_package_members(spans: list[ReadableSpan]) -> None:
    """Operation names and providers are members of the package's enums (``gen_ai.tool.type``
    has no enum there)."""
    gen_ai: Any = importlib.import_module(MODULES[0])
    operations = {m.value for m in gen_ai.GenAiOperationNameValues}
    providers = {m.value for m in gen_ai.GenAiProviderNameValues} | {sc.OTHER}
    used = {str((s.attributes or {})[sc.GEN_AI_OPERATION_NAME]) for s in spans
            if sc.GEN_AI_OPERATION_NAME in (s.attributes or {})}
    assert used == {sc.OP_CHAT, sc.OP_EXECUTE_TOOL, sc.OP_INVOKE_AGENT, sc.OP_INVOKE_WORKFLOW}
    assert used <= operations
    assert {str((s.attributes or {})[sc.GEN_AI_PROVIDER_NAME]) for s in spans
            if sc.GEN_AI_PROVIDER_NAME in (s.attributes or {})} <= providers
