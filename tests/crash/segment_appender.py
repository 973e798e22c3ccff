"""Child process for the segment kill -9 test: appends to a run under a lease until killed.

    python tests/crash/segment_appender.py STORE_PATH

Run ``victim`` is started and leased (owner ``child``, a TTL of 1,000 s from clock time 0), then
gets single lazy events (the segment's path) with, every 13th append, a batch of two and every
29th a ``sync=True`` append (both through SQLite, taking the segment's lines in). Each seq is
printed (and flushed) only after ``append`` returned, so every printed seq was acknowledged.
Event contents follow from their seq (:func:`expected`).
"""

from __future__ import annotations

import sys

from tether.events import Event, RunStarted, StepRecorded
from tether.store.sqlite import SQLiteStore

RUN_ID = "victim"
OWNER = "child"


def expected(seq: int) -> Event:
    """The event the child writes at ``seq``."""
    if seq == 1:
        return RunStarted(seq=1, at=0.0, workflow="segment-appender", seed=0)
    return StepRecorded(seq=seq, at=float(seq) / 1000, pos=seq - 2, call="step", name="s",
                        result={"seq": seq, "pad": "y" * (seq % 97)})


def main(path: str) -> None:
    store = SQLiteStore(path)
    store.append(RUN_ID, [expected(1)], expected_last_seq=0)
    lease = store.acquire(RUN_ID, OWNER, now=0.0, ttl_s=1000.0)
    print(1, flush=True)
    last, count = 1, 0
    while True:
        count += 1
        size = 2 if count % 13 == 0 else 1
        events = [expected(seq) for seq in range(last + 1, last + 1 + size)]
        store.append(RUN_ID, events, expected_last_seq=last, sync=count % 29 == 0, lease=lease)
        last += size
        print(last, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
