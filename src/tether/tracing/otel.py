"""OpenTelemetry spans from journals: live with :class:`OTelSink`, or afterwards with
:func:`export_run`.

A run is one trace, however many processes ran it (the shape is in
:mod:`tether.tracing.spans`). Its trace id and every span id derive from the run id and the
journal (:mod:`tether.tracing.ids`), so the parts different processes export fit together and
a span sent twice is recognisable as the same span.

When spans leave the live sink. A call's span (``chat``, ``execute_tool``, with its backoff
waits) is emitted once the call is over *and* the run has journaled something after it that is
not a decision about it: the run moved on, so nothing more will hang on that span. The run's
own span can only end when the run ends, so it is emitted by the process that journals
``run_finished``, built from the whole journal when the sink has the ``store``.

What survives a crash, and what exactly-once means here. The sink exports inside the journal
listener, synchronously, before the run goes on; so "a later event is in the journal" implies
"the span was handed to the span processor". A process that takes up a run it did not start
(a resume after a SIGKILL, another worker after a suspension) reads the journal from the
``store``, counts every call closed by a later event as exported, and exports the calls the
dead process had finished but not yet closed (the last ones before the kill). The receiver
then holds every call span once, provided that:

* the span processor exports as spans end (``SimpleSpanProcessor``). A ``BatchSpanProcessor``
  still holding spans when the process is SIGKILLed loses them: nothing on disk says they were
  not sent. Call :meth:`OTelSink.flush` (or shut the provider down) on a clean exit;
* the kill does not fall between the append of the event that closes a call and the end of
  that call's export (one listener call long): the journal then says "exported" for a span
  that was not — that span is lost (at most once, never twice);
* an export that fails (the collector down) is logged and not retried: tracing never changes a
  run's outcome;
* every process that runs part of the run has a sink (calls a process without one closed are
  counted as exported by the next one);
* the process that journals ``run_finished`` runs a sink (a run cancelled from a process
  without one has no root span; :func:`export_run` can send the whole run afterwards).

Every timestamp comes from the journal (the run's clock), never from the exporting process, so
a simulated run's spans show simulated time exactly; ``rebase_time`` moves a run's times onto
a real date (see :class:`OTelSink`).

>>> from opentelemetry.sdk.trace import TracerProvider
>>> sink = OTelSink(TracerProvider())          # Runtime(listeners=[sink]) or rt.add_listener
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace as otel_trace
from opentelemetry.trace import TracerProvider

from tether.events import (
    Decision,
    Event,
    ModelCalled,
    RunFinished,
    RunStarted,
    RunWaiting,
    TimerStarted,
    WaitStarted,
)
from tether.store.base import Store
from tether.tracing.ids import planned_tracer
from tether.tracing.spans import ProviderOf, SpanWriter, asked_calls, provider_of
from tether.tracing.timeline import Item, Trace, build_trace

__all__ = ["OTelSink", "export_run", "provider_of"]

logger = logging.getLogger(__name__)

_Key = tuple[str, int | None, int]


def _key(item: Item) -> _Key:
    return (item.kind, item.pos, item.seq)


def _calls(trace: Trace) -> list[Item]:
    return [i for i in trace.items if i.kind in ("model", "tool")]


def closed_calls(trace: Trace, events: Sequence[Event]) -> list[Item]:
    """The calls of ``trace`` that are over and that the run has moved on from: a later
    event in ``events`` that is not a decision, at another position or at none."""
    moves = [(e.seq, getattr(e, "pos", None)) for e in events if not isinstance(e, Decision)]
    moves.sort()
    latest = moves[-1] if moves else None
    other = next((m for m in reversed(moves) if latest is not None and m[1] != latest[1]), None)
    out = []
    for item in _calls(trace):
        if item.status == "pending":
            continue
        last = max(e.seq for e in item.events)
        after = latest if latest is not None and latest[1] != item.pos else other
        if after is not None and after[0] > last:
            out.append(item)
    return out


def _suspends(event: Event) -> bool:
    return isinstance(event, WaitStarted | RunWaiting) or (
        isinstance(event, TimerStarted) and event.parked)


@dataclass
class _Run:
    """What the sink knows of one run in this process."""

    events: list[Event] = field(default_factory=list)
    exported: set[_Key] = field(default_factory=set)
    started: RunStarted | None = None
    last_pos: int | None = None
    #: Where the events of calls not yet exported begin (an index into ``events``): only they
    #: are looked at as the run goes, so a long run costs the same per call throughout.
    window: int = 0

    @property
    def origin(self) -> float:
        """The run's start: its ``run_started``, else the first event known here."""
        return self.started.at if self.started is not None else self.events[0].at

    def advance(self, trace: Trace) -> None:
        """Move the window past the calls exported, keeping the open ones and the latest
        model response (whose tool calls name the calls after it)."""
        starts = [min(e.seq for e in i.events) for i in _calls(trace)
                  if _key(i) not in self.exported]
        starts.append(self.events[-1].seq)
        asked = next((e for e in reversed(self.events[self.window:])
                      if isinstance(e, ModelCalled)), None)
        if asked is not None:
            calls = len(asked.response.get("tool_calls") or ())
            if sum(i.kind == "tool" and i.seq > asked.seq and _key(i) in self.exported
                   for i in trace.items) < calls:
                starts.append(asked.seq)  # some calls it asked for are not exported yet
        self.window = bisect_left(self.events, min(starts), lo=self.window,
                                  key=lambda e: e.seq)


