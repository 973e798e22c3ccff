"""The support-chat session (examples/support_chat/drive.py) run as real worker processes,
SIGKILLed at every boundary of every turn and restarted with the same store until the script
completes: no lost turn, no duplicated refund, no model call paid twice, every wait decided once.

The payments service is the example's simulated world served by ``tether sim serve`` in its own
process, so it outlives the killed workers and its ledger counts the refunds really applied.
A clean run (traced) lists the boundaries — the store appends that record a turn's progress
(``AFTER``, ``BEFORE``) — and gives what every crashed schedule must end with. A schedule is a
list of boundaries: its first worker dies at the first, each restart at the next one, and the
last one completes the script. Three schedules deal all the boundaries among them; on
PostgreSQL a fourth kills at every boundary of the third turn (a refund the customer confirms
in the app and a supervisor approves, and the notes updated) in a row.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether.events import WaitResolved
from tether.runtime.runtime import Runtime
from tether.sessions import Sessions
from tether.store.open import open_store

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("support_chat_app.py")
WORLD = ROOT / "examples" / "support_chat" / "world.yaml"
DRIVE = ROOT / "examples" / "support_chat" / "drive.py"
AGENT = ROOT / "examples" / "support_chat" / "agent.yaml"
SESSION = "support-ada"
TURNS = 5
#: Schedules: the boundaries are dealt among them in turn.
PARTS = 3
#: Appends killed after: each is a durable instant of a turn (the session's own changes, the
#: run's creation, a model answer, a tool's intent or result, a wait begun or answered, the
#: run's end). ``step`` and ``decision`` records sit between two of these with no work between.
AFTER = {"turn_started", "trigger_fired", "variable_set", "run_started", "model_called",
         "tool_intent", "tool_result", "wait_started", "wait_resolved", "run_finished",
         "turn_finished", "resource_version"}
#: Appends killed before: work was done that the append records (a turn about to start, a
#: tool's handler returned but its result not journaled).
BEFORE = {"turn_started", "trigger_fired", "variable_set", "tool_result"}


class World:
    """A served payments world in its own process (one per schedule)."""

    def __init__(self, scenario: Path = WORLD) -> None:
        # Its log goes to a file: a pipe nobody reads would stall the server once full.
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tether.cli import main; main()", "sim", "serve",
             str(scenario), "--seed", "1"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self._payments: str | None = None

    @property
    def payments(self) -> str:
        """The payments URL, once the server printed it."""
        assert self.proc.stdout is not None
        while self._payments is None:
            line = self.proc.stdout.readline()
            if not line:
                self.log.seek(0)
                raise AssertionError(f"the world did not start: {self.log.read()[-3000:]}")
            if line.startswith("payments"):
                self._payments = line.split()[1]
        return self._payments

    def refunds(self) -> list[tuple[str, int, str]]:
        root = self.payments.rsplit("/payments", 1)[0]
        effects = httpx.get(f"{root}/_tether/ledger", timeout=30.0).json()["effects"]
        return [(e["data"]["charge"], e["data"]["amount"], e["key"]) for e in effects
                if (e["service"], e["operation"]) == ("payments", "refund")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()


@dataclass
class Outcome:
    """What a store and a world hold once the script completed."""

    turns: list[tuple[int, str, Any, str | None]]
    transcript: list[dict[str, Any]]
    variables: dict[str, Any]
    resources: dict[str, tuple[int, Any, Any]]
    refunds: list[tuple[str, int, str]]
    model_calls: dict[str, int]
    waits_resolved: dict[str, int]
    model_asked: Counter[str]
    recorded_digests: Counter[str]


class Workers:
    """Starts worker processes: forked from one server that imported the library once (see
    support_chat_app.py), so each costs a fork, not the imports."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(APP), "--fork-server"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, folder: Path, world: World, *, kill_at: str | None = None,
            trace: Path | None = None, store: str | None = None) -> tuple[int, str]:
        """Run the driver to its end or to ``kill_at``; its exit status and output."""
        argv: list[str] = []
        if kill_at is not None:
            argv += ["--kill-at", kill_at]
        if trace is not None:
            argv += ["--trace", str(trace)]
        argv += ["--", "--store", store or str(folder / "runs.db"), "--payments", world.payments,
                 "--json"]
        log = folder / "worker.log"
        log.write_text("")
        job = {"argv": argv, "env": {"SUPPORT_CHAT_MODEL_LOG": str(folder / "model.log")},
               "log": str(log)}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the fork server died"
        return int(json.loads(answer)["rc"]), log.read_text()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Worlds:
    """Served worlds, each started one test ahead so that it boots while the test before runs."""

    def __init__(self) -> None:
        self._started = [World()]

    def take(self) -> World:
        self._started.append(World())
        return self._started[-2]

    def stop(self) -> None:
        for world in self._started:
            world.stop()


