"""Processes that open one new SQLite store file at the same moment (a worker starting while a
run is enqueued) all get a working store: the schema is created once, by whichever is first."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from tether.store.sqlite import SQLiteStore

OPENERS = 8
FILES = 24


def _open(path: str, ready: object, errors: object) -> None:
    ready.wait()  # type: ignore[attr-defined]
    try:
        SQLiteStore(path).close()
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")  # type: ignore[attr-defined]


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Eight processes released together at a fresh file, 24 times: no open fails with
    'table runs already exists', 'database is locked' or 'tables tether did not create', and
    the file works."""
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for n in range(FILES):
        path = str(tmp_path / f"new-{n}.db")
        ready = context.Barrier(OPENERS)
        procs = [context.Process(target=_open, args=(path, ready, errors))
                 for _ in range(OPENERS)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        store = SQLiteStore(path)
        assert store.list_runs() == []
        store.close()
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
