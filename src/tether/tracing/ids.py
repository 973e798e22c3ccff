"""Trace and span ids derived from the journal, so every process names a run's spans alike.

A run is one trace whichever processes ran it: its trace id is a hash of the run id, its root
span's id a hash of the run id too, and a call's span id a hash of the run id, the call's
position and the sequence number of its first journal event. A span exported twice (by a
process that resumed a crashed run and could not tell it had gone out) carries the same ids
both times, so a backend or a reader can recognise the copy.

The OpenTelemetry SDK draws ids from its tracer's id generator; :func:`planned_tracer` gives
tether's tracer a generator that hands out the id planned with :func:`planned` and falls back
to the provider's own generator otherwise. With a tracer that is not the SDK's (the API's no-op
tracer, a vendor's), ids cannot be chosen and stay whatever that tracer makes.

>>> f"{trace_id_of('run_1'):032x}" == f"{trace_id_of('run_1'):032x}"
True
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Tracer, TracerProvider

from tether._version import __version__

__all__ = ["planned", "planned_tracer", "root_span_id", "span_id_of", "trace_id_of"]


def _hash_int(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big")
    return value or 1  # zero is the invalid id


def trace_id_of(run_id: str) -> int:
    """The 128-bit trace id of ``run_id``'s trace."""
    return _hash_int(f"tether/trace/{run_id}", 16)


def root_span_id(run_id: str) -> int:
    """The 64-bit span id of ``run_id``'s root (workflow or agent) span."""
    return _hash_int(f"tether/span/{run_id}/run", 8)


def span_id_of(run_id: str, kind: str, pos: int | None, seq: int) -> int:
    """The 64-bit span id of the ``kind`` span (``model``, ``tool``, ``backoff``) made from the
    journal event ``seq`` at position ``pos``."""
    return _hash_int(f"tether/span/{run_id}/{kind}/{pos}/{seq}", 8)


class _PlannedIds(IdGenerator):
    """Hands out the ids planned for the calling thread, else the wrapped generator's."""

    def __init__(self, fallback: IdGenerator) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def generate_span_id(self) -> int:
        span_id: int | None = getattr(self.local, "span_id", None)
        return self.fallback.generate_span_id() if span_id is None else span_id

    def generate_trace_id(self) -> int:
        trace_id: int | None = getattr(self.local, "trace_id", None)
        return self.fallback.generate_trace_id() if trace_id is None else trace_id

    def is_trace_id_random(self) -> bool:
        # A hash of the run id: not the W3C "random trace id" a sampler may rely on.
        return getattr(self.local, "trace_id", None) is None and (
            self.fallback.is_trace_id_random())


_install_lock = threading.Lock()


def planned_tracer(provider: TracerProvider) -> Tracer:
    """Tether's tracer from ``provider``, able to take planned ids when it is the SDK's."""
    tracer = provider.get_tracer("tether", __version__)
    if isinstance(tracer, SdkTracer):
        with _install_lock:
            if not isinstance(tracer.id_generator, _PlannedIds):
                tracer.id_generator = _PlannedIds(tracer.id_generator)
    return tracer


@contextmanager
def planned(tracer: Tracer, span_id: int, trace_id: int | None = None) -> Iterator[None]:
    """Start one span of ``tracer`` in this thread, inside the block, with ``span_id`` (and,
    for a span without a parent, ``trace_id``)."""
    generator = getattr(tracer, "id_generator", None)
    if not isinstance(generator, _PlannedIds):
        yield
        return
    generator.local.span_id, generator.local.trace_id = span_id, trace_id
    try:
        yield
    finally:
        generator.local.span_id = generator.local.trace_id = None
