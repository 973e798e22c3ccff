"""Durable memory: facts with provenance on every store, TTLs, trust, races, use in runs."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import (
    ConcurrencyConflict,
    Crash,
    RunContext,
    RunStatus,
    Runtime,
    UsageError,
    VirtualClock,
    Workflow,
    workflow,
)
from tether.events import Event, MemoryWritten, RunStarted
from tether.memory import (
    MEMORY_WORKFLOW,
    Fact,
    Memory,
    derived_trust,
    recall_in_run,
    remember_in_run,
)
from tether.runtime.provenance import Trust
from tether.store.base import Store


def written(store: Store, namespace: str = "default") -> list[MemoryWritten]:
    """The memory_written events of a namespace's journal."""
    return [e for e in store.read(f"memory:{namespace}") if isinstance(e, MemoryWritten)]


class RacingStore:
    """A store handle that lets another writer append first (``interlude``) before its own
    appends: once, or before every append with ``always``; counts the conflicts it saw."""

    def __init__(self, inner: Store, interlude: Callable[[], object], *, always: bool = False):
        self.inner, self.interlude, self.always = inner, interlude, always
        self.conflicts = 0
        self._pending = True

    def append(self, run_id: str, events: Sequence[Event], *, expected_last_seq: int,
               sync: bool = False) -> None:
        if self._pending:
            self._pending = self.always
            self.interlude()
        try:
            self.inner.append(run_id, events, expected_last_seq=expected_last_seq, sync=sync)
        except ConcurrencyConflict:
            self.conflicts += 1
            raise

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        return self.inner.read(run_id, after_seq=after_seq)

    def get_run(self, run_id: str) -> Any:
        return self.inner.get_run(run_id)

    def list_runs(self, **kwargs: Any) -> Any:
        return self.inner.list_runs(**kwargs)

    def close(self) -> None:
        self.inner.close()


# -- facts and provenance --------------------------------------------------------------------


def test_round_trip_keeps_full_provenance(store_factory) -> None:
    """recall returns the value with source, trust, run, position, write time and expiry."""
    clock = VirtualClock(start=1000.0)
    memory = Memory(store_factory(), clock=clock)
    fact = memory.remember("customer:42", "tier", {"level": "gold", "since": 2021},
                           source="crm", trust="system", run_id="run_1", position=3, ttl_s=60)
    assert fact == Fact("customer:42", "tier", {"level": "gold", "since": 2021}, "crm",
                        Trust.SYSTEM, "run_1", 3, 1000.0, 1060.0)
    assert memory.recall("customer:42") == [fact]
    assert memory.recall("customer:42", "tier") == [fact]
    assert memory.recall("customer:42", "other") == [] and memory.recall("nobody") == []
    assert memory.subjects() == ["customer:42"]
    assert Fact.from_dict(fact.to_dict()) == fact


def test_latest_value_wins_and_recall_is_sorted_by_key(store_factory) -> None:
    """A second write to a key replaces the first; facts come back ordered by key."""
    clock = VirtualClock()
    memory = Memory(store_factory(), clock=clock)
    memory.remember("s", "b", 1, source="user", trust="user")
    memory.remember("s", "a", "first", source="user", trust="user")
    clock.advance(5)
    memory.remember("s", "a", "second", source="kb:faq", trust="retrieved")
    facts = memory.recall("s")
    assert [(f.key, f.value, f.source) for f in facts] == [("a", "second", "kb:faq"),
                                                          ("b", 1, "user")]
    assert facts[0].written_at == clock.now()


def test_ttl_expires_facts_on_the_clock(store_factory) -> None:
    """A fact with ttl_s is recalled until the clock reaches its expiry, then it is gone."""
    clock = VirtualClock()
    memory = Memory(store_factory(), clock=clock)
    memory.remember("s", "short", 1, source="user", trust="user", ttl_s=30)
    memory.remember("s", "long", 2, source="user", trust="user")
    clock.advance(29.5)
    assert [f.key for f in memory.recall("s")] == ["long", "short"]
    clock.advance(0.5)
    assert [f.key for f in memory.recall("s")] == ["long"]
    memory.remember("t", "gone", 3, source="user", trust="user", ttl_s=1)
    clock.advance(1)
    assert memory.subjects() == ["s"]


