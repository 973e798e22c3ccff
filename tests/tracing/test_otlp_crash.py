"""A worker exporting over OTLP/HTTP is SIGKILLed mid-run and the run resumed in a new process:
the receiver ends up with every span of the run exactly once, in one trace, rightly parented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.tracing.otlp_app import RUN_ID
from tests.tracing.otlp_receiver import Receiver
from tether import SQLiteStore
from tether.events import ModelCalled, ModelFailed, ToolAmbiguous, ToolRetry
from tether.tracing import export_run
from tether.tracing import semconv as sc
from tether.tracing.ids import root_span_id, trace_id_of

ROOT = Path(__file__).resolve().parents[2]


def worker(store: Path, endpoint: str, *args: str, expect_rc: int) -> None:
    """Run the app in a fresh interpreter and check how it ended."""
    cmd = [sys.executable, "-m", "tests.tracing.otlp_app", "--store", str(store),
           "--endpoint", endpoint, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_SDK_DISABLED": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == expect_rc, proc.stderr[-3000:]


def expected_spans(store_path: Path) -> Counter[tuple[str, str, str]]:
    """(span id, parent id, name) of every span the whole journal makes, exported at once."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = SQLiteStore(store_path)
    export_run(store.read(RUN_ID), provider, run_id=RUN_ID)
    store.close()
    return Counter((f"{s.context.span_id:016x}" if s.context else "",
                    f"{s.parent.span_id:016x}" if s.parent else "", s.name)
                   for s in exporter.get_finished_spans())


@pytest.mark.parametrize("kills", [
    ("reserve_stock:in_handler",),           # a write cut short after its intent
    ("charge_card:after_result",),           # a finished call the run had not moved past
    ("charge_card:in_handler", "openai:gpt-4o-mini:after_model"),  # killed twice
], ids=["in-write", "after-result", "twice"])
def test_a_crashed_run_resumed_elsewhere_has_every_span_once(
    tmp_path: Path, kills: tuple[str, ...]
) -> None:
    """Spans sent before the kill + spans sent by the resumer = the run's spans, once each."""
    store = tmp_path / "runs.db"
    with Receiver() as receiver:
        for n, kill in enumerate(kills):
            resume = ("--resume",) if n else ()
            worker(store, receiver.endpoint, *resume, "--kill-at", kill,
                   expect_rc=-signal.SIGKILL)
            if n == 0:
                before = len(receiver.spans)
                assert before > 0, "the first process sent nothing before it was killed"
        worker(store, receiver.endpoint, "--resume", expect_rc=0)
        spans = list(receiver.spans)

    ids = Counter(s.span_id for s in spans)
    assert [i for i, c in ids.items() if c > 1] == [], "a span arrived twice"
    assert {s.trace_id for s in spans} == {f"{trace_id_of(RUN_ID):032x}"}
    (root,) = [s for s in spans if not s.parent_span_id]
    assert root.name == "invoke_agent fulfil" and root.span_id == f"{root_span_id(RUN_ID):016x}"
    assert root.attributes[sc.TETHER_RUN_STATUS] == "completed"
    assert all(s.parent_span_id == root.span_id for s in spans if s is not root)
    assert all(s.start_ns <= s.end_ns and root.start_ns <= s.start_ns <= root.end_ns
               for s in spans)

    # Every call of the final journal is there, and nothing else.
    journal = SQLiteStore(store)
    events = journal.read(RUN_ID)
    journal.close()
    names = Counter(s.name for s in spans)
    assert names["chat openai:gpt-4o-mini"] == sum(
        isinstance(e, ModelCalled | ModelFailed) for e in events) == 2
    assert names["execute_tool lookup_order"] == names["execute_tool reserve_stock"] == 1
    assert names["execute_tool charge_card"] == 1
    waits = sum(isinstance(e, ToolRetry) and e.delay_s > 0 for e in events) + sum(
        isinstance(e, ToolAmbiguous) for e in events)
    assert names["backoff reserve_stock"] + names["backoff charge_card"] >= 1
    assert sum(n for name, n in names.items() if name.startswith("backoff")) <= waits
    received = Counter((s.span_id, s.parent_span_id, s.name) for s in spans)
    assert received == expected_spans(store)
    lookup = next(s for s in spans if s.name == "execute_tool lookup_order")
    assert lookup.attributes[sc.GEN_AI_TOOL_CALL_ID] == "call_lookup"
    assert {s.service for s in spans} == {"otlp-crash-app"}
