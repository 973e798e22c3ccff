"""Child process for the kill -9 test: appends to a SQLite store until killed.

    python tests/store/sqlite_appender.py STORE_PATH

Run ``victim`` gets batches of one to three events, every seventh batch with ``sync=True``; the
last seq of each batch is printed (and flushed) only after ``append`` returned, so every printed
seq is one the store acknowledged. Event contents follow from their seq (:func:`expected`), so the
parent can tell a damaged event from a good one.
"""

from __future__ import annotations

import sys

from tether.events import Event, RunStarted, StepRecorded
from tether.store.sqlite import SQLiteStore

RUN_ID = "victim"


def expected(seq: int) -> Event:
    """The event the child writes at ``seq``."""
    if seq == 1:
        return RunStarted(seq=1, at=0.0, workflow="appender", seed=0)
    return StepRecorded(seq=seq, at=float(seq), pos=seq - 2, call="step", name="s",
                        result={"seq": seq, "pad": "x" * (seq % 300)})


def main(path: str) -> None:
    store = SQLiteStore(path)
    last, batch = 0, 0
    while True:
        size = 1 if last == 0 else 1 + batch % 3
        events = [expected(seq) for seq in range(last + 1, last + 1 + size)]
        store.append(RUN_ID, events, expected_last_seq=last, sync=batch % 7 == 6)
        last, batch = last + size, batch + 1
        print(last, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