def test_forget_one_key_or_a_whole_subject(store_factory) -> None:
    """forget(subject, key) drops one fact, forget(subject) all of them; counts what it dropped."""
    memory = Memory(store_factory(), clock=VirtualClock())
    for key in ("a", "b", "c"):
        memory.remember("s", key, key, source="user", trust="user")
    memory.remember("t", "a", 1, source="user", trust="user")
    assert memory.forget("s", "b", reason="user asked") == 1
    assert [f.key for f in memory.recall("s")] == ["a", "c"]
    assert memory.forget("s") == 2
    assert memory.forget("s", reason="again") == 0
    assert memory.recall("s") == [] and memory.subjects() == ["t"]
    memory.remember("s", "a", "back", source="user", trust="user")
    assert [f.value for f in memory.recall("s")] == ["back"]


def test_untrusted_sources_stay_untrusted(store_factory) -> None:
    """A fact derived from a retrieved document is not returned when user trust is required."""
    memory = Memory(store_factory(), clock=VirtualClock())
    trust = derived_trust("user", "retrieved")  # the user's question, answered from a KB page
    assert trust is Trust.RETRIEVED
    memory.remember("order:7", "refund_window_days", 90, source="kb:refund-policy", trust=trust)
    memory.remember("order:7", "email", "a@b.c", source="user", trust="user")
    assert [f.key for f in memory.recall("order:7", minimum_trust="user")] == ["email"]
    assert [f.key for f in memory.recall("order:7", minimum_trust=Trust.RETRIEVED)] == [
        "email", "refund_window_days"]
    fact = memory.recall("order:7", "refund_window_days")[0]
    assert not fact.trusted(Trust.USER) and fact.trusted("external")
    sourced = fact.sourced()
    assert sourced.trust is Trust.RETRIEVED and "kb:refund-policy" in sourced.source


def test_derived_trust_is_the_lowest() -> None:
    """derived_trust picks the least trusted input and needs at least one."""
    assert derived_trust(Trust.SYSTEM) is Trust.SYSTEM
    assert derived_trust("system", "agent", "user") is Trust.AGENT
    assert derived_trust("external", "system") is Trust.EXTERNAL
    with pytest.raises(UsageError, match="at least one"):
        derived_trust()


def test_bad_input_is_a_usage_error(store_factory) -> None:
    """Empty names, non-JSON values, unknown trust and bad TTLs are refused before any write."""
    store = store_factory()
    memory = Memory(store, clock=VirtualClock())
    ok: dict[str, Any] = {"source": "user", "trust": "user"}
    with pytest.raises(UsageError, match="subject must be a non-empty string"):
        memory.remember("", "k", 1, **ok)
    with pytest.raises(UsageError, match="key must be a non-empty string"):
        memory.remember("s", "", 1, **ok)
    with pytest.raises(UsageError, match="source must be"):
        memory.remember("s", "k", 1, source="", trust="user")
    with pytest.raises(UsageError, match="'s'/'k': a object value cannot be stored as JSON"):
        memory.remember("s", "k", object(), **ok)
    with pytest.raises(UsageError, match="a float value cannot be stored as JSON"):
        memory.remember("s", "k", math.nan, **ok)
    with pytest.raises(UsageError, match="unknown trust level 'very'"):
        memory.remember("s", "k", 1, source="x", trust="very")
    for ttl in (0, -1, math.inf):
        with pytest.raises(UsageError, match="ttl_s must be a positive"):
            memory.remember("s", "k", 1, ttl_s=ttl, **ok)
    with pytest.raises(UsageError, match="run_id and position together"):
        memory.remember("s", "k", 1, run_id="r", **ok)
    with pytest.raises(UsageError, match="subject must be"):
        memory.recall("")
    with pytest.raises(UsageError, match="key must be"):
        memory.forget("s", "")
    with pytest.raises(UsageError, match="namespace"):
        Memory(store, clock=VirtualClock(), namespace="")
    assert store.read("memory:default") == []


def test_a_run_id_taken_by_a_workflow_is_not_a_namespace(store_factory) -> None:
    """A 'memory:' run id holding some other workflow's journal is refused, not misread."""
    store = store_factory()

    async def squat(ctx: RunContext) -> int:
        return 1

    asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(squat, run_id="memory:x"))
    with pytest.raises(UsageError, match="not a memory namespace"):
        Memory(store, clock=VirtualClock(), namespace="x").recall("s")


# -- a shared store: processes, races, recovery ----------------------------------------------


def test_two_memories_see_each_others_writes(store_factory) -> None:
    """Two Memory objects on separate handles (two processes) each see the other's changes."""
    store = store_factory()
    clock = VirtualClock()
    one, two = Memory(store, clock=clock), Memory(store_factory.peer(store), clock=clock)
    one.remember("s", "a", 1, source="user", trust="user")
    assert [f.value for f in two.recall("s")] == [1]
    two.remember("s", "a", 2, source="agent", trust="agent")
    two.remember("t", "b", 3, source="agent", trust="agent")
    assert [f.value for f in one.recall("s")] == [2] and one.subjects() == ["s", "t"]
    one.forget("t")
    assert two.subjects() == ["s"]
    started = [e for e in store.read("memory:default") if isinstance(e, RunStarted)]
    assert len(started) == 1 and started[0].input == {"namespace": "default"}


