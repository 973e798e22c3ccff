"""Observability: OpenTelemetry spans, JSON lines and a trace view of any run's journal.

Sinks are journal listeners (``Runtime(listeners=[...])`` or ``runtime.add_listener``):

* :class:`OTelSink` — spans following the OpenTelemetry GenAI conventions
  (:mod:`tether.tracing.semconv`), one trace per run across processes, complete after a crash
  once the run is resumed (:mod:`tether.tracing.otel`); :func:`export_run` does the same for a
  stored journal.
* :class:`JsonlSink` — one JSON object per event, per line.

:func:`build_trace` turns events into a :class:`Trace` (items and totals), which
:func:`render_trace` prints and :func:`trace_to_json` serializes (``tether trace RUN``).

>>> from tether.tracing import JsonlSink, OTelSink, build_trace
"""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real names for checkers and editors; imported on first use at run time
    from tether.tracing.jsonl import JsonlSink, read_jsonl
    from tether.tracing.otel import OTelSink, export_run, provider_of
    from tether.tracing.render import render_trace, totals_line, trace_to_json, trace_tree
    from tether.tracing.timeline import Item, Totals, Trace, build_trace

__all__ = [
    "Item",
    "JsonlSink",
    "OTelSink",
    "Totals",
    "Trace",
    "build_trace",
    "export_run",
    "provider_of",
    "read_jsonl",
    "render_trace",
    "totals_line",
    "trace_to_json",
    "trace_tree",
]

# Which module defines each public name; imported on first use (PEP 562), so importing one
# submodule of this package does not import its siblings.
_WHERE = {
    "Item": "tether.tracing.timeline",
    "JsonlSink": "tether.tracing.jsonl",
    "OTelSink": "tether.tracing.otel",
    "Totals": "tether.tracing.timeline",
    "Trace": "tether.tracing.timeline",
    "build_trace": "tether.tracing.timeline",
    "export_run": "tether.tracing.otel",
    "provider_of": "tether.tracing.otel",
    "read_jsonl": "tether.tracing.jsonl",
    "render_trace": "tether.tracing.render",
    "totals_line": "tether.tracing.render",
    "trace_to_json": "tether.tracing.render",
    "trace_tree": "tether.tracing.render",
}

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
