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
