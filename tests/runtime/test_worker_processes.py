"""`tether worker` as real processes on one SQLite file (and, for takeovers, one PostgreSQL
database): runs enqueued with `tether runs start` are completed; SIGTERM mid-step hands the run
back (exit 0) and a second worker finishes it with no handler called twice; SIGKILL leaves the
run to another worker once the lease expires. Handlers count their invocations in a file."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tether.events import RunStatus
from tether.store.base import RunInfo, Store, WorkQueue
from tether.store.open import open_store

FLOWS = '''
import asyncio
import os
from pathlib import Path

from tether import RunContext, workflow

LOG = Path(os.environ["FLOWS_LOG"])
SLOW_S = float(os.environ.get("FLOWS_SLOW_S", "0"))


def note(line: str) -> None:
    with LOG.open("a") as handle:
        handle.write(line + "\\n")


@workflow(name="quick")
async def quick(ctx: RunContext, n: int) -> int:
    await ctx.step("mark", lambda: note(f"quick:{n}"))
    return n


async def slow(n: int) -> int:
    first = f"slow-begin:{n}" not in LOG.read_text()
    note(f"slow-begin:{n}")
    if first:  # only the first invocation is slow: a takeover then continues at once
        await asyncio.sleep(SLOW_S)
    note(f"slow-end:{n}")
    return n


@workflow(name="slowstep")
async def slowstep(ctx: RunContext, n: int) -> int:
    await ctx.step("slow", slow, n)
    await ctx.step("after", lambda: note(f"after:{n}"))
    return n
'''

#: The longest a test waits for a condition (a hang guard, not a timing assert).
PATIENCE_S = 60.0


class Site:
    """A folder with the workflows, a store file and the handlers' invocation log."""

    def __init__(self, root: Path, store_url: str | None = None) -> None:
        self.root = root
        (root / "worker_flows.py").write_text(FLOWS)
        self.db = store_url or str(root / "runs.db")
        self.log = root / "calls.log"
        self.log.write_text("")
        self.procs: list[subprocess.Popen[str]] = []

    def env(self, slow_s: float) -> dict[str, str]:
        return {**os.environ, "FLOWS_LOG": str(self.log), "FLOWS_SLOW_S": str(slow_s),
                "PYTHONPATH": os.pathsep.join([str(self.root), os.environ.get(
                    "PYTHONPATH", "")])}

    def tether(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "tether.cli", *args, "--store", self.db],
                              cwd=self.root, env=self.env(0), capture_output=True, text=True,
                              timeout=PATIENCE_S, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def worker(self, name: str, *, slow_s: float = 0.0, ttl_s: float = 30.0,
               poll_s: float = 0.2) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether.cli", "worker", "--store", self.db,
             "--workflow", "worker_flows:quick", "--workflow", "worker_flows:slowstep",
             "--name", name, "--lease-ttl-s", str(ttl_s), "--poll-s", str(poll_s),
             "--grace-s", "30", "--json"],
            cwd=self.root, env=self.env(slow_s), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def calls(self) -> Counter[str]:
        return Counter(self.log.read_text().split())

    def store(self) -> Store:
        return open_store(self.db)

    def info(self, run_id: str) -> RunInfo:
        store = self.store()
        try:
            info = store.get_run(run_id)
        finally:
            store.close()
        assert info is not None, f"no run {run_id}"
        return info

    def status(self, run_id: str) -> RunStatus:
        return self.info(run_id).status

    def registered(self, name: str) -> bool:
        store = self.store()
        try:
            assert isinstance(store, WorkQueue)
            return any(w.name == name for w in store.workers())
        finally:
            store.close()


def wait_until(check: Callable[[], bool], proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}): "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.02)


def outcomes(proc: subprocess.Popen[str]) -> list[dict[str, str]]:
    out, _ = proc.communicate(timeout=PATIENCE_S)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


_databases = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """A site on a SQLite file, and one on a database of its own on a real PostgreSQL."""
    if request.param == "sqlite":
        yield from _site(tmp_path, None)
        return
    import psycopg

    dsn = request.getfixturevalue("postgres_dsn")
    name = f"worker_processes_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield from _site(tmp_path, dsn.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from _site(tmp_path, None)


