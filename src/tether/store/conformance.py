"""A conformance kit for journal stores: the :class:`~tether.store.base.Store` contract as
executable checks, run against memory, SQLite and PostgreSQL alike, and by any third-party store.

>>> from tether.store.memory import MemoryStore
>>> StoreConformance(MemoryStore, max_examples=5).run("seq_rules")

With pytest, one test per check::

    @pytest.mark.parametrize("check", StoreConformance.CHECKS)
    def test_my_store_conforms(check):
        StoreConformance(make_my_store, open_peer=reopen_my_store).run(check)

``make_store`` returns a fresh, empty store on each call. Stores may be slow to create (a
PostgreSQL schema), so each check makes one store and every Hypothesis example in it uses runs
of its own, under fresh run ids. ``open_peer`` (optional) opens another handle on the *same*
storage (a connection, a file handle), so the concurrency checks race independent writers
rather than threads sharing one handle. A failed check raises :class:`AssertionError` with the
facts. Requires ``hypothesis``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

try:
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - only without the test extra
    raise ImportError("tether.store.conformance needs hypothesis: "
                      "pip install 'tether[test]'") from exc

from tether.errors import ConcurrencyConflict, LeaseLost, RunOwned, UsageError
from tether.events import (
    Event,
    MemoryForgotten,
    MemoryWritten,
    RunDequeued,
    RunFinished,
    RunStarted,
    RunStatus,
    RunWaiting,
    StepFailed,
    StepRecorded,
    TimerFired,
    TimerStarted,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.store.base import (
    Lease,
    RunInfo,
    Store,
    advance,
    next_status,
    queue_of,
    wake_after,
)

__all__ = ["ConformanceKit", "StoreConformance", "journals"]

# -- strategies -----------------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
# Run ids and workflow names land in indexed text columns, and PostgreSQL text cannot hold NUL;
# everything else travels inside the JSON body, where NUL is escaped.
_NAME = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=["\x00"]),
                min_size=1, max_size=10)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_AT = st.floats(allow_nan=False, allow_infinity=False)
_POS = st.integers(0, 10_000)
_ERROR = st.dictionaries(_TEXT, _JSON, max_size=3)  # also tool args

_RUN_STARTED = st.builds(RunStarted, seq=st.just(1), at=_AT, workflow=_NAME, input=_JSON,
                         seed=st.integers(0, 2**63 - 1), session_id=st.none() | _TEXT,
                         queue=st.none() | _NAME)


def _kind(cls: Callable[..., Event], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Event]:
    # seq is a placeholder; `journals` numbers the events.
    return st.builds(cls, seq=st.just(0), at=_AT, **fields)


# One strategy per event kind that may follow run_started.
_LATER: list[st.SearchStrategy[Event]] = [
    _kind(StepRecorded, pos=_POS, call=st.sampled_from(["step", "now", "random", "uuid"]),
          name=_TEXT, result=_JSON),
    _kind(StepFailed, pos=_POS, call=st.just("step"), name=_TEXT, error=_ERROR),
    _kind(RunDequeued),
    _kind(RunWaiting, key=_TEXT, wake_at=st.none() | _AT),
    _kind(TimerStarted, pos=_POS, wake_at=_AT, parked=st.booleans()),
    _kind(TimerFired, pos=_POS),
    _kind(WaitStarted, pos=_POS, key=_TEXT, deadline=st.none() | _AT),
    _kind(WaitResolved, key=_TEXT, value=_JSON, by=_TEXT, note=_TEXT),
    _kind(WaitExpired, pos=_POS, key=_TEXT),
    _kind(ToolIntent, pos=_POS, tool=_TEXT, effect=_TEXT, key=_TEXT, args=_ERROR,
          attempt=st.integers(1, 9), compensates=st.none() | _POS),
    _kind(ToolResult, pos=_POS, tool=_TEXT, result=_JSON, reconciled=st.booleans()),
    _kind(ToolError, pos=_POS, tool=_TEXT, failure=_TEXT, error=_ERROR),
    _kind(ToolAmbiguous, pos=_POS, tool=_TEXT, key=_TEXT, reason=_TEXT,
          attempt=st.integers(1, 9)),
    _kind(MemoryWritten, subject=_TEXT, key=_TEXT, value=_JSON, source=_TEXT, trust=_TEXT,
          run_id=st.none() | _TEXT, position=st.none() | _POS, expires_at=st.none() | _AT),
    _kind(MemoryForgotten, subject=_TEXT, key=st.none() | _TEXT, reason=_TEXT),
    _kind(RunFinished, status=st.sampled_from(list(RunStatus)), result=_JSON,
          error=st.none() | _ERROR, reason=_TEXT),
]


@st.composite
def journals(draw: st.DrawFn, *, max_extra: int = 8) -> list[Event]:
    """A journal: run_started, then every other event kind at least once, in any order, with up
    to ``max_extra`` more events; seqs 1 … N."""
    kinds = _LATER + draw(st.lists(st.sampled_from(_LATER), max_size=max_extra))
    events: list[Event] = [draw(_RUN_STARTED)]
    events += [draw(kind) for kind in draw(st.permutations(kinds))]
    return [event.model_copy(update={"seq": seq}) for seq, event in enumerate(events, 1)]


def _check(condition: bool, message: str) -> None:
    # Not `assert`: the kit must keep checking under `python -O`.
    if not condition:
        raise AssertionError(message)


def _started(at: float = 1.0, workflow: str = "wf") -> RunStarted:
    return RunStarted(seq=1, at=at, workflow=workflow, seed=7)


def _steps(first_seq: int, count: int, *, tag: Any = None, at: float = 2.0) -> list[Event]:
    return [StepRecorded(seq=seq, at=at, pos=seq, call="step", name="s", result=tag)
            for seq in range(first_seq, first_seq + count)]


def _raises(kind: type[BaseException], what: str, action: Callable[..., object],
            *args: Any, **kwargs: Any) -> BaseException:
    try:
        action(*args, **kwargs)
    except kind as exc:
        return exc
    raise AssertionError(f"{what}: expected {kind.__name__}, nothing was raised")


# -- the kit ---------------------------------------------------------------------------------


_KITS = itertools.count(1)


class ConformanceKit:
    """What every conformance kit shares: stores made fresh per check, peer handles on the
    same storage, hypothesis settings, ids that never collide, and :meth:`run`.

    A kit lists its checks in :attr:`CHECKS`; each is the method ``check_<name>`` and makes
    its own store(s) with ``make_store`` (closing them afterwards)."""

    #: The checks, in the order :meth:`run` runs them; each is the method ``check_<name>``.
    CHECKS: ClassVar[tuple[str, ...]] = ()
    #: What the kit checks, for error messages ("no conformance check …").
    SUBJECT: ClassVar[str] = "conformance"

    def __init__(
        self,
        make_store: Callable[[], Store],
        *,
        open_peer: Callable[[Store], Store] | None = None,
        max_examples: int = 30,
    ) -> None:
        self.make_store = make_store
        self.open_peer = open_peer
        self.max_examples = max_examples
        # Ids: fresh per example, distinct per kit, stable across runs so failures replay.
        self._prefix = f"kit{next(_KITS)}"
        self._counter = itertools.count(1)

    def run(self, *checks: str) -> None:
        """Run the named checks (default: all of :attr:`CHECKS`)."""
        for name in checks or self.CHECKS:
            if name not in self.CHECKS:
                raise UsageError(f"no {self.SUBJECT} check {name!r}; choose from {self.CHECKS}")
            getattr(self, f"check_{name.replace('-', '_')}")()

    @contextmanager
    def _store(self, peers: int = 0) -> Iterator[list[Store]]:
        """A fresh store followed by ``peers`` handles on the same storage (the store itself
        again when there is no ``open_peer``); all closed afterwards."""
        store = self.make_store()
        others: list[Store] = []
        try:
            others = [self._peer(store) for _ in range(peers)]
            yield [store, *others]
        finally:
            for handle in [*(h for h in others if h is not store), store]:
                handle.close()

    def _peer(self, store: Store) -> Store:
        return self.open_peer(store) if self.open_peer else store

    def _settings(self) -> settings:
        return settings(
            max_examples=self.max_examples,
            deadline=None,  # stores do I/O; their latency is not what is being tested
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )

    def _fresh_id(self, suffix: str = "") -> str:
        return f"{self._prefix}-{next(self._counter)}{suffix}"


class StoreConformance(ConformanceKit):
    """The store contract as checks; :meth:`run` runs some or all of them.

    Each ``check_<name>`` method makes its own store(s) with ``make_store`` and closes them.
    """

    #: The checks, in the order :meth:`run` runs them; each is the method ``check_<name>``.
    CHECKS: ClassVar[tuple[str, ...]] = (
        "round_trip", "seq_rules", "stale_expected_seq_conflicts", "create_existing_run_conflicts",
        "batches_are_atomic", "read_after_seq", "run_index", "status_derivation", "unknown_run",
        "concurrent_appenders", "lease_lifecycle", "fenced_appends", "lease_interleavings",
        "concurrent_acquirers",
    )

    def _run_id(self, suffix: str = "") -> str:
        return self._fresh_id(suffix)

    # -- checks ---------------------------------------------------------------------------------

    def check_round_trip(self) -> None:
        """Any journal, appended in any batches with any sync flags, reads back equal, event for
        event, and the index row agrees with it."""
        with self._store() as (store,):

            @self._settings()
            @given(journal=journals(), data=st.data())
            def round_trip(journal: list[Event], data: st.DataObject) -> None:
                run_id = self._run_id(data.draw(_NAME, label="run id suffix"))
                cuts = sorted(data.draw(st.sets(st.integers(1, len(journal) - 1)), label="cuts"))
                for start, end in itertools.pairwise([0, *cuts, len(journal)]):
                    store.append(run_id, journal[start:end], expected_last_seq=start,
                                 sync=data.draw(st.booleans(), label="sync"))
                stored = store.read(run_id)
                _check(stored == journal, f"run {run_id!r}: read {stored} != appended {journal}")
                info, first = store.get_run(run_id), journal[0]
                assert isinstance(first, RunStarted)
                # updated_at is the time of the last event that changed the status.
                changed_at = advance(None, journal)[1]
                updated_at = first.at if changed_at is None else changed_at
                want = RunInfo(run_id, first.workflow, next_status(None, journal), len(journal),
                               first.at, updated_at, queue=queue_of(first),
                               wake_at=wake_after(None, None, journal))
                _check(info == want, f"get_run: {info} != {want}")

            round_trip()

    def check_seq_rules(self) -> None:
        """Malformed batches raise UsageError and store nothing: empty, not starting at
        expected_last_seq + 1, with a gap or a repeat, or a journal not opened by run_started."""
        with self._store() as (store,):
            run_id = self._run_id()
            bad_first: list[tuple[str, list[Event]]] = [
                ("an empty batch", []),
                ("a first batch starting at seq 2", [_started().model_copy(update={"seq": 2})]),
                ("a journal not opened by run_started", _steps(1, 1)),
                ("a batch with a gap", [_started(), *_steps(3, 1)]),
            ]
            for what, batch in bad_first:
                _raises(UsageError, what, store.append, run_id, batch, expected_last_seq=0)
                _check(store.get_run(run_id) is None and store.read(run_id) == [],
                       f"{what} was refused but left a run behind")
            journal = [_started(), *_steps(2, 2)]
            store.append(run_id, journal, expected_last_seq=0)
            bad_later: list[tuple[str, list[Event]]] = [
                ("a batch skipping a seq", _steps(5, 1)),
                ("a batch repeating the last seq", _steps(3, 1)),
                ("a batch repeating a seq inside", [*_steps(4, 1), *_steps(4, 1)]),
            ]
            for what, batch in bad_later:
                _raises(UsageError, what, store.append, run_id, batch, expected_last_seq=3)
                _check(store.read(run_id) == journal, f"{what} was refused but changed the run")

    def check_stale_expected_seq_conflicts(self) -> None:
        """An append whose expected_last_seq is not the run's last seq raises
        ConcurrencyConflict (with run_id and expected_seq) and stores nothing."""
        with self._store() as (store,):
            unknown = self._run_id()
            exc = _raises(ConcurrencyConflict, "appending at seq 4 to an unknown run",
                          store.append, unknown, _steps(4, 1), expected_last_seq=3)
            _check(store.get_run(unknown) is None, f"{exc} but the run now exists")

            @self._settings()
            @given(stored=st.integers(1, 6), expected=st.integers(0, 9), size=st.integers(1, 3))
            def stale(stored: int, expected: int, size: int) -> None:
                assume(expected != stored)
                run_id = self._run_id()
                journal = [_started(), *_steps(2, stored - 1)]
                store.append(run_id, journal, expected_last_seq=0)
                before = store.get_run(run_id)
                batch = [_started(), *_steps(2, size - 1)] if expected == 0 else _steps(
                    expected + 1, size, tag="late")
                exc = _raises(ConcurrencyConflict,
                              f"appending after seq {expected} to a run whose last is {stored}",
                              store.append, run_id, batch, expected_last_seq=expected)
                assert isinstance(exc, ConcurrencyConflict)
                _check((exc.run_id, exc.expected_seq) == (run_id, expected),
                       f"conflict carries run_id={exc.run_id!r} expected_seq={exc.expected_seq}")
                _check(store.read(run_id) == journal and store.get_run(run_id) == before,
                       f"a conflicting append changed run {run_id!r}")

            stale()

    def check_create_existing_run_conflicts(self) -> None:
        """A second run_started for an existing run is a conflict; the first run is untouched."""
        with self._store() as (store,):
            run_id = self._run_id()
            store.append(run_id, [_started(1.0, "first")], expected_last_seq=0)
            before = store.get_run(run_id)
            _raises(ConcurrencyConflict, "creating a run that exists",
                    store.append, run_id, [_started(2.0, "second")], expected_last_seq=0)
            unchanged = store.read(run_id) == [_started(1.0, "first")]
            _check(unchanged and store.get_run(run_id) == before,
                   "the losing run_started changed the existing run")

    def check_batches_are_atomic(self) -> None:
        """A reader racing a writer only ever sees whole batches, in read() and in get_run()."""
        with self._store(peers=1) as (store, reader):

            @self._settings()
            @given(size=st.integers(2, 5), batches=st.integers(2, 12))
            def atomic(size: int, batches: int) -> None:
                run_id = self._run_id()
                store.append(run_id, [_started()], expected_last_seq=0)
                done = threading.Event()
                seen: list[tuple[int, int]] = []

                def watch() -> None:
                    while not done.is_set():
                        info = reader.get_run(run_id)
                        seen.append((len(reader.read(run_id)), info.last_seq if info else 0))

                watcher = threading.Thread(target=watch)
                watcher.start()
                try:
                    for b in range(batches):
                        first = 2 + b * size
                        store.append(run_id, _steps(first, size), expected_last_seq=first - 1)
                finally:
                    done.set()
                    watcher.join()
                torn = [s for s in seen if (s[0] - 1) % size or (s[1] - 1) % size]
                _check(not torn, f"batches of {size}: a reader saw (events, last_seq) {torn[:5]}")

            atomic()

    def check_read_after_seq(self) -> None:
        """read(after_seq=k) returns exactly the events with seq > k, [] past the end."""
        with self._store() as (store,):
            run_id = self._run_id()
            journal = [_started(), *_steps(2, 4)]
            store.append(run_id, journal, expected_last_seq=0)
            for after in range(len(journal) + 3):
                got = store.read(run_id, after_seq=after)
                _check(got == journal[after:], f"read(after_seq={after}) gave {got}")

    def check_run_index(self) -> None:
        """list_runs returns runs oldest first, filtered by one status or several, honours
        limit, and agrees with get_run."""
        with self._store() as (store,):
            plan: list[tuple[str, list[Event]]] = [
                ("running", []),
                ("waiting", [WaitStarted(seq=2, at=0, pos=0, key="k")]),
                ("completed", [RunFinished(seq=2, at=0, status=RunStatus.COMPLETED)]),
                ("failed", [RunFinished(seq=2, at=0, status=RunStatus.FAILED)]),
                ("resumed", [WaitStarted(seq=2, at=0, pos=0, key="k"),
                             WaitResolved(seq=3, at=0, key="k")]),
                ("cancelled", [RunFinished(seq=2, at=0, status=RunStatus.CANCELLED)]),
                ("escalated", [RunFinished(seq=2, at=0, status=RunStatus.ESCALATED)]),
            ]
            ids: dict[str, str] = {}
            for n, (name, later) in enumerate(plan):
                ids[name] = run_id = self._run_id(f"-{name}")
                store.append(run_id, [_started(at=10.0 * (n + 1))], expected_last_seq=0)
                for event in later:  # one append per event: status carried across appends
                    store.append(run_id, [event], expected_last_seq=event.seq - 1)
            everything = store.list_runs()
            _check([r.run_id for r in everything] == list(ids.values()),
                   f"list_runs() order {[r.run_id for r in everything]}, want oldest first")
            for info in everything:
                _check(store.get_run(info.run_id) == info, f"get_run disagrees with {info}")
            cases: list[tuple[Any, list[str]]] = [
                (RunStatus.RUNNING, ["running", "resumed"]),
                (RunStatus.WAITING, ["waiting"]),
                ([RunStatus.COMPLETED, RunStatus.FAILED], ["completed", "failed"]),
                ((RunStatus.ESCALATED, RunStatus.CANCELLED), ["cancelled", "escalated"]),
                ([], []),
            ]
            for status, names in cases:
                got = [r.run_id for r in store.list_runs(status=status)]
                _check(got == [ids[n] for n in names], f"list_runs(status={status!r}) gave {got}")
            limited = [r.run_id for r in store.list_runs(limit=3)]
            _check(limited == list(ids.values())[:3], f"list_runs(limit=3) gave {limited}")
            one = [r.run_id for r in store.list_runs(status=RunStatus.RUNNING, limit=1)]
            _check(one == [ids["running"]], f"list_runs(running, limit=1) gave {one}")

    def check_status_derivation(self) -> None:
        """A run's status follows its journal: run_started → running, wait_started → waiting,
        wait_resolved / wait_expired / timer_fired → running again, run_finished → its status."""
        waiting = WaitStarted(seq=0, at=2, pos=1, key="k")
        cases: list[tuple[str, list[list[Event]], RunStatus]] = [
            ("run_started", [], RunStatus.RUNNING),
            ("wait_started", [[waiting]], RunStatus.WAITING),
            ("wait_resolved", [[waiting], [WaitResolved(seq=0, at=3, key="k")]],
             RunStatus.RUNNING),
            ("wait_expired", [[waiting], [WaitExpired(seq=0, at=3, pos=1, key="k")]],
             RunStatus.RUNNING),
            ("timer_fired", [[waiting], [TimerFired(seq=0, at=3, pos=1)]], RunStatus.RUNNING),
            ("a wait in one batch", [[waiting, WaitResolved(seq=0, at=3, key="k")]],
             RunStatus.RUNNING),
            ("a step while waiting", [[waiting], _steps(0, 1)], RunStatus.WAITING),
        ]
        cases += [(f"run_finished({s})", [[waiting], [RunFinished(seq=0, at=3, status=s)]], s)
                  for s in RunStatus if s.finished]
        with self._store() as (store,):
            for what, batches, want in cases:
                run_id, seq = self._run_id(), 1
                store.append(run_id, [_started()], expected_last_seq=0)
                for batch in batches:
                    numbered = [e.model_copy(update={"seq": seq + 1 + i}) for i, e in
                                enumerate(batch)]
                    store.append(run_id, numbered, expected_last_seq=seq)
                    seq += len(batch)
                info = store.get_run(run_id)
                _check(info is not None and info.status == want,
                       f"after {what}: status {info.status if info else None}, want {want}")
                _check(run_id in [r.run_id for r in store.list_runs(status=want)],
                       f"after {what}: run missing from list_runs(status={want})")

    def check_unknown_run(self) -> None:
        """An unknown run reads as [] at any after_seq, get_run gives None, and list_runs
        does not invent it."""
        with self._store() as (store,):
            store.append(self._run_id(), [_started()], expected_last_seq=0)
            unknown = self._run_id("-never-written")
            for after in (0, 1, 5):
                _check(store.read(unknown, after_seq=after) == [],
                       f"read(unknown, after_seq={after}) was not []")
            _check(store.get_run(unknown) is None, "get_run(unknown) was not None")
            _check(unknown not in [r.run_id for r in store.list_runs()], "list_runs invented it")

    def check_concurrent_appenders(self) -> None:
        """Writers racing on one run (read, append with expected_last_seq, retry on conflict)
        never interleave, lose or duplicate events: the journal is seq 1 … N with every
        writer's batches present once, whole, in that writer's order."""
        with self._store(peers=4) as (store, *handles):

            @self._settings()
            @given(plans=st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=4),
                                  min_size=2, max_size=4))
            def race(plans: list[list[int]]) -> None:
                run_id = self._run_id()
                store.append(run_id, [_started()], expected_last_seq=0)
                start = threading.Barrier(len(plans))
                failures: list[BaseException] = []

                def write(writer: int, handle: Store, sizes: list[int]) -> None:
                    try:
                        start.wait()
                        for batch, size in enumerate(sizes):
                            _append_retrying(handle, run_id, writer, batch, size)
                    except BaseException as exc:  # reported by the main thread
                        failures.append(exc)

                threads = [threading.Thread(target=write, args=(w, handles[w], sizes))
                           for w, sizes in enumerate(plans)]
                for thread in threads:
                    thread.start()
                for thread in threads:  # a hung writer fails the check rather than the suite
                    thread.join(timeout=60)
                _check(not any(t.is_alive() for t in threads), "a writer hung for 60 s")
                if failures:
                    raise failures[0]
                _check_race_outcome(store.read(run_id), plans)

            race()


    # -- leases ---------------------------------------------------------------------------------

    def check_lease_lifecycle(self) -> None:
        """acquire takes a free, expired or own lease and bumps the epoch; another owner's live
        lease raises RunOwned naming it; renew extends only the current lease (else LeaseLost);
        release frees only the current lease; get_run shows owner, epoch and expiry."""
        with self._store() as (store,):
            _raises(UsageError, "acquiring an unknown run", store.acquire,
                    self._run_id("-unknown"), "a", now=0.0, ttl_s=10)
            run_id = self._run_id()
            store.append(run_id, [_started()], expected_last_seq=0)
            _check(_lease_of(store, run_id) == (None, 0, None),
                   f"a new unleased run shows {_lease_of(store, run_id)}")
            a = store.acquire(run_id, "a", now=100.0, ttl_s=10)
            _check(a == Lease(run_id, "a", 1, 110.0), f"first acquire gave {a}")
            _check(_lease_of(store, run_id) == ("a", 1, 110.0),
                   f"after acquire get_run shows {_lease_of(store, run_id)}")
            owned = _raises(RunOwned, "b acquiring a's live lease", store.acquire, run_id, "b",
                            now=109.5, ttl_s=10)
            assert isinstance(owned, RunOwned)
            _check((owned.owner, owned.expires_at, owned.epoch) == ("a", 110.0, 1)
                   and "'a'" in str(owned), f"RunOwned says {owned!r}: {owned}")
            again = store.acquire(run_id, "a", now=105.0, ttl_s=10)
            _check(again == Lease(run_id, "a", 2, 115.0), f"a re-acquiring its run gave {again}")
            _raises(LeaseLost, "renewing a lease its owner re-acquired since", store.renew, a,
                    now=106.0, ttl_s=10)
            renewed = store.renew(again, now=108.0, ttl_s=10)
            _check(renewed == Lease(run_id, "a", 2, 118.0), f"renew gave {renewed}")
            b = store.acquire(run_id, "b", now=118.0, ttl_s=10)  # expired at 118 exactly
            _check(b == Lease(run_id, "b", 3, 128.0), f"takeover after expiry gave {b}")
            lost = _raises(LeaseLost, "renewing a lease taken over", store.renew, renewed,
                           now=119.0, ttl_s=10)
            assert isinstance(lost, LeaseLost)
            _check((lost.holder, lost.holder_epoch) == ("b", 3), f"LeaseLost says {lost!r}")
            _check(store.release(renewed) is False and _lease_of(store, run_id)[0] == "b",
                   "a stale lease released the run")
            _check(store.release(b) is True and _lease_of(store, run_id) == (None, 3, None),
                   f"after release get_run shows {_lease_of(store, run_id)}")
            c = store.acquire(run_id, "c", now=0.0, ttl_s=1)
            _check(c.epoch == 4, f"acquiring a released run gave {c}")
            for bad in ({"now": 1.0, "ttl_s": 0}, {"now": 1.0, "ttl_s": -3}):
                _raises(UsageError, f"acquire with {bad}", store.acquire, run_id, "c", **bad)
            _raises(UsageError, "acquire by an empty owner", store.acquire, run_id, "",
                    now=1.0, ttl_s=1)

    def check_fenced_appends(self) -> None:
        """An append under a lease that is no longer the run's (or with no lease, of anything
        but resolutions to a run that has an owner) raises LeaseLost and stores nothing, at any
        batch size or sync flag, even when its seq is stale too; resolutions from outside and
        the current owner's appends go through."""
        with self._store() as (store,):
            run_id = self._run_id()
            first = Lease(run_id, "a", 1, 50.0)
            store.append(run_id, [_started()], expected_last_seq=0, lease=first)
            _check(_lease_of(store, run_id) == ("a", 1, 50.0),
                   f"a run created under a lease shows {_lease_of(store, run_id)}")
            store.append(run_id, _steps(2, 1), expected_last_seq=1, lease=first)
            store.append(run_id, [WaitResolved(seq=3, at=0.0, key="k", value=1, by="x")],
                         expected_last_seq=2)
            _raises(LeaseLost, "an unfenced step appended to an owned run",
                    store.append, run_id, _steps(4, 1), expected_last_seq=3)
            b = store.acquire(run_id, "b", now=60.0, ttl_s=10)
            before, info = store.read(run_id), store.get_run(run_id)
            for sync in (False, True):
                for size in (1, 3):
                    lost = _raises(LeaseLost, f"a stale lease appending {size} (sync={sync})",
                                   store.append, run_id, _steps(4, size),
                                   expected_last_seq=3, sync=sync, lease=first)
                    assert isinstance(lost, LeaseLost)
                    _check((lost.owner, lost.epoch, lost.holder, lost.holder_epoch)
                           == ("a", 1, "b", 2), f"LeaseLost says {lost!r}")
            _raises(LeaseLost, "a stale lease appending at a stale seq", store.append, run_id,
                    _steps(3, 1), expected_last_seq=2, lease=first)
            _check(store.read(run_id) == before and store.get_run(run_id) == info,
                   "a fenced-off append changed the run")
            store.append(run_id, _steps(4, 2), expected_last_seq=3, lease=b)
            store.append(run_id, [WaitResolved(seq=6, at=0.0, key="j")], expected_last_seq=5)
            store.release(b)
            store.append(run_id, _steps(7, 1), expected_last_seq=6)
            _check([e.seq for e in store.read(run_id)] == list(range(1, 8)),
                   f"journal seqs {[e.seq for e in store.read(run_id)]}")

    def check_lease_interleavings(self) -> None:
        """Any interleaving of acquire / renew / release / fenced appends by several owners,
        outsiders' appends and the passing of time behaves like the reference model: one owner
        per epoch appends, and the journal is seq 1 … N of exactly the appends that succeeded."""
        with self._store() as (store,):

            @self._settings()
            @given(ops=st.lists(_LEASE_OP, min_size=1, max_size=25))
            def interleave(ops: list[tuple[str, Any]]) -> None:
                run_id = self._run_id()
                store.append(run_id, [_started()], expected_last_seq=0)
                _LeaseModel(store, run_id).play(ops)

            interleave()

    def check_concurrent_acquirers(self) -> None:
        """Workers racing to take over one expired run through their own handles: exactly one
        gets the lease, the others RunOwned naming it, and only the winner can append."""
        with self._store(peers=3) as (store, *handles):
            for _round in range(max(2, self.max_examples // 5)):
                _acquire_race(store, handles, self._run_id())


_MAX_ATTEMPTS = 1000


def _append_retrying(store: Store, run_id: str, writer: int, batch: int, size: int) -> None:
    """Append one tagged batch the way a worker does: read, append, retry on a lost race."""
    for _attempt in range(_MAX_ATTEMPTS):
        last = store.read(run_id)[-1].seq
        events = [StepRecorded(seq=last + 1 + k, at=float(last), pos=last + k, call="step",
                               name=f"w{writer}", result=[writer, batch, k]) for k in range(size)]
        try:
            store.append(run_id, events, expected_last_seq=last)
            return
        except ConcurrencyConflict:
            continue
    raise AssertionError(f"writer {writer} lost {_MAX_ATTEMPTS} races in a row")


def _check_race_outcome(journal: list[Event], plans: list[list[int]]) -> None:
    total = 1 + sum(sum(sizes) for sizes in plans)
    seqs = [event.seq for event in journal]
    _check(seqs == list(range(1, total + 1)), f"journal seqs {seqs}, want 1 … {total}")
    tags = [tuple(e.result) for e in journal[1:] if isinstance(e, StepRecorded)]
    want = [(w, b, k) for w, sizes in enumerate(plans) for b, size in enumerate(sizes)
            for k in range(size)]
    _check(sorted(tags) == want, f"events (writer, batch, k) {tags}, want each of {want} once")
    # Whole batches, in order: each batch's k = 0 … size-1 sit side by side, and a writer's
    # batches appear in the order it wrote them.
    for w, sizes in enumerate(plans):
        at = [tags.index((w, b, 0)) for b in range(len(sizes))]
        _check(at == sorted(at), f"writer {w}'s batches out of order at positions {at}")
        for b, size in enumerate(sizes):
            run = tags[at[b]:at[b] + size]
            _check(run == [(w, b, k) for k in range(size)],
                   f"writer {w} batch {b} interleaved with others: {run}")


def _lease_of(store: Store, run_id: str) -> tuple[str | None, int, float | None]:
    info = store.get_run(run_id)
    assert info is not None
    return (info.owner, info.epoch, info.lease_expires_at)


_OWNERS = st.sampled_from(["a", "b", "c"])
_LEASE_OP: st.SearchStrategy[tuple[str, Any]] = st.one_of(
    st.tuples(st.sampled_from(["acquire", "renew", "release", "append"]), _OWNERS),
    st.tuples(st.sampled_from(["resolve", "outsider"]), st.none()),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 4.0, 10.0])),
)