@pytest.fixture(scope="module")
def worlds() -> Iterator[Worlds]:
    started = Worlds()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    started = Workers()
    try:
        yield started
    finally:
        started.stop()


def outcome(folder: Path, world: World, url: str | None = None) -> Outcome:
    store = open_store(url or str(folder / "runs.db"), create=False)
    try:
        session = Sessions(Runtime(store)).session(SESSION)
        model_calls: dict[str, int] = {}
        waits: Counter[str] = Counter()
        digests: Counter[str] = Counter()
        for turn in session.turns:
            events = store.read(turn.run_id)
            model_calls[turn.run_id] = sum(e.kind == "model_called" for e in events)
            digests.update(e.request_digest for e in events if e.kind == "model_called")
            waits.update(f"{turn.run_id}|{e.key}" for e in events if isinstance(e, WaitResolved))
        transcript = [{k: v for k, v in row.items() if k != "seq"}
                      for row in session.transcript()]
        return Outcome(
            turns=[(t.number, t.trigger, t.input, t.status) for t in session.turns],
            transcript=transcript, variables=session.variables,
            resources={n: (r.version, r.content, r.provenance.get("run_id"))
                       for n, r in session.resources.items()},
            refunds=world.refunds(), model_calls=model_calls, waits_resolved=dict(waits),
            model_asked=Counter(line.split()[0] for line in
                                (folder / "model.log").read_text().splitlines()),
            recorded_digests=digests)
    finally:
        store.close()


def boundaries(trace: list[str]) -> list[str]:
    """Every kill boundary (``STREAM|KIND|AT|WHEN``), in the order a clean run reaches them."""
    found = []
    for boundary in trace:
        kind = boundary.split("|")[1]
        if kind in BEFORE:
            found.append(f"{boundary}|before")
        if kind in AFTER:
            found.append(f"{boundary}|after")
    return found


def schedule(trace: list[str], name: str) -> list[str]:
    """The kills of schedule ``name``: ``part-I`` takes every ``PARTS``-th boundary from the
    I-th, so consecutive kills fall in different durable calls; ``turn-N`` takes every boundary
    of turn N in a row, so one write is killed after its intent, after its effect and before
    its result — a worker the call keeps crashing, settled by the tool's lookup."""
    kind, _, which = name.partition("-")
    every = boundaries(trace)
    if kind == "part":
        return every[int(which)::PARTS]
    turn = f"session:{SESSION}:turn:{which}"
    first = every.index(f"session:{SESSION}|turn_started|{which}|before")
    last = every.index(f"session:{SESSION}|turn_finished|{which}|after")
    chain = every[first:last + 1]
    assert all(b.startswith((turn + "|", f"session:{SESSION}|")) for b in chain)
    return chain


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, workers: Workers,
          worlds: Worlds) -> Iterator[tuple[Outcome, list[str]]]:
    """A run with no crash: what every schedule must end with, and the boundaries it passed."""
    folder = tmp_path_factory.mktemp("clean")
    world = worlds.take()
    try:
        rc, log = workers.run(folder, world, trace=folder / "trace")
        assert rc == 0, log[-3000:]
        trace = [json.loads(line) for line in (folder / "trace").read_text().splitlines()]
        yield outcome(folder, world), trace
    finally:
        world.stop()


@pytest.mark.slow
def test_the_clean_run_is_the_conversation_the_example_promises(
        clean: tuple[Outcome, list[str]]) -> None:
    """Without crashes: five finished turns, two refunds (the two asked for), one wait of each
    kind decided once, the plan variable changed, the notes written twice, every model call
    asked once."""
    done, trace = clean
    assert [t[3] for t in done.turns] == ["completed"] * TURNS
    assert [(charge, amount) for charge, amount, _ in done.refunds] == [
        ("ch_0002", 7500), ("ch_0003", 15000)]
    assert sorted(done.waits_resolved.values()) == [1, 1, 1]
    assert done.variables["plan"] == "pro"
    assert done.resources["order_notes"][0] == 2
    assert set(done.model_asked.values()) == {1}
    assert done.model_asked == done.recorded_digests
    answers = [r["content"] for r in done.transcript if r["role"] == "assistant" and
               r["content"]]
    assert answers[-1] == "You are on the pro plan."
    every = boundaries(trace)
    assert len(every) > 60
    assert {b.split("|")[0] for b in every} == {f"session:{SESSION}"} | {
        f"session:{SESSION}:turn:{n}" for n in range(1, TURNS + 1)}


@pytest.mark.slow
@pytest.mark.parametrize("name", [f"part-{i}" for i in range(PARTS)])
def test_a_worker_killed_at_every_boundary_of_every_turn_loses_and_repeats_nothing(
        tmp_path: Path, clean: tuple[Outcome, list[str]], workers: Workers, worlds: Worlds,
        name: str) -> None:
    """SIGKILL the worker at boundaries of every turn, one per process (before a turn starts,
    after, inside the run after each durable call and each wait, after the run and after the
    turn ended; the three schedules together kill at each boundary once); restarted on the
    same store it completes with the clean run's turns, transcript, variables, resources,
    refunds in the service's ledger and model calls — each model request asked once across
    all processes, each wait answered once."""
    crash_and_compare(tmp_path, clean, workers, worlds, name)