def _site(tmp_path: Path, store_url: str | None) -> Iterator[Site]:
    made = Site(tmp_path, store_url)
    yield made
    for proc in made.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_runs_started_from_the_command_line_are_completed_by_a_worker(site: Site) -> None:
    """Three runs enqueued with `tether runs start` complete on a running worker, each
    handler once; SIGTERM then stops the worker with exit code 0 and one line per run."""
    worker = site.worker("w1")
    ids = [site.tether("runs", "start", "worker_flows:quick", "--input", str(n))
           for n in range(3)]
    wait_until(lambda: all(site.status(i) is RunStatus.COMPLETED for i in ids), worker)
    worker.send_signal(signal.SIGTERM)
    lines = outcomes(worker)
    assert worker.returncode == 0
    assert sorted(line["run_id"] for line in lines) == sorted(ids)
    assert {line["outcome"] for line in lines} == {"completed"}
    assert site.calls() == Counter({"quick:0": 1, "quick:1": 1, "quick:2": 1})
    assert not site.registered("w1")


def test_sigterm_mid_step_hands_the_run_back_to_another_worker(site: Site) -> None:
    """SIGTERM while a slow step runs: the step ends and is journaled, the worker exits 0
    having handed the run back, and a second worker finishes it: every handler ran once."""
    first = site.worker("w1", slow_s=2.0)
    run_id = site.tether("runs", "start", "worker_flows:slowstep", "--input", "7")
    wait_until(lambda: site.calls()["slow-begin:7"] == 1, first)
    first.send_signal(signal.SIGTERM)
    lines = outcomes(first)
    assert first.returncode == 0, first.stderr
    assert [(line["run_id"], line["outcome"]) for line in lines] == [(run_id, "handed back")]
    info = site.info(run_id)
    assert info.status is RunStatus.RUNNING and info.owner is None
    second = site.worker("w2")
    wait_until(lambda: site.status(run_id) is RunStatus.COMPLETED, second)
    second.send_signal(signal.SIGTERM)
    assert [line["outcome"] for line in outcomes(second)] == ["completed"]
    assert site.calls() == Counter({"slow-begin:7": 1, "slow-end:7": 1, "after:7": 1})


@pytest.mark.parametrize("poll_s", [0.1, 1.0])
def test_sigkill_leaves_the_run_to_another_worker_after_the_lease(any_site: Site,
                                                                  poll_s: float) -> None:
    """A worker SIGKILLed mid-step keeps its lease until it expires; a waiting worker then
    takes the run over and finishes it (the unjournaled step runs again: steps are
    at-least-once). Prints the takeover latency: lease expiry to the run's next event."""
    site, ttl_s = any_site, 1.5
    doomed = site.worker("doomed", slow_s=120.0, ttl_s=ttl_s)
    run_id = site.tether("runs", "start", "worker_flows:slowstep", "--input", "3")
    wait_until(lambda: site.calls()["slow-begin:3"] == 1, doomed)
    survivor = site.worker("survivor", ttl_s=ttl_s, poll_s=poll_s)
    wait_until(lambda: site.registered("survivor"), survivor)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    expires_at = site.info(run_id).lease_expires_at
    assert expires_at is not None
    wait_until(lambda: site.status(run_id) is RunStatus.COMPLETED, survivor)
    survivor.send_signal(signal.SIGTERM)
    assert [line["outcome"] for line in outcomes(survivor)] == ["completed"]
    assert survivor.returncode == 0
    assert site.calls() == Counter({"slow-begin:3": 2, "slow-end:3": 1, "after:3": 1})
    store = site.store()
    taken = next(e for e in store.read(run_id) if e.kind == "step")
    store.close()
    kind = "postgres" if site.db.startswith("postgresql") else "sqlite"
    print(f"\ntakeover on {kind} with --poll-s {poll_s}: {(taken.at - expires_at) * 1000:.0f} "
          f"ms after the lease expired (--lease-ttl-s {ttl_s})")
    assert taken.at >= expires_at  # never before the dead worker's lease ran out


SLOW_IMPORT = '''
import pathlib
import time

pathlib.Path(__file__).with_name("loading").write_text("started")
time.sleep(3)  # a workflow module that takes a while to import (its SDKs, its models)

from tether import RunContext, workflow


@workflow(name="slow_import")
async def slow_import(ctx: RunContext) -> str:
    return "done"
'''


def test_sigterm_while_the_workflows_load_is_a_clean_stop(tmp_path: Path) -> None:
    """A worker told to stop while it is still importing its workflows stops as it would
    later: exit 0, nothing claimed, not the default SIGTERM death (143)."""
    module = tmp_path / "slow_flows.py"
    module.write_text(SLOW_IMPORT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "worker", "--store", str(tmp_path / "runs.db"),
         "--workflow", f"{module}:slow_import", "--poll-s", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "loading").exists(), proc)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: no runs" in err
