"""One owner per run, with real processes: workers racing to recover the same runs never run a
write handler twice, and a worker holding a live lease keeps its run."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.events import RunFinished
from tether.store.base import Store
from tether.store.sqlite import SQLiteStore

APP = Path(__file__).with_name("owner_app.py")
RUNS = 6
_schemas = itertools.count(1)


class Setup:
    """One store (a SQLite file or a fresh PostgreSQL schema), one invocation log."""

    def __init__(self, folder: Path, kind: str, dsn: str | None) -> None:
        self.folder = folder
        self.log = folder / "calls.log"
        if kind == "sqlite":
            self.store_args = ["--store", str(folder / "runs.db")]
        else:
            assert dsn is not None
            self.schema = f"own_{os.getpid()}_{next(_schemas)}"
            self.store_args = ["--store", dsn, "--schema", self.schema]
        self.kind, self.dsn = kind, dsn

    def open(self) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(self.folder / "runs.db")
        from tether.store.postgres import PostgresStore

        assert self.dsn is not None
        return PostgresStore(self.dsn, schema=self.schema)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(APP), *self.store_args, "--log", str(self.log), *args]

    def invocations(self) -> Counter[tuple[str, str]]:
        if not self.log.exists():
            return Counter()
        lines = self.log.read_text().splitlines()
        return Counter((run, tool) for run, tool, _pid in (line.split() for line in lines))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    yield Setup(tmp_path, request.param, dsn)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"worker exited {proc.returncode}\n{err}"
    return json.loads(out)  # type: ignore[no-any-return]


def wait_until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def leases_expired(setup: Setup) -> bool:
    store = setup.open()
    try:
        infos = store.list_runs()
        return len(infos) == RUNS and all(
            i.lease_expires_at is not None and i.lease_expires_at < time.time() for i in infos)
    finally:
        store.close()


def prepare(setup: Setup) -> None:
    """RUNS runs, each crashed before its first write, left running; then the process is
    SIGKILLed. Returns once their leases have expired."""
    proc = subprocess.run(setup.command("--prepare", str(RUNS), "--lease-ttl", "0.3"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert setup.invocations() == Counter()
    wait_until(lambda: leases_expired(setup), "the crashed worker's leases to expire")


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_recovering_the_same_runs_never_invoke_a_write_twice(
        setup: Setup, workers: int) -> None:
    """2 or 3 processes call recover() at the same instant on runs a SIGKILLed worker left:
    every write handler ran exactly once and every run finished exactly once."""
    prepare(setup)
    go = setup.folder / "go.flag"
    ready = [setup.folder / f"ready-{n}" for n in range(workers)]
    procs = [subprocess.Popen(setup.command("--recover", "--go", str(go), "--ready", str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in ready]
    wait_until(lambda: all(r.exists() for r in ready), "every worker to be ready")
    go.write_text("go")
    outputs = [finish(p) for p in procs]
    assert len({o["owner"] for o in outputs}) == workers  # distinct default owners
    calls = setup.invocations()
    doubled = {k: n for k, n in calls.items() if n > 1}
    assert doubled == {}, f"write handlers invoked more than once: {doubled}"
    expected = {(f"run-{n}", t) for n in range(RUNS) for t in ("create_label", "close_ticket")}
    assert set(calls) == expected
    store = setup.open()
    try:
        for n in range(RUNS):
            finished = [e for e in store.read(f"run-{n}") if isinstance(e, RunFinished)]
            assert [e.status.value for e in finished] == ["completed"], n
            info = store.get_run(f"run-{n}")
            assert info is not None and info.owner is None  # released when it finished
    finally:
        store.close()


def test_recover_skips_a_run_whose_worker_is_alive(setup: Setup) -> None:
    """A worker blocked in a write handler for longer than its lease TTL keeps the run (its
    heartbeat renews the lease): another worker's recover() skips it; one invocation."""
    ready, until = setup.folder / "in-handler", setup.folder / "release"
    holder = subprocess.Popen(
        setup.command("--hold", "held", "--lease-ttl", "0.6", "--ready", str(ready),
                      "--until", str(until)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(ready.exists, "the holder to enter its write handler")
        time.sleep(1.5)  # well past the TTL: only the heartbeat keeps the lease alive
        other = subprocess.run(setup.command("--recover"), capture_output=True, text=True,
                               timeout=60, check=False)
        assert other.returncode == 0, other.stderr
        assert json.loads(other.stdout)["finished"] == []
        assert setup.invocations()[("held", "create_label")] == 1
        store = setup.open()
        try:
            info = store.get_run("held")
            assert info is not None and info.owner is not None and info.status.value == "running"
        finally:
            store.close()
    finally:
        until.write_text("go")
    assert finish(holder)["status"] == "completed"
    assert setup.invocations() == Counter({("held", "create_label"): 1,
                                           ("held", "close_ticket"): 1})
