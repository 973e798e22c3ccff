"""Showing a trace: the rich tree with its totals line, and the JSON form."""

from __future__ import annotations

import json

from rich.console import Console

from tests.tracing import agent_journal, refund_run
from tether import MemoryStore
from tether.tracing.render import render_trace, totals_line, trace_to_json
from tether.tracing.timeline import Totals, build_trace


def _agent_trace() -> tuple[str, MemoryStore]:
    store = MemoryStore()
    return agent_journal(store), store


def test_tree_shows_each_call_and_the_totals_line() -> None:
    """The tree names the workflow, each call and decision; the totals line reads as written."""
    run_id, store = _agent_trace()
    console = Console(record=True, width=140)
    render_trace(build_trace(run_id, store.read(run_id)), console)
    text = console.export_text()
    assert "support_agent run_agent completed" in text
    assert "chat openai:gpt-4o" in text and "tool lookup_order" in text
    assert "decision recover" in text and "rate_limited" in text
    assert "5.75 s, 1,234 tokens, $0.042, 1 retry, 3 model calls, 1 tool call" in text
    assert "failures: rate_limited 1" in text


def test_totals_line_pluralizes_and_formats_money() -> None:
    """Counts take their plural; sub-cent costs keep their digits; large ones show cents."""
    assert totals_line(Totals(duration_s=0.5, retries=2, model_calls=1, tool_calls=0,
                              cost_usd=0.00012)) == (
        "0.50 s, 0 tokens, $0.000120, 2 retries, 1 model call, 0 tool calls")
    assert "$1,234.50" in totals_line(Totals(duration_s=1, cost_usd=1234.5))


def test_json_form_has_the_documented_shape() -> None:
    """Top-level keys, totals and nested item fields are as documented; it is valid JSON."""
    run_id, store = _agent_trace()
    data = json.loads(json.dumps(trace_to_json(build_trace(run_id, store.read(run_id)))))
    assert set(data) == {"run_id", "workflow", "conversation_id", "status", "reason", "error",
                         "started_at", "ended_at", "totals", "items"}
    assert data["totals"] == {
        "duration_s": 5.75, "input_tokens": 1030, "output_tokens": 204,
        "cached_input_tokens": 100, "total_tokens": 1234, "cost_usd": 0.042,
        "model_calls": 3, "tool_calls": 1, "retries": 1, "failures": {"rate_limited": 1}}
    first = data["items"][0]
    assert set(first) == {"kind", "name", "pos", "seq", "offset_s", "duration_s", "status",
                          "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd",
                          "retries", "failures", "error_type", "detail", "children"}
    assert first["children"][0]["kind"] == "decision"
    assert [i["offset_s"] for i in data["items"]] == [0.0, 1.5, 3.5, 5.0, 5.5]


def test_sleep_is_labelled_once() -> None:
    """A sleep's row says `sleep` once, with its duration."""
    store = MemoryStore()
    run_id = refund_run(store)
    console = Console(record=True, width=140)
    render_trace(build_trace(run_id, store.read(run_id)), console)
    line = next(ln for ln in console.export_text().splitlines() if "sleep" in ln)
    assert line.count("sleep") == 1 and "30.000 s" in line
