"""SQLiteStore's lazy appends: what they write (WAL pages, bytes) and the bytes they store."""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from pathlib import Path

import pytest

from tether.events import (
    Event,
    RunStarted,
    StepRecorded,
    WaitResolved,
    checksum,
    decode,
    encode,
    encode_with_checksum,
)
from tether.store.base import Lease
from tether.store.sqlite import SQLiteStore

PAGE_SIZE = 1024
FRAME_HEADER = 24
WAL_HEADER = 32


def _wal_commits(wal: Path) -> list[list[int]]:
    """The page numbers each committed transaction in a WAL file wrote, in order."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    commits: list[list[int]] = []
    pages: list[int] = []
    offset = WAL_HEADER
    while offset + FRAME_HEADER <= len(data):
        page, size_after_commit = struct.unpack(">II", data[offset:offset + 8])
        pages.append(page)
        if size_after_commit:
            commits.append(pages)
            pages = []
        offset += FRAME_HEADER + page_size
    return commits


def _wchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError("no wchar line in /proc/self/io")


def _step(seq: int) -> StepRecorded:
    return StepRecorded(seq=seq, at=float(seq), pos=seq - 2, call="step", name="s")


def _lazy_steps(store: SQLiteStore, run_id: str, lease: Lease, count: int) -> None:
    for seq in range(2, count + 2):
        store.append(run_id, [_step(seq)], expected_last_seq=seq - 1, lease=lease)


def _index_pages(path: Path) -> set[int]:
    """Root pages of the runs table and its indexes (one page each while they hold one run)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name='runs' "
                          "AND rootpage > 0").fetchall()
    finally:
        db.close()
    return {int(row[0]) for row in rows}


def test_lazy_appends_leave_the_runs_index_alone(tmp_path: Path) -> None:
    """A lazy step commits only pages of the events table: the run's index row (and the
    indexes on it) is written at status changes and flushes, not at every event."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    try:
        store.append("r", [RunStarted(seq=1, at=1.0, workflow="wf", seed=1)],
                     expected_last_seq=0)
        lease = store.acquire("r", "w", now=1.0, ttl_s=60.0)
        db = sqlite3.connect(path)  # start the WAL afresh: only what follows is in it
        try:
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        finally:
            db.close()
        _lazy_steps(store, "r", lease, 60)
        index_pages = _index_pages(path)
        # Read while the store is open: closing the last connection checkpoints the WAL away.
        commits = _wal_commits(Path(f"{path}-wal"))
    finally:
        store.close()
    assert index_pages, "found no pages of the runs table"
    assert len(commits) == 60, f"one commit per lazy append expected, found {len(commits)}"
    touched = {page for pages in commits for page in pages}
    assert not touched & index_pages, (
        f"lazy appends wrote index pages {sorted(touched & index_pages)} of the runs table")


def test_a_lazy_step_writes_under_three_pages_on_average(tmp_path: Path) -> None:
    """Bytes handed to write() per lazy append stay under 3 WAL frames of 1 KiB pages (what
    the 1 KiB page size and the single-INSERT hot path give; 4 KiB pages wrote ~6.7 KB)."""
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        store.append("r", [RunStarted(seq=1, at=1.0, workflow="wf", seed=1)],
                     expected_last_seq=0)
        lease = store.acquire("r", "w", now=1.0, ttl_s=60.0)
        before = _wchar()
        _lazy_steps(store, "r", lease, 300)
        per_append = (_wchar() - before) / 300
    finally:
        store.close()
    assert per_append < 3 * (PAGE_SIZE + FRAME_HEADER), f"{per_append:.0f} bytes per append"
    assert per_append >= PAGE_SIZE + FRAME_HEADER  # at least one frame: the count is real


@pytest.mark.parametrize("event", [
    _step(2),
    StepRecorded(seq=3, at=2.5, pos=1, call="step", name="s",
                 result={"inf": math.inf, "neg": -math.inf, "zero": -0.0, "big": 2**80}),
    StepRecorded(seq=4, at=3.0, pos=2, call="step", name="s", result="lone \ud800 surrogate"),
    StepRecorded(seq=5, at=4.0, pos=3, call="step", name="s", result="naïve ☃ 😀"),
    WaitResolved(seq=6, at=5.0, key="k", value={"ok": True}, by="me", note="n"),
])
def test_encode_with_checksum_is_encode_and_checksum(event: Event) -> None:
    """The stores' one-call encoding gives the text encode() gives and its checksum."""
    body, crc = encode_with_checksum(event)
    assert body == encode(event)
    assert crc == checksum(body)
    assert decode(body, crc=crc, seq=event.seq) == event


def test_stored_rows_are_the_canonical_encoding(tmp_path: Path) -> None:
    """What SQLite holds for each event is encode()'s text and its CRC, byte for byte."""
    path = tmp_path / "runs.db"
    events: list[Event] = [RunStarted(seq=1, at=1.0, workflow="wf", seed=7),
                           _step(2),
                           StepRecorded(seq=3, at=3.0, pos=1, call="step", name="s",
                                        result=["x", math.nan, "\udfff"])]
    store = SQLiteStore(path)
    try:
        store.append("r", events[:1], expected_last_seq=0)
        store.append("r", events[1:2], expected_last_seq=1)
        store.append("r", events[2:], expected_last_seq=2, sync=True)
    finally:
        store.close()
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq, kind, body, crc FROM events WHERE run_id='r' "
                          "ORDER BY seq").fetchall()
    finally:
        db.close()
    assert [(seq, kind, body, crc) for seq, kind, body, crc in rows] == [
        (e.seq, e.kind, encode(e), checksum(encode(e))) for e in events
    ]
    assert json.loads(rows[0][2])["seed"] == 7