class _LeaseModel:
    """The lease contract as a reference model, played against a store step by step."""

    TTL_S = 10.0

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.now = 100.0
        self.owner: str | None = None
        self.epoch = 0
        self.expires_at: float | None = None
        self.held: dict[str, Lease] = {}
        self.journal: list[Event] = store.read(run_id)
        self.appended_by: dict[int, set[str]] = {}

    def play(self, ops: list[tuple[str, Any]]) -> None:
        for op, arg in ops:
            getattr(self, f"_{op}")(arg)
            want = (self.owner, self.epoch, self.expires_at)
            _check(_lease_of(self.store, self.run_id) == want,
                   f"after {op}({arg!r}): get_run shows {_lease_of(self.store, self.run_id)}, "
                   f"the model {want}")
        _check(self.store.read(self.run_id) == self.journal,
               f"journal {[e.seq for e in self.store.read(self.run_id)]} differs from the "
               f"successful appends {[e.seq for e in self.journal]}")
        several = {e: o for e, o in self.appended_by.items() if len(o) > 1}
        _check(not several, f"epochs with appends by several owners: {several}")

    def _current(self, owner: str) -> bool:
        lease = self.held.get(owner)
        return lease is not None and (self.owner, self.epoch) == (lease.owner, lease.epoch)

    def _tick(self, seconds: float) -> None:
        self.now += seconds

    def _acquire(self, owner: str) -> None:
        free = (self.owner in (None, owner) or self.expires_at is None
                or self.expires_at <= self.now)
        if not free:
            _raises(RunOwned, f"{owner} acquiring a live lease of {self.owner}",
                    self.store.acquire, self.run_id, owner, now=self.now, ttl_s=self.TTL_S)
            return
        lease = self.store.acquire(self.run_id, owner, now=self.now, ttl_s=self.TTL_S)
        self.owner, self.epoch, self.expires_at = owner, self.epoch + 1, self.now + self.TTL_S
        _check(lease == Lease(self.run_id, owner, self.epoch, self.expires_at),
               f"{owner} acquired {lease}")
        self.held[owner] = lease

    def _renew(self, owner: str) -> None:
        lease = self.held.get(owner)
        if lease is None:
            return
        if not self._current(owner):
            _raises(LeaseLost, f"{owner} renewing a stale lease", self.store.renew, lease,
                    now=self.now, ttl_s=self.TTL_S)
            return
        self.held[owner] = self.store.renew(lease, now=self.now, ttl_s=self.TTL_S)
        self.expires_at = self.now + self.TTL_S

    def _release(self, owner: str) -> None:
        lease = self.held.get(owner)
        if lease is None:
            return
        current = self._current(owner)
        _check(self.store.release(lease) is current, f"{owner} releasing: want {current}")
        if current:
            self.owner = self.expires_at = None

    def _append(self, owner: str) -> None:
        lease = self.held.get(owner)
        if lease is None:
            return
        event = StepRecorded(seq=len(self.journal) + 1, at=self.now, pos=len(self.journal),
                             call="step", name=owner, result=lease.epoch)
        if not self._current(owner):
            _raises(LeaseLost, f"{owner} appending under a stale lease", self.store.append,
                    self.run_id, [event], expected_last_seq=len(self.journal), lease=lease)
            return
        self.store.append(self.run_id, [event], expected_last_seq=len(self.journal),
                          lease=lease)
        self.journal.append(event)
        self.appended_by.setdefault(lease.epoch, set()).add(owner)

    def _resolve(self, _: None) -> None:
        event = WaitResolved(seq=len(self.journal) + 1, at=self.now, key=f"k{len(self.journal)}")
        self.store.append(self.run_id, [event], expected_last_seq=len(self.journal))
        self.journal.append(event)

    def _outsider(self, _: None) -> None:
        event = StepRecorded(seq=len(self.journal) + 1, at=self.now, pos=len(self.journal),
                             call="step", name="outsider")
        if self.owner is not None:
            _raises(LeaseLost, "an outsider appending a step to an owned run",
                    self.store.append, self.run_id, [event],
                    expected_last_seq=len(self.journal))
            return
        self.store.append(self.run_id, [event], expected_last_seq=len(self.journal))
        self.journal.append(event)


