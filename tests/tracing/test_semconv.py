"""Attribute names are the OpenTelemetry GenAI conventions' own; the package surface is pinned."""

from __future__ import annotations

import tether.tracing
from tether.tracing import semconv as sc


def test_genai_names_match_the_conventions() -> None:
    """Each gen_ai.* constant is spelled as the conventions spell it."""
    assert [
        sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_RESPONSE_MODEL, sc.GEN_AI_RESPONSE_FINISH_REASONS,
        sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_TOOL_NAME,
        sc.GEN_AI_TOOL_CALL_ID, sc.GEN_AI_TOOL_TYPE, sc.GEN_AI_CONVERSATION_ID,
        sc.GEN_AI_AGENT_NAME, sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.ERROR_TYPE,
    ] == [
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
        "gen_ai.response.model", "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.tool.name",
        "gen_ai.tool.call.id", "gen_ai.tool.type", "gen_ai.conversation.id",
        "gen_ai.agent.name", "gen_ai.input.messages", "gen_ai.output.messages", "error.type",
    ]
    assert (sc.OP_INVOKE_AGENT, sc.OP_CHAT, sc.OP_EXECUTE_TOOL) == (
        "invoke_agent", "chat", "execute_tool")


def test_tether_names_live_under_tether() -> None:
    """Every TETHER_* attribute is namespaced `tether.` and the names are distinct."""
    names = [getattr(sc, n) for n in sc.__all__ if n.startswith("TETHER_")]
    assert all(name.startswith("tether.") for name in names)
    assert len(set(names)) == len(names)


def test_the_tracing_surface_is_pinned() -> None:
    """tether.tracing exports exactly these names, sorted, each documented."""
    assert tether.tracing.__all__ == [
        "Item", "JsonlSink", "OTelSink", "Totals", "Trace", "build_trace", "export_run",
        "provider_of", "read_jsonl", "render_trace", "totals_line", "trace_to_json",
        "trace_tree",
    ]
    for name in tether.tracing.__all__:
        assert (getattr(tether.tracing, name).__doc__ or "").strip(), name