@pytest.mark.slow
@pytest.mark.postgres
def test_the_same_on_postgresql(tmp_path: Path, clean: tuple[Outcome, list[str]],
                                workers: Workers, worlds: Worlds, postgres_dsn: str) -> None:
    """The session on a PostgreSQL store, its worker killed at every boundary of the third
    turn in a row (three kills inside the notes write among them, which its lookup settles),
    ends as the clean run on SQLite did."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("CREATE DATABASE support_chat")
    url = postgres_dsn.rsplit("/", 1)[0] + "/support_chat"
    crash_and_compare(tmp_path, clean, workers, worlds, "turn-3", store=url)


def crash_and_compare(folder: Path, clean: tuple[Outcome, list[str]], workers: Workers,
                      worlds: Worlds, name: str, *, store: str | None = None) -> None:
    """Run schedule ``name`` and compare what it ends with to the clean run's."""
    expected, trace = clean
    world = worlds.take()
    try:
        for boundary in schedule(trace, name):
            rc, log = workers.run(folder, world, kill_at=boundary, store=store)
            assert rc == -signal.SIGKILL, (
                f"{boundary}: rc {rc} (the boundary was not reached)\n{log[-3000:]}")
        rc, log = workers.run(folder, world, store=store)
        assert rc == 0, log[-3000:]
        got = outcome(folder, world, store)
    finally:
        world.stop()
    assert got.turns == expected.turns
    assert got.transcript == expected.transcript
    assert got.variables == expected.variables
    assert got.resources == expected.resources
    assert got.refunds == expected.refunds
    assert got.model_calls == expected.model_calls
    assert got.waits_resolved == expected.waits_resolved
    # A model request recorded before a kill is never asked again: each once, in all processes.
    assert got.model_asked == expected.model_asked
    assert got.recorded_digests == expected.recorded_digests

@pytest.mark.slow
def test_refund_answers_lost_on_the_wire_apply_once(
        tmp_path: Path, clean: tuple[Outcome, list[str]], workers: Workers) -> None:
    """The served world drops the connection after applying a refund — on all three attempts
    for the first order, once for the second: the tools see httpx's own errors and re-issue
    under the same key, the first refund's outcome is settled by the tool's lookup once its
    attempts are spent, and the session ends as the clean run did, one refund per order."""
    expected, _ = clean
    faulted = tmp_path / "world.yaml"
    lose = "{kind: timeout_after, target: payments.create_refund, on_call: [1, 2, 3, 4]}"
    faulted.write_text(WORLD.read_text().replace("agent: agent.yaml", f"agent: {AGENT}")
                       + f"faults:\n  - {lose}\n")
    world = World(faulted)
    try:
        rc, log = workers.run(tmp_path, world)
        assert rc == 0, log[-3000:]
        got = outcome(tmp_path, world)
    finally:
        world.stop()
    store = open_store(str(tmp_path / "runs.db"), create=False)
    try:
        reissued = [e for turn in (2, 3) for e in store.read(f"session:{SESSION}:turn:{turn}")
                    if e.kind == "tool_intent" and getattr(e, "tool", "") == "issue_refund"]
    finally:
        store.close()
    assert len(reissued) == 3 + 2  # the faults fired: each lost answer was re-issued
    assert got.refunds == expected.refunds
    assert (got.turns, got.transcript, got.resources) == (
        expected.turns, expected.transcript, expected.resources)


@pytest.mark.slow
def test_the_script_on_its_own_world_and_run_again_changes_nothing(tmp_path: Path) -> None:
    """``python drive.py --store FILE`` with the payments world in its own process completes
    the conversation; run again on the same store it starts no turn and writes nothing."""
    def drive() -> dict[str, Any]:
        proc = subprocess.run([sys.executable, str(DRIVE), "--store", str(tmp_path / "runs.db"),
                               "--json"], capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        return summary

    first = drive()
    assert [t["status"] for t in first["turns"]] == ["completed"] * TURNS
    assert [(r["data"]["charge"], r["data"]["amount"]) for r in first["refunds"]] == [
        ("ch_0002", 7500), ("ch_0003", 15000)]
    assert first["resources"]["order_notes"]["content"].splitlines() == [
        "ch_0002: refunded 75.00 (re_0001)", "ch_0003: refunded 150.00 (re_0002)"]
    again = drive()
    assert again["refunds"] == []  # a fresh world in the new process: no refund was asked
    assert {k: again[k] for k in ("turns", "transcript", "resources", "variables")} == {
        k: first[k] for k in ("turns", "transcript", "resources", "variables")}
