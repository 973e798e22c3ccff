"""kill -9 on SQLite's segment path: every acknowledged lazy append survives the process."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from tether.errors import LeaseLost, RunOwned
from tether.store.sqlite import SQLiteStore

HELPER = Path(__file__).with_name("segment_appender.py")


def _load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("segment_appender", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sqlite_seqs(path: Path, run_id: str) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [int(r[0]) for r in db.execute(
            "SELECT seq FROM events WHERE run_id=? ORDER BY seq", (run_id,))]
    finally:
        db.close()


def _kill_while_appending(path: Path, delay_s: float) -> list[int]:
    """Run the appender, SIGKILL it after ``delay_s`` past its first acknowledgement; the
    seqs it acknowledged."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, str(HELPER), str(path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[int] = []
    first_ack = threading.Event()

    def collect() -> None:  # drained continuously, so the child never blocks on a full pipe
        assert child.stdout is not None
        for line in child.stdout:
            if line.endswith("\n"):  # a torn last line was not acknowledged
                acked.append(int(line))
                first_ack.set()

    reader = threading.Thread(target=collect)
    reader.start()
    try:
        started = first_ack.wait(timeout=60)
        time.sleep(delay_s)
    finally:
        child.kill()
        child.wait()
        reader.join()
        assert child.stdout is not None and child.stderr is not None
        stderr = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
    assert started and child.returncode == -signal.SIGKILL, f"the child failed: {stderr}"
    return acked


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.1, 0.3])
def test_kill_9_keeps_every_acknowledged_segment_append(tmp_path: Path, delay_s: float) -> None:
    """After SIGKILL mid-appends (most of them lines in the run's segment), another process
    reads every acknowledged event, contiguous and intact; taking the run over moves them all
    into SQLite; and the run goes on from there under the new lease."""
    helper = _load_helper()
    path = tmp_path / "runs.db"
    acked = _kill_while_appending(path, delay_s)
    store = SQLiteStore(path)
    try:
        journal = store.read(helper.RUN_ID)
        assert journal == [helper.expected(seq) for seq in range(1, len(journal) + 1)]
        assert max(acked) <= len(journal), f"acknowledged {max(acked)}, kept {len(journal)}"
        info = store.get_run(helper.RUN_ID)
        assert info is not None and info.last_seq == len(journal)
        assert store.check() == []
        with pytest.raises(RunOwned):  # the dead child's lease still holds
            store.acquire(helper.RUN_ID, "next", now=10.0, ttl_s=30.0)
        lease = store.acquire(helper.RUN_ID, "next", now=2000.0, ttl_s=30.0)
        assert _sqlite_seqs(path, helper.RUN_ID) == list(range(1, len(journal) + 1))
        last = len(journal)
        store.append(helper.RUN_ID, [helper.expected(last + 1)], expected_last_seq=last,
                     lease=lease)
        store.append(helper.RUN_ID, [helper.expected(last + 2)], expected_last_seq=last + 1,
                     lease=lease)
        assert store.read(helper.RUN_ID) == [helper.expected(s) for s in range(1, last + 3)]
    finally:
        store.close()


def test_a_superseded_segment_writer_is_fenced_off(tmp_path: Path) -> None:
    """A worker appending lazily to its segment, once another took the run over, is refused
    at its next append (nothing written), and what it wrote before the takeover stays."""
    helper = _load_helper()
    path = tmp_path / "runs.db"
    old, new = SQLiteStore(path), SQLiteStore(path)
    try:
        old.append("r", [helper.expected(1)], expected_last_seq=0)
        lease = old.acquire("r", "old", now=0.0, ttl_s=10.0)
        for seq in range(2, 6):
            old.append("r", [helper.expected(seq)], expected_last_seq=seq - 1, lease=lease)
        taken = new.acquire("r", "new", now=20.0, ttl_s=10.0)
        with pytest.raises(LeaseLost):
            old.append("r", [helper.expected(6)], expected_last_seq=5, lease=lease)
        new.append("r", [helper.expected(6)], expected_last_seq=5, lease=taken)
        assert new.read("r") == old.read("r") == [helper.expected(s) for s in range(1, 7)]
    finally:
        old.close()
        new.close()
