"""Showing a :class:`~tether.tracing.timeline.Trace`: a rich tree for people, JSON for programs.

>>> from tether.tracing.timeline import Totals
>>> totals_line(Totals(duration_s=5.75, input_tokens=1_030, output_tokens=204, cost_usd=0.042,
...                    retries=1, model_calls=2, tool_calls=1))
'5.75 s, 1,234 tokens, $0.042, 1 retry, 2 model calls, 1 tool call'
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from tether.tracing.timeline import Item, Totals, Trace

__all__ = ["render_trace", "totals_line", "trace_to_json", "trace_tree"]

_KIND_LABELS = {"model": "chat", "tool": "tool", "step": "step", "sleep": "sleep",
                "wait": "wait", "decision": "decision"}
_STATUS_STYLES = {"completed": "green", "failed": "red", "escalated": "red",
                  "cancelled": "yellow", "waiting": "yellow", "running": "cyan",
                  "queued": "blue"}


def render_trace(trace: Trace, console: Console) -> None:
    """Print the run's tree, then its totals (and failures by class, if any)."""
    console.print(trace_tree(trace))
    console.print(totals_line(trace.totals), markup=False, highlight=False)
    if trace.totals.failures:
        counts = ", ".join(f"{name} {n}" for name, n in trace.totals.failures.items())
        console.print(f"failures: {counts}", markup=False, highlight=False)


def trace_tree(trace: Trace) -> Tree:
    """A rich :class:`Tree`: the run, its calls, and the decisions taken about each call."""
    style = _STATUS_STYLES.get(trace.status.value, "white")
    label = (f"[bold]{escape(trace.workflow or 'run')}[/bold] {escape(trace.run_id)} "
             f"[{style}]{trace.status.value}[/{style}]")
    if trace.finished is not None and trace.finished.reason:
        label += f" [dim]{escape(trace.finished.reason[:100])}[/dim]"
    tree = Tree(label)
    for item in trace.items:
        _add(tree, item, trace.started_at)
    return tree


def _add(parent: Tree, item: Item, origin: float) -> None:
    node = parent.add(_label(item, origin))
    for child in item.children:
        _add(node, child, origin)


def _label(item: Item, origin: float) -> str:
    kind = _KIND_LABELS.get(item.kind, item.kind)
    name = "" if item.name == kind else f" {escape(item.name)}"
    offset = f"+{item.start_at - origin:.3f}"
    parts = [f"[dim]{offset:>9} s[/dim]", f"[bold]{kind}[/bold]{name}"]
    if item.pos is not None:
        parts.append(f"[dim]@{item.pos}[/dim]")
    if item.kind != "decision":
        parts.append(f"{item.duration_s:.3f} s")
    if item.kind == "model" and item.status == "ok":
        parts.append(f"{item.input_tokens + item.output_tokens:,} tokens {_usd(item.cost_usd)}")
    if item.retries:
        parts.append(f"[yellow]{_retries(item.retries)}[/yellow]")
    if item.status == "unknown":  # not a failure: nobody knows yet whether it happened
        parts.append("[yellow]unknown[/yellow]")
    elif item.status != "ok":
        parts.append(f"[red]{item.status}[/red]")
    if item.failures:
        parts.append(f"[red]{escape(', '.join(item.failures))}[/red]")
    if item.error_type:  # the class name is enough here; --json has the qualified one
        parts.append(f"[red]{escape(item.error_type.rpartition('.')[2])}[/red]")
    if item.detail:
        parts.append(f"[dim]{escape(item.detail[:80])}[/dim]")
    return "  ".join(parts)


def totals_line(totals: Totals) -> str:
    """One line: duration, tokens, cost, retries, model and tool calls."""
    return (f"{totals.duration_s:,.2f} s, {totals.total_tokens:,} tokens, "
            f"{_usd(totals.cost_usd)}, {_retries(totals.retries)}, "
            f"{_count(totals.model_calls, 'model call')}, "
            f"{_count(totals.tool_calls, 'tool call')}")


def _usd(value: float) -> str:
    if 0 < value < 0.001:
        return f"${value:.6f}"
    return f"${value:,.3f}" if value < 10 else f"${value:,.2f}"


def _retries(n: int) -> str:
    return f"{n} retry" if n == 1 else f"{n} retries"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- the machine form ---------------------------------------------------------------------------


def trace_to_json(trace: Trace) -> dict[str, Any]:
    """The trace as JSON-ready data; ``tether trace --json`` prints it.

    Shape (times in seconds; ``offset_s`` is from the first event; ``cost_usd`` in US dollars)::

        {"run_id": str, "workflow": str | null, "conversation_id": str,
         "status": "queued" | "running" | "waiting" | "completed" | "failed" | "escalated"
                   | "cancelled",
         "reason": str, "error": {"type", "message", "data"} | null,
         "started_at": float, "ended_at": float,
         "totals": {"duration_s", "input_tokens", "output_tokens", "cached_input_tokens",
                    "total_tokens", "cost_usd", "model_calls", "tool_calls", "retries",
                    "failures": {failure_class: count}},
         "items": [{"kind": "model" | "tool" | "step" | "sleep" | "wait" | "decision",
                    "name", "pos", "seq", "offset_s", "duration_s",
                    "status": "ok" | "failed" | "unknown" | "expired" | "pending",
                    "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd",
                    "retries", "failures": [str], "error_type": str | null, "detail": str,
                    "children": [item, ...]}]}
    """
    t = trace.totals
    return {
        "run_id": trace.run_id,
        "workflow": trace.workflow,
        "conversation_id": trace.conversation_id,
        "status": trace.status.value,
        "reason": trace.finished.reason if trace.finished is not None else "",
        "error": trace.finished.error if trace.finished is not None else None,
        "started_at": trace.started_at,
        "ended_at": trace.ended_at,
        "totals": {
            "duration_s": _secs(t.duration_s),
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "cached_input_tokens": t.cached_input_tokens,
            "total_tokens": t.total_tokens,
            "cost_usd": _round_usd(t.cost_usd),
            "model_calls": t.model_calls,
            "tool_calls": t.tool_calls,
            "retries": t.retries,
            "failures": dict(t.failures),
        },
        "items": [_item_json(i, trace.started_at) for i in trace.items],
    }


def _item_json(item: Item, origin: float) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "name": item.name,
        "pos": item.pos,
        "seq": item.seq,
        "offset_s": _secs(item.start_at - origin),
        "duration_s": _secs(item.duration_s),
        "status": item.status,
        "input_tokens": item.input_tokens,
        "output_tokens": item.output_tokens,
        "cached_input_tokens": item.cached_input_tokens,
        "cost_usd": _round_usd(item.cost_usd),
        "retries": item.retries,
        "failures": list(item.failures),
        "error_type": item.error_type,
        "detail": item.detail,
        "children": [_item_json(c, origin) for c in item.children],
    }


# Rounded so sums of binary floats print as the decimals people wrote (0.03 + 0.012 → 0.042).
def _secs(value: float) -> float:
    return round(value, 6)


def _round_usd(value: float) -> float:
    return round(value, 9)