def test_a_lost_append_race_is_retried(store_factory) -> None:
    """When another writer appends between catch-up and append, the write retries and wins."""
    store = store_factory()
    clock = VirtualClock()
    other = Memory(store_factory.peer(store), clock=clock)
    racing = RacingStore(store, lambda: other.remember("s", "b", "theirs", source="user",
                                                       trust="user"))
    mine = Memory(racing, clock=clock)
    mine.remember("s", "a", "mine", source="user", trust="user")
    assert racing.conflicts == 1
    for memory in (mine, other):
        assert [(f.key, f.value) for f in memory.recall("s")] == [("a", "mine"), ("b", "theirs")]
    assert [e.seq for e in store.read("memory:default")] == [1, 2, 3, 4]


def test_endless_conflicts_raise_after_a_bound(store_factory) -> None:
    """A write that loses every race gives up after MAX_ATTEMPTS with a ConcurrencyConflict."""
    store = store_factory()
    clock = VirtualClock()
    other = Memory(store_factory.peer(store), clock=clock)
    racing = RacingStore(store, lambda: other.remember("s", "b", 1, source="user",
                                                       trust="user"), always=True)
    with pytest.raises(ConcurrencyConflict, match="20 appends in a row lost the race"):
        Memory(racing, clock=clock).remember("s", "a", 1, source="user", trust="user")
    assert racing.conflicts == 20 and len(written(store)) == 20


def test_concurrent_writers_lose_nothing(store_factory) -> None:
    """Two threads writing through separate handles at once: every fact lands exactly once."""
    store = store_factory()
    clock = VirtualClock()
    handles = [store, store_factory.peer(store)]
    errors: list[BaseException] = []

    def write(w: int) -> None:
        memory = Memory(handles[w], clock=clock)
        try:
            for i in range(15):
                memory.remember(f"w{w}", f"k{i}", i, source="agent", trust="agent")
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = Memory(store, clock=clock)
    assert {s: len(fresh.recall(s)) for s in fresh.subjects()} == {"w0": 15, "w1": 15}
    assert len(written(store)) == 30


def test_namespaces_are_finished_runs_recovery_ignores(store_factory) -> None:
    """A namespace is a completed tether.memory run: never listed as running, never recovered."""
    store = store_factory()
    Memory(store, clock=VirtualClock()).remember("s", "k", 1, source="user", trust="user")
    info = store.get_run("memory:default")
    assert info is not None
    assert (info.workflow, info.status) == (MEMORY_WORKFLOW, RunStatus.COMPLETED)
    assert store.list_runs(status=[RunStatus.RUNNING, RunStatus.WAITING]) == []
    assert asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).recover()) == []


# -- inside a run ----------------------------------------------------------------------------


def noting(memory: Memory) -> Workflow:
    """A workflow that remembers a fact durably, then waits for 'go'."""

    @workflow(name="note")
    async def note(ctx: RunContext) -> dict[str, Any]:
        await ctx.step("before", lambda: 0)
        fact = await remember_in_run(ctx, memory, "order:7", "refunded", True,
                                     source="tool:refund", trust="system", ttl_s=600)
        await ctx.wait_for("go")
        return fact.to_dict()

    return note


def test_remember_in_run_writes_once_across_a_replay(store_factory) -> None:
    """Resumed by a fresh runtime, the run replays its remember step without writing again."""
    store = store_factory()
    clock = VirtualClock()
    first = asyncio.run(Runtime(store, clock=clock, seed=1).start(
        noting(Memory(store, clock=clock)), run_id="r1"))
    assert first.status is RunStatus.WAITING
    peer = store_factory.peer(store)
    fresh = Runtime(peer, clock=clock, workflows=[noting(Memory(peer, clock=clock))])
    fresh.resolve("r1", "go")
    done = asyncio.run(fresh.resume("r1"))
    assert done.status is RunStatus.COMPLETED
    assert (done.result["run_id"], done.result["position"]) == ("r1", 1)
    assert len(written(store)) == 1
    assert Memory(store, clock=clock).recall("order:7")[0].to_dict() == done.result


class CrashAfterWrite(Memory):
    """A memory whose process dies right after its write, before the step is journaled."""

    def remember(self, *args: Any, **kwargs: Any) -> Fact:
        super().remember(*args, **kwargs)
        raise Crash()