class OTelSink:
    """A journal listener that turns runs into spans through ``tracer_provider`` (by default
    the global one, looked up when spans are emitted).

    ``capture_content`` adds the opt-in content attributes (workflow input and result, model
    output, tool arguments and results, and a chat span's input messages, system instructions
    and tool definitions when the call journaled its request: ``ModelSettings.journal_input``).

    ``store`` lets a process that takes up a run it did not start name the run, parent its
    spans, and export the spans a crashed process left unexported (see the module docstring);
    without it such a process knows only the events it sees. Exporting never raises into the
    run: a failure is logged on the ``tether.tracing.otel`` logger.

    ``rebase_time`` (epoch seconds) moves every time of a run by one offset, so that the run's
    start lands on that instant: runs on a :class:`~tether.clock.VirtualClock` (which starts
    at 2026-01-01) then show up in a backend's "last hour" view. The spacing of spans stays
    exactly the run clock's, and each span keeps its original times as
    ``tether.run_clock.start_s`` / ``tether.run_clock.end_s``. Pass the same value to every
    process's sink (e.g. the time a campaign began) so a run that goes on in another process
    is moved by the same offset.

    ``namespace`` goes into the trace and span ids with the run id. Backends keep one span per
    id (Phoenix 20 keeps the first copy and drops later ones), so runs whose ids repeat — a
    seeded simulation run again, two stores that both have ``run_1`` — need a namespace each
    (a campaign's name, say), the same in every process of one run.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        capture_content: bool = False,
        store: Store | None = None,
        provider: ProviderOf = provider_of,
        rebase_time: float | None = None,
        namespace: str = "",
    ) -> None:
        self.tracer_provider = tracer_provider
        self.namespace = namespace
        self.capture_content = capture_content
        self.store = store
        self.provider = provider
        self.rebase_time = rebase_time
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}

    def __call__(self, run_id: str, event: Event) -> None:
        try:
            with self._lock:
                run = self._runs.get(run_id)
                if run is None:
                    run = self._runs[run_id] = self._take_up(run_id, event)
                run.events.append(event)
                if isinstance(event, RunStarted):
                    run.started = event
                pos = getattr(event, "pos", None)
                moved = not isinstance(event, Decision) and (pos is None or pos != run.last_pos)
                if not isinstance(event, Decision):
                    run.last_pos = pos
                finished = isinstance(event, RunFinished)
                queued = isinstance(event, RunStarted) and event.queue is not None
                if finished or ((_suspends(event) or queued) and self.store is not None):
                    # Finished, or re-derivable from the store when the run goes on (here or
                    # in a worker that claims it).
                    self._runs.pop(run_id, None)
                items, window, whole = self._due(run_id, run, moved, finished)
                origin = run.origin
            if window is not None and (items or whole is not None):
                self._emit(items, window, whole, origin)
        except Exception:  # tracing must never change a run's outcome
            logger.warning("could not export the spans of run %s", run_id, exc_info=True)

    def flush(self, run_id: str | None = None) -> None:
        """Hand what the span processors hold to their exporters (``force_flush``).

        Call spans leave as the run moves past them and the run's span when it finishes;
        a call still open (the run was cut short in it) is left to the process that takes the
        run up, which exports it from the journal. ``run_id`` is accepted for compatibility.
        """
        chosen = self.tracer_provider or otel_trace.get_tracer_provider()
        force_flush = getattr(chosen, "force_flush", None)
        if callable(force_flush):
            force_flush()

    # -- bookkeeping (under the lock) -----------------------------------------------------------

    def _take_up(self, run_id: str, event: Event) -> _Run:
        """The state of a run first seen here: a new run, or one a process before this one
        (or this one, before a suspension) began, read back from the store."""
        if isinstance(event, RunStarted) or self.store is None:
            return _Run()
        prior = [e for e in self.store.read(run_id) if e.seq < event.seq]
        run = _Run(events=prior)
        if prior:
            head = prior[0]
            run.started = head if isinstance(head, RunStarted) else None
            trace = build_trace(run_id, prior, started=run.started)
            run.exported = {_key(i) for i in closed_calls(trace, prior)}
            run.advance(trace)
            run.last_pos = next((getattr(e, "pos", None) for e in reversed(prior)
                                 if not isinstance(e, Decision)), None)
        return run

    def _due(self, run_id: str, run: _Run, moved: bool,
             finished: bool) -> tuple[list[Item], Trace | None, Trace | None]:
        """The call spans to emit now (marked exported) with the trace of the events they
        were found in, and the whole run's trace when it ended."""
        if not (moved or finished):
            return [], None, None
        window = run.events[run.window:]
        trace = build_trace(run_id, window, started=run.started)
        due = _calls(trace) if finished else closed_calls(trace, window)
        items = [i for i in due if _key(i) not in run.exported]
        run.exported |= {_key(i) for i in items}
        run.advance(trace)
        whole = build_trace(run_id, run.events, started=run.started) if finished else None
        return items, trace, whole

    # -- emitting (outside the lock) ------------------------------------------------------------

    def _emit(self, items: Sequence[Item], window: Trace, root: Trace | None,
              origin: float) -> None:
        provider = self.tracer_provider or otel_trace.get_tracer_provider()
        writer = _writer(window, planned_tracer(provider), self.capture_content, self.provider,
                         self.rebase_time, self.namespace, origin)
        for item in items:
            writer.call(item, not_before=origin)
        if root is not None:
            writer.root(root)


