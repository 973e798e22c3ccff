"""How long the event loop is blocked per journal append on PostgreSQL, before and after the
awaited form (``RunJournal.arecord`` over ``PostgresStore.append_async``).

    python benchmarks/loop_blocking.py                 # N = 1, 8, 32; 96 runs; 3 repetitions
    python benchmarks/loop_blocking.py --quick         # N = 1, 8; 32 runs; 1 repetition
    python benchmarks/loop_blocking.py --dsn postgresql://…   # an existing server

One process, one event loop, a throwaway PostgreSQL server (``TemporaryPostgres``: fsync on,
``synchronous_commit`` on for the flushed appends, as in production). Each cell executes
``--runs`` runs of a small workflow — three durable steps and one idempotent write whose
handler awaits 2 ms of I/O, like a call to a provider — at most N at once, on a fresh schema:

* ``blocking``: the store without its awaited form (what every append did before), so each
  append holds the loop for its round trip;
* ``awaited``: the same store as it is, appends off the loop on ``io_threads`` threads.

Reported, medians over the repetitions: runs per second (wall); the loop's blocked time per
append — a ticker task sleeping 1 ms at a time sums how late it wakes (the loop's lag), less
what the same ticker measures on an idle loop for as many ticks (a timer's own overshoot, which
is not the runs' doing), divided by the appends made; the p99 of the lag per tick; and CPU time
per run (this process, every thread: ``time.process_time``), which survives a busy machine
where wall time does not.
Progress goes to stderr, the Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tether import RunContext, Runtime, ToolContext, VirtualClock, tool
from tether.events import Event, RunStatus
from tether.store.base import Lease, RunInfo
from tether.store.postgres import PostgresStore

_TICK_S = 0.001
_schemas = itertools.count(1)


class OrderArgs(BaseModel):
    order: str


@tool(effect="idempotent", key=lambda a: f"bench:{a.order}", name="bench_loop_record")
async def record_order(ctx: ToolContext, args: OrderArgs) -> str:
    """A provider call: 2 ms of awaited I/O."""
    await asyncio.sleep(0.002)
    return f"{args.order}:{ctx.idempotency_key[:8]}"


async def workflow(ctx: RunContext, order: str) -> str:
    total = 0
    for i in range(3):
        total += await ctx.step(f"s{i}", lambda i=i: i)
    return str(await ctx.call_tool(record_order, {"order": f"{order}-{total}"}))


class BlockingOnly:
    """The store without its awaited form: every append blocks the loop, as before."""

    def __init__(self, store: PostgresStore) -> None:
        self.inner = store

    def append(self, run_id: str, events: Sequence[Event], *, expected_last_seq: int,
               sync: bool = False, lease: Lease | None = None) -> None:
        self.inner.append(run_id, events, expected_last_seq=expected_last_seq, sync=sync,
                          lease=lease)

    def acquire(self, run_id: str, owner: str, *, now: float, ttl_s: float) -> Lease:
        return self.inner.acquire(run_id, owner, now=now, ttl_s=ttl_s)

    def renew(self, lease: Lease, *, now: float, ttl_s: float) -> Lease:
        return self.inner.renew(lease, now=now, ttl_s=ttl_s)

    def release(self, lease: Lease) -> bool:
        return self.inner.release(lease)

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        return self.inner.read(run_id, after_seq=after_seq)

    def get_run(self, run_id: str) -> RunInfo | None:
        return self.inner.get_run(run_id)

    def list_runs(self, *, status: RunStatus | Sequence[RunStatus] | None = None,
                  limit: int = 1000) -> list[RunInfo]:
        return self.inner.list_runs(status=status, limit=limit)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Cell:
    runs_per_s: float
    blocked_ms_per_append: float
    lag_ms_p99: float
    cpu_ms_per_run: float
    appends: int


async def _ticks(duration_s: float, done: asyncio.Event | None = None) -> list[float]:
    """How late each 1 ms sleep wakes, until ``done`` is set (or for ``duration_s``)."""
    lags: list[float] = []
    end = time.perf_counter() + duration_s
    while (not done.is_set()) if done is not None else time.perf_counter() < end:
        start = time.perf_counter()
        await asyncio.sleep(_TICK_S)
        lags.append(max(0.0, time.perf_counter() - start - _TICK_S))
    return lags


async def _idle_lag_s() -> float:
    """The mean lag per tick of a loop doing nothing else (the timer's own overshoot)."""
    lags = await _ticks(0.3)
    return statistics.fmean(lags)


async def _cell(store: PostgresStore, *, awaited: bool, concurrency: int, runs: int) -> Cell:
    front: Any = store if awaited else BlockingOnly(store)
    runtime = Runtime(front, clock=VirtualClock(), seed=1)
    gate = asyncio.Semaphore(concurrency)
    done = asyncio.Event()
    idle = await _idle_lag_s()

    async def one(i: int) -> None:
        async with gate:
            result = await runtime.start(workflow, f"o{i}", run_id=f"run-{i}")
            assert result.status is RunStatus.COMPLETED, result

    commits = store.stats.commits
    beat = asyncio.create_task(_ticks(0.0, done))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done.set()
    lags = sorted(await beat)
    appends = store.stats.commits - commits
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
    blocked = max(0.0, sum(lags) - idle * len(lags))
    return Cell(runs / wall, 1000 * blocked / max(1, appends), 1000 * p99,
                1000 * cpu / runs, appends)


@contextlib.contextmanager
def _server(dsn: str | None) -> Iterator[str]:
    if dsn is not None:
        yield dsn
        return
    from tether.testing.postgres import TemporaryPostgres

    with TemporaryPostgres() as server:
        yield server.dsn


def _median(cells: list[Cell], name: str) -> float:
    return float(statistics.median(float(getattr(c, name)) for c in cells))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: a throwaway one)")
    parser.add_argument("--runs", type=int, default=96)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.reps, args.concurrency = 32, 1, [1, 8]
    rows: list[str] = []
    with _server(args.dsn) as dsn:
        for n in args.concurrency:
            for awaited in (False, True):
                cells = []
                for rep in range(args.reps):
                    store = PostgresStore(dsn, schema=f"bench_loop_{next(_schemas)}")
                    try:
                        cells.append(asyncio.run(_cell(store, awaited=awaited, concurrency=n,
                                                       runs=args.runs)))
                    finally:
                        store.close()
                    mode = "awaited" if awaited else "blocking"
                    print(f"N={n} {mode} rep {rep + 1}: {cells[-1]}", file=sys.stderr)
                rows.append(
                    f"| {n} | {'awaited' if awaited else 'blocking'} "
                    f"| {_median(cells, 'runs_per_s'):.0f} "
                    f"| {_median(cells, 'blocked_ms_per_append'):.3f} "
                    f"| {_median(cells, 'lag_ms_p99'):.2f} "
                    f"| {_median(cells, 'cpu_ms_per_run'):.2f} "
                    f"| {cells[0].appends / args.runs:.0f} |")
    print(f"{args.runs} runs per cell, medians of {args.reps} repetition(s); workflow: 3 steps "
          "+ 1 idempotent write (2 ms of awaited I/O); PostgreSQL on this machine\n")
    print("| concurrent runs | appends | runs/s | loop blocked per append (ms) "
          "| loop lag p99 (ms) | CPU per run (ms) | appends per run |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
