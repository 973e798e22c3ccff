"""What `tether serve` costs per turn: concurrent sessions over HTTP against the same turns
through ``Sessions.turn`` in-process, on SQLite and on PostgreSQL.

    python benchmarks/serve_sessions.py              # 200 sessions x 5 turns, 20 clients, 3 reps
    python benchmarks/serve_sessions.py --quick      # 20 sessions x 3 turns
    python benchmarks/serve_sessions.py --sessions 100 --turns 5 --concurrency 10 --repeat 5

The agent is an agent file written to a temp dir: a scripted model that calls one read tool
(``lookup``) and then answers, so a turn is two model calls and one tool call, all journaled.

**serve**: a real ``tether serve`` (uvicorn in a subprocess, on a free loopback port) on a
fresh store. The sessions are created over HTTP (untimed), then ``--concurrency`` clients
(httpx, async, one process) take sessions from a queue and drive each through its turns in
order (``POST /v1/sessions/{sid}/triggers/user-message``, the SSE stream read to its terminal
event). Per turn: the latency from sending the request to the terminal event
(``turn.finished``), and the time to the first event (``turn.started``). Overall: turns per
second over the driving phase, and the server process's CPU seconds (user + system, from
``/proc/<pid>/stat``) per turn — the figure least moved by a busy machine.

**bare**: the same turns in this process, through ``Sessions.turn`` on a ``Runtime`` over a
fresh store of the same kind, with the same number of concurrent asyncio tasks: the scripted
loop with no HTTP, no SSE and no server around it. Its "first event" is the moment the turn's
run is started (its ``run_started`` appended), its CPU is this process's CPU time.

Every system gets one untimed warm-up turn first. Stores are fresh files (SQLite) or fresh
databases on one throwaway server (``tether.testing.postgres.TemporaryPostgres``); systems
take turns repetition by repetition, and each figure is the median over repetitions (of each
repetition's p50, p99, rate, CPU per turn). Results are Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tether import __version__ as tether_version
from tether.clock import SystemClock
from tether.events import Event, RunStarted
from tether.runtime.runtime import Runtime
from tether.serve.sse import aparse_frames
from tether.serve.tenants import KeyRing
from tether.sessions.loader import load_definition
from tether.sessions.session import Sessions
from tether.sessions.state import turn_run_id
from tether.store.base import Store
from tether.store.open import open_store

AGENT_YAML = """\
name: bench
instructions: Answer briefly.
model: {provider: scripted, script: "bench_agent.py:script"}
tools: ["bench_agent.py:tools"]
"""
AGENT_PY = '''\
from pydantic import BaseModel
import tether
from tether.models import call, reply


class Lookup(BaseModel):
    q: str


@tether.tool(effect="read")
async def lookup(ctx: tether.ToolContext, args: Lookup) -> dict[str, str]:
    """Look something up (a constant answer)."""
    return {"q": args.q, "answer": "42"}


def tools(env):
    return [lookup]


def script(request):
    asked = sum(1 for m in request.messages if m.role == "user")
    last_user = max(i for i, m in enumerate(request.messages) if m.role == "user")
    if not any(m.role == "tool" for m in request.messages[last_user:]):
        return call("lookup", {"q": f"turn {asked}"}, call_id=f"c{asked}")
    return reply(f"answer {asked}: 42")
'''
KEY = "tk_bench-driver-0000-0123456789abcdef"
CLI = [sys.executable, "-c", "from tether.cli import app; app()"]
TERMINAL = ("turn.finished", "run.waiting")
TICKS_S = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One repetition of one system on one store."""

    turn_s: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    client_cpu_s: float | None = None

    @property
    def turns(self) -> int:
        return len(self.turn_s)


@dataclass(frozen=True)
class Workload:
    sessions: int
    turns: int
    concurrency: int


# -- the agent, the keys, the server ------------------------------------------------------