def _writer(trace: Trace, tracer: otel_trace.Tracer, capture: bool, provider: ProviderOf,
            rebase_time: float | None, namespace: str, origin: float) -> SpanWriter:
    asked = asked_calls(trace.items)
    return SpanWriter(tracer, trace.run_id, capture_content=capture, provider=provider,
                      started=trace.started,
                      offset_s=None if rebase_time is None else rebase_time - origin,
                      call_ids={seq: call_id for seq, (call_id, _) in asked.items() if call_id},
                      descriptions={seq: text for seq, (_, text) in asked.items() if text},
                      namespace=namespace)


def export_run(
    events: Iterable[Event],
    tracer_provider: TracerProvider | None = None,
    *,
    run_id: str,
    capture_content: bool = False,
    provider: ProviderOf = provider_of,
    rebase_time: float | None = None,
    namespace: str = "",
) -> None:
    """Turn a stored journal into one trace, after the fact: every call span, then the run's
    span (ending at the last event when the run has not finished).

    ``run_id`` is needed because events do not carry it. The ids are the live sink's, so a
    run exported both ways shows up as the same spans twice (same trace and span ids).
    ``rebase_time`` moves the run's start to that epoch time and ``namespace`` goes into the
    ids (see :class:`OTelSink`).

    >>> import time
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from tether.events import RunStarted
    >>> export_run([RunStarted(seq=1, at=0.0, workflow="w", seed=1)], TracerProvider(),
    ...            run_id="run_1", rebase_time=time.time())  # allow-wallclock: user code
    """
    trace = build_trace(run_id, events)
    tracer = planned_tracer(tracer_provider or otel_trace.get_tracer_provider())
    origin = trace.started.at if trace.started is not None else trace.started_at
    writer = _writer(trace, tracer, capture_content, provider, rebase_time, namespace, origin)
    for item in _calls(trace):
        writer.call(item, not_before=origin)
    writer.root(trace)
