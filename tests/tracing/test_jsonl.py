"""JSON lines: one event per line, flushed as written, readable back as the same events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.tracing import agent_journal, refund_run
from tether import MemoryStore
from tether.errors import CorruptJournal
from tether.events import decode
from tether.tracing.jsonl import JsonlSink, read_jsonl


def test_every_line_decodes_back_to_the_stored_event(tmp_path: Path) -> None:
    """Each line is {run_id, **event}; dropping run_id leaves what tether.events.decode reads."""
    path, store = tmp_path / "events.jsonl", MemoryStore()
    sink = JsonlSink(path)
    refund_id = refund_run(store, [sink])
    agent_id = agent_journal(store, [sink])
    lines = path.read_text(encoding="utf-8").splitlines()  # before close(): flushed per line
    stored = [(refund_id, e) for e in store.read(refund_id)]
    stored += [(agent_id, e) for e in store.read(agent_id)]
    assert len(lines) == len(stored)
    for line, (run_id, event) in zip(lines, stored, strict=True):
        raw = json.loads(line)
        assert raw.pop("run_id") == run_id
        assert decode(json.dumps(raw)) == event
    sink.close()
    assert read_jsonl(path) == stored


def test_a_file_given_open_is_left_open() -> None:
    """A sink over a caller's file flushes on close() but does not close it."""
    out = io.StringIO()
    with JsonlSink(out) as sink:
        agent_journal(MemoryStore(), [sink])
    assert not out.closed and out.getvalue().count("\n") == 9


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    """A second sink on the same path appends instead of truncating."""
    path = tmp_path / "events.jsonl"
    for run_id in ("a", "b"):
        with JsonlSink(path) as sink:
            agent_journal(MemoryStore(), [sink], run_id=run_id)
    assert [run_id for run_id, _ in read_jsonl(path)] == ["a"] * 9 + ["b"] * 9


def test_a_torn_last_line_is_skipped_and_other_damage_reported(tmp_path: Path) -> None:
    """A crash-cut last line is ignored; a bad line in the middle raises CorruptJournal."""
    path = tmp_path / "events.jsonl"
    with JsonlSink(path) as sink:
        agent_journal(MemoryStore(), [sink])
    whole = path.read_text(encoding="utf-8")
    path.write_text(whole + '{"run_id": "run_agent", "se', encoding="utf-8")
    assert len(read_jsonl(path)) == 9
    path.write_text("not json\n" + whole, encoding="utf-8")
    with pytest.raises(CorruptJournal, match=r"events.jsonl:1: not a JSON line"):
        read_jsonl(path)


def test_a_closed_file_does_not_break_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """Writing after the file was closed logs a warning; the run goes on."""
    out = io.StringIO()
    out.close()
    agent_journal(MemoryStore(), [JsonlSink(out)])
    assert "could not write event 1 of run run_agent" in caplog.text