def write_agent(tmp: Path) -> tuple[Path, Path]:
    """The agent file and a keys file holding :data:`KEY`."""
    agent = tmp / "bench.yaml"
    agent.write_text(AGENT_YAML)
    (tmp / "bench_agent.py").write_text(AGENT_PY)
    keys = tmp / "keys.yaml"
    ring = KeyRing()
    ring.add(KEY, tenant="bench", principal="driver", roles=[])
    ring.save(keys)
    return agent, keys


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (``/proc/<pid>/stat`` fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / TICKS_S


@contextlib.contextmanager
def tether_serve(agent: Path, keys: Path, store_url: str,
                 log: Path) -> Iterator[tuple[int, str]]:
    """`tether serve` on a free loopback port: (pid, base URL); SIGTERM on exit."""
    with log.open("w") as stderr:
        proc = subprocess.Popen([*CLI, "serve", str(agent), "--store", store_url, "--keys",
                                 str(keys), "--port", "0", "--owner", "bench"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                cwd=agent.parent)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("serving http://"):
                proc.wait(timeout=30)
                raise RuntimeError(f"tether serve did not start: {line!r}\n{log.read_text()}")
            yield proc.pid, line.split()[1]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# -- driving ---------------------------------------------------------------------------


async def http_turn(http: httpx.AsyncClient, sid: str, n: int) -> tuple[float, float]:
    """One turn over HTTP: (seconds to the first event, seconds to the terminal event)."""
    started = time.perf_counter()
    first: float | None = None
    path = f"/v1/sessions/{sid}/triggers/user-message"
    async with http.stream("POST", path, json={"input": {"text": f"question {n}"}}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {(await response.aread())!r}")
        async for frame in aparse_frames(response.aiter_bytes()):
            now = time.perf_counter()
            if first is None:
                first = now
            if frame.event in TERMINAL:
                status = json.loads(frame.data).get("status")
                if frame.event != "turn.finished" or status != "completed":
                    raise RuntimeError(f"turn {n} of {sid} ended {frame.event} {frame.data}")
                return first - started, now - started
    raise RuntimeError(f"the stream of turn {n} of {sid} ended without a terminal event")


async def drive(workload: Workload, prefix: str,
                turn: Callable[[str, int], Any]) -> tuple[list[float], list[float], float]:
    """``workload.concurrency`` workers take sessions from a queue and run each one's turns in
    order: (turn latencies, first-event times, wall seconds)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(workload.sessions):
        queue.put_nowait(f"{prefix}{i}")
    latencies: list[float] = []
    firsts: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            sid = queue.get_nowait()
            for n in range(1, workload.turns + 1):
                first, whole = await turn(sid, n)
                firsts.append(first)
                latencies.append(whole)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workload.concurrency)))
    return latencies, firsts, time.perf_counter() - started


async def serve_sample(agent: Path, keys: Path, store_url: str, workload: Workload,
                       log: Path) -> Sample:
    """One repetition through a real ``tether serve``."""
    with tether_serve(agent, keys, store_url, log) as (pid, base):
        try:
            return await _drive_server(pid, base, workload)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nthe server's log:\n{log.read_text()[-4000:]}") from exc


async def _drive_server(pid: int, base: str, workload: Workload) -> Sample:
    limits = httpx.Limits(max_connections=workload.concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120.0, limits=limits,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        for sid in ["warm", *(f"s{i}" for i in range(workload.sessions))]:
            created = await http.post("/v1/sessions", json={"agent": "bench",
                                                            "session_id": sid})
            if created.status_code != 201:
                raise RuntimeError(f"creating {sid}: {created.status_code} {created.text}")
        await http_turn(http, "warm", 1)

        async def turn(sid: str, n: int) -> tuple[float, float]:
            return await http_turn(http, sid, n)

        cpu, client_cpu = process_cpu_s(pid), time.process_time()
        latencies, firsts, wall = await drive(workload, "s", turn)
        return Sample(latencies, firsts, wall, process_cpu_s(pid) - cpu,
                      time.process_time() - client_cpu)


async def bare_sample(agent: Path, store: Store, workload: Workload) -> Sample:
    """One repetition of the same turns through ``Sessions.turn`` in this process."""
    runtime = Runtime(store, clock=SystemClock(), owner="bench-bare")
    sessions = Sessions(runtime)
    sessions.add_definition(load_definition(agent))
    started_at: dict[str, float] = {}

    def heard(run_id: str, event: Event) -> None:
        if isinstance(event, RunStarted):
            started_at[run_id] = time.perf_counter()

    runtime.add_listener(heard)
    for sid in ["warm", *(f"s{i}" for i in range(workload.sessions))]:
        sessions.create(sid, agent="bench")
    await sessions.turn("warm", "question 1")

    async def turn(sid: str, n: int) -> tuple[float, float]:
        started = time.perf_counter()
        result = await sessions.turn(sid, f"question {n}")
        done = time.perf_counter()
        if result.run.status.value != "completed":
            raise RuntimeError(f"turn {n} of {sid} ended {result.run.status.value}")
        return started_at[turn_run_id(sid, n)] - started, done - started

    cpu = time.process_time()
    latencies, firsts, wall = await drive(workload, "s", turn)
    return Sample(latencies, firsts, wall, time.process_time() - cpu)


# -- stores ------------------------------------------------------------------------------


class Stores:
    """Fresh stores of one kind: SQLite files in a temp dir, or databases on one server."""

    def __init__(self, kind: str, tmp: Path, dsn: str | None = None) -> None:
        self.kind, self.tmp, self.dsn, self._made = kind, tmp, dsn, 0

    def fresh_url(self) -> str:
        self._made += 1
        if self.dsn is None:
            return str(self.tmp / f"runs-{self._made}.db")
        import psycopg

        name = f"bench_{self._made}"
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def store_kinds(tmp: Path, wanted: set[str]) -> Iterator[list[tuple[Stores | None, str]]]:
    """(stores, note) per kind; ``None`` with the reason when PostgreSQL cannot run here."""
    kinds: list[tuple[Stores | None, str]] = (
        [(Stores("SQLite", tmp), "")] if "sqlite" in wanted else [])
    if "postgresql" not in wanted:
        yield kinds
        return
    try:
        import psycopg  # noqa: F401

        from tether.testing.postgres import TemporaryPostgres, postgres_available
    except ImportError as exc:
        yield [*kinds, (None, f"PostgreSQL skipped: {exc} (pip install 'tether[postgres]')")]
        return
    if not postgres_available():
        yield [*kinds, (None, "PostgreSQL skipped: no server binaries (initdb, pg_ctl), or "
                              "no postgres user while running as root")]
        return
    with TemporaryPostgres() as server:
        yield [*kinds, (Stores("PostgreSQL", tmp, server.dsn), "")]


# -- the run and the table ---------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(samples: list[Sample]) -> dict[str, float | None]:
    """Medians over repetitions of each repetition's figures (ms, turns/s)."""
    def med(f: Callable[[Sample], float]) -> float:
        return statistics.median(f(s) for s in samples)

    clients = [s.client_cpu_s for s in samples if s.client_cpu_s is not None]
    return {
        "rate": med(lambda s: s.turns / s.wall_s),
        "p50": med(lambda s: percentile(s.turn_s, 0.5) * 1e3),
        "p99": med(lambda s: percentile(s.turn_s, 0.99) * 1e3),
        "first50": med(lambda s: percentile(s.first_s, 0.5) * 1e3),
        "first99": med(lambda s: percentile(s.first_s, 0.99) * 1e3),
        "cpu": med(lambda s: s.cpu_s / s.turns * 1e3),
        "client": (statistics.median(c / samples[0].turns * 1e3 for c in clients)
                   if clients else None),
    }


async def run(workload: Workload, repeat: int, wanted: set[str]) -> None:
    results: dict[tuple[str, str], list[Sample]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tether-serve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        agent, keys = write_agent(tmp)
        with store_kinds(tmp, wanted) as kinds:
            for rep in range(repeat):
                for stores, note in kinds:
                    if stores is None:
                        if rep == 0:
                            notes.append(note)
                        continue
                    order = ("bare", "serve") if rep % 2 == 0 else ("serve", "bare")
                    for system in order:
                        url = stores.fresh_url()
                        print(f"  {stores.kind} {system}: repetition {rep + 1}/{repeat}",
                              file=sys.stderr, flush=True)
                        if system == "serve":
                            sample = await serve_sample(agent, keys, url, workload,
                                                        tmp / "serve.log")
                        else:
                            store = open_store(url)
                            try:
                                sample = await bare_sample(agent, store, workload)
                            finally:
                                store.close()
                        results.setdefault((stores.kind, system), []).append(sample)
    report(workload, repeat, results, notes)


def report(workload: Workload, repeat: int, results: dict[tuple[str, str], list[Sample]],
           notes: list[str]) -> None:
    turns = workload.sessions * workload.turns
    print("## Machine\n")
    load = os.getloadavg()
    print(f"- {platform.machine()}, {os.cpu_count()} cores; Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}; tether "
          f"{tether_version}; load average {load[0]:.2f} / {load[1]:.2f} at the end")
    print(f"- {workload.sessions} sessions × {workload.turns} turns = {turns} turns per "
          f"system, {workload.concurrency} concurrent clients; {repeat} repetitions (+1 "
          "warm-up turn each); medians over repetitions\n")
    print("| store | system | turns/s | p50 turn ms | p99 turn ms | p50 first event ms | "
          "p99 first event ms | CPU ms/turn | client CPU ms/turn |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    summaries = {key: summary(samples) for key, samples in results.items()}
    for (kind, system), s in summaries.items():
        client = "—" if s["client"] is None else f"{s['client']:,.2f}"
        print(f"| {kind} | {system} | {s['rate']:,.0f} | {s['p50']:,.1f} | {s['p99']:,.1f} | "
              f"{s['first50']:,.2f} | {s['first99']:,.2f} | {s['cpu']:,.2f} | {client} |")
    for note in notes:
        print(f"| {note} | | | | | | | | |")
    print("\n## serve over bare (ratios of the medians)\n")
    print("| store | CPU per turn | p50 turn latency | p99 turn latency | turns/s |")
    print("|---|---:|---:|---:|---:|")
    for kind in dict.fromkeys(k for k, _ in summaries):
        serve, bare = summaries.get((kind, "serve")), summaries.get((kind, "bare"))
        if serve is None or bare is None:
            continue

        def ratio(name: str, serve: dict[str, Any] = serve,
                  bare: dict[str, Any] = bare) -> str:
            return f"{serve[name] / bare[name]:,.2f}×"

        print(f"| {kind} | {ratio('cpu')} | {ratio('p50')} | {ratio('p99')} | "
              f"{ratio('rate')} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="20 sessions × 3 turns")
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    args = parser.parse_args(argv)
    sessions = args.sessions or (20 if args.quick else 200)
    turns = args.turns or (3 if args.quick else 5)
    wanted = {name.strip().lower() for name in args.stores.split(",")}
    if not wanted <= {"sqlite", "postgresql"}:
        parser.error(f"--stores takes sqlite and/or postgresql, not {args.stores!r}")
    asyncio.run(run(Workload(sessions, turns, args.concurrency), args.repeat, wanted))


if __name__ == "__main__":
    main()