def test_a_crash_between_write_and_journal_does_not_write_twice(store_factory) -> None:
    """The re-executed step finds its own write by run and position and returns it."""
    store = store_factory()
    clock = VirtualClock()
    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1).start(
            noting(CrashAfterWrite(store, clock=clock)), run_id="r1"))
    assert len(written(store)) == 1
    peer = store_factory.peer(store)
    fresh = Runtime(peer, clock=clock, workflows=[noting(Memory(peer, clock=clock))])
    assert asyncio.run(fresh.resume("r1")).status is RunStatus.WAITING
    fresh.resolve("r1", "go")
    done = asyncio.run(fresh.resume("r1"))
    assert done.result["position"] == 1 and len(written(store)) == 1


def test_a_step_writes_one_fact_only(store_factory) -> None:
    """Reusing a run's position for another subject/key is a usage error, not a silent no-op."""
    memory = Memory(store_factory(), clock=VirtualClock())
    memory.remember("s", "a", 1, source="user", trust="user", run_id="r", position=0)
    again = memory.remember("s", "a", 2, source="user", trust="user", run_id="r", position=0)
    assert again.value == 1
    with pytest.raises(UsageError, match="one step writes one fact"):
        memory.remember("s", "b", 1, source="user", trust="user", run_id="r", position=0)


def test_recall_in_run_replays_the_facts_it_first_saw(store_factory) -> None:
    """A replayed recall returns the journaled facts even though memory changed meanwhile."""
    store = store_factory()
    clock = VirtualClock()

    def recalling(memory: Memory) -> Workflow:
        @workflow(name="recall")
        async def recall(ctx: RunContext) -> list[Any]:
            facts = await recall_in_run(ctx, memory, "s", minimum_trust="user")
            await ctx.wait_for("go")
            return [(f.value, f.trust.value, f.source) for f in facts]

        return recall

    memory = Memory(store, clock=clock)
    memory.remember("s", "k", "old", source="user", trust="user")
    memory.remember("s", "doc", "text", source="kb:a", trust="retrieved")
    asyncio.run(Runtime(store, clock=clock, seed=1).start(recalling(memory), run_id="r1"))
    memory.remember("s", "k", "new", source="user", trust="user")
    fresh = Runtime(store, clock=clock, workflows=[recalling(memory)])
    fresh.resolve("r1", "go")
    assert asyncio.run(fresh.resume("r1")).result == [["old", "user", "user"]]
    assert [f.value for f in memory.recall("s", "k")] == ["new"]


# -- the fold matches a dict ---------------------------------------------------------------

_SUBJECTS = st.sampled_from(["s1", "s2", "s3"])
_KEYS = st.sampled_from(["a", "b", "c"])
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=5,
)
_OPS = st.lists(st.one_of(
    st.tuples(st.just("remember"), _SUBJECTS, _KEYS, _VALUES, st.none() | st.integers(1, 90)),
    st.tuples(st.just("forget"), _SUBJECTS, st.none() | _KEYS),
    st.tuples(st.just("advance"), st.integers(1, 60)),
), max_size=30)
_NAMESPACES = itertools.count(1)


def test_any_operations_fold_like_a_dict(store_factory) -> None:
    """Any sequence of remember/forget/time passing reads back as a plain dict model says,
    from the writer and from a fresh Memory folding the journal from scratch."""
    store = store_factory()

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops=_OPS)
    def fold(ops: list[tuple[Any, ...]]) -> None:
        clock = VirtualClock()
        namespace = f"ns{next(_NAMESPACES)}"
        memory = Memory(store, clock=clock, namespace=namespace)
        model: dict[tuple[str, str], tuple[Any, float]] = {}
        for op in ops:
            if op[0] == "remember":
                _, subject, key, value, ttl = op
                memory.remember(subject, key, value, source="user", trust="user", ttl_s=ttl)
                model[subject, key] = (value, math.inf if ttl is None else clock.now() + ttl)
            elif op[0] == "forget":
                _, subject, key = op
                memory.forget(subject, key)
                model = {(s, k): v for (s, k), v in model.items()
                         if s != subject or key not in (None, k)}
            else:
                clock.advance(op[1])
        live = {sk: v for sk, (v, expires_at) in model.items() if expires_at > clock.now()}
        for reader in (memory, Memory(store, clock=clock, namespace=namespace)):
            state = {(f.subject, f.key): f.value for s in reader.subjects()
                     for f in reader.recall(s)}
            assert state == live
            assert reader.subjects() == sorted({s for s, _ in live})

    fold()