def _acquire_race(store: Store, handles: list[Store], run_id: str) -> None:
    """One round of check_concurrent_acquirers on a fresh run."""
    store.append(run_id, [_started()], expected_last_seq=0,
                 lease=Lease(run_id, "dead", 1, 10.0))
    start = threading.Barrier(len(handles))
    got: dict[int, Lease | BaseException] = {}

    def take(n: int, handle: Store) -> None:
        start.wait()
        try:
            got[n] = handle.acquire(run_id, f"w{n}", now=20.0, ttl_s=30)
        except BaseException as exc:  # reported by the main thread
            got[n] = exc

    threads = [threading.Thread(target=take, args=(n, h))
               for n, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [v for v in got.values() if isinstance(v, Lease)]
    losers = [v for v in got.values() if isinstance(v, RunOwned)]
    _check(len(winners) == 1 and len(losers) == len(handles) - 1,
           f"racing acquires gave {got}")
    winner = winners[0]
    _check(winner.epoch == 2 and all(e.owner == winner.owner for e in losers),
           f"winner {winner}, losers told {[e.owner for e in losers]}")
    for n, handle in enumerate(handles):
        if f"w{n}" == winner.owner:
            continue
        _raises(LeaseLost, f"w{n} appending under the dead worker's lease",
                handle.append, run_id, _steps(2, 1), expected_last_seq=1,
                lease=Lease(run_id, "dead", 1, 10.0))
    store.append(run_id, _steps(2, 1), expected_last_seq=1, lease=winner)

