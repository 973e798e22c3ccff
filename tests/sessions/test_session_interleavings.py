"""Any interleaving of turns, client continues and crashes on one session, by several workers
on one store, yields the history of the serial run: nothing lost, repeated or interleaved."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from pydantic import BaseModel

from tether import Crash, VirtualClock
from tether.agent.agent import Agent
from tether.errors import (
    ClientResultConflict,
    ClientResultRefused,
    RunOwned,
    SessionConflict,
    UnknownExecution,
)
from tether.events import (
    Event,
    ModelCalled,
    TurnFinished,
    TurnStarted,
    WaitResolved,
    WaitStarted,
)
from tether.models.base import ModelRequest, ModelResponse, ToolCall
from tether.models.scripted import ScriptedModel, call, reply
from tether.runtime.client_tools import client_tool
from tether.runtime.runtime import Runtime
from tether.runtime.tools import ToolContext, tool
from tether.sessions import Sessions
from tether.store.base import Store
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

SID = "s"
LEASE_TTL_S = 30.0

#: What a worker may be told when another worker got there first (documented, not a defect).
RACE_ERRORS = (SessionConflict, RunOwned)


class Question(BaseModel):
    question: str


class Note(BaseModel):
    n: int
    note: str


@dataclass
class Ledger:
    """The service behind the server write: one entry per idempotency key, and every call."""

    applied: dict[str, dict[str, str]] = field(default_factory=dict)
    invoked: Counter[str] = field(default_factory=Counter)
    model_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def shop_agent(ledger: Ledger) -> Agent:
    """An agent whose turn asks the client to confirm when the text ends in "?", then records a
    note with a server write (reconcilable: the ledger is looked up after a crash), then answers
    with the write's result and how many messages it was shown."""

    async def lookup(ctx: ToolContext, key: str) -> Any:
        return ledger.applied.get(key)

    @tool(name="record", args=Note, effect="reconcilable", key=lambda a: f"record:{a.n}",
          reconcile=lookup, result=dict[str, str])
    async def record(ctx: ToolContext, args: Note) -> dict[str, str]:
        assert ctx.idempotency_key is not None
        with ledger.lock:
            ledger.invoked[ctx.idempotency_key] += 1
            ledger.applied.setdefault(ctx.idempotency_key, {"recorded": args.note})
            return ledger.applied[ctx.idempotency_key]

    confirm = client_tool("confirm", args=Question, result=str, description="Ask the user.")

    def script(request: ModelRequest) -> ModelResponse:
        with ledger.lock:
            ledger.model_calls += 1
        messages = request.messages
        users = [m for m in messages if m.role == "user"]
        n, text, last = len(users), users[-1].content, messages[-1]
        if last.role == "user":
            if text.endswith("??"):  # two questions in one response: continued one by one
                return ModelResponse(finish_reason="tool_calls", tool_calls=tuple(
                    ToolCall(id=f"c{n}{part}", name="confirm",
                             arguments=json.dumps({"question": f"{text} {part}"}))
                    for part in "ab"))
            if text.endswith("?"):
                return call("confirm", {"question": text}, call_id=f"c{n}")
            return call("record", {"n": n, "note": text}, call_id=f"r{n}")
        if (last.tool_call_id or "").startswith(f"c{n}"):
            answers = [m.content for m in messages[len(messages) - text.count("?"):]]
            return call("record", {"n": n, "note": f"{text}={'/'.join(answers)}"},
                        call_id=f"r{n}")
        return reply(f"{last.content} after {len(messages)} messages")

    return Agent(name="shop", model=ScriptedModel(script), tools=[record, confirm])


# -- a conversation and the workers that hold it --------------------------------------------


@dataclass(frozen=True)
class Said:
    """One user message (its turn asks the client once when the text ends in "?", twice in
    one response for "??") and what the client answers when asked."""

    text: str
    answer: str


class FaultyStore:
    """A worker's store handle that may crash at its k-th append (before it is stored, or once
    it is), and may let another worker run a whole operation right before its j-th append (in a
    thread, while this one waits: a race at that exact point)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.appends = 0
        self.crash: tuple[int, bool] | None = None
        self.race: tuple[int, Callable[[], None]] | None = None

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        self.appends += 1
        if self.race is not None and self.race[0] == self.appends:
            other, self.race = self.race[1], None
            thread = threading.Thread(target=other)
            thread.start()
            thread.join(timeout=60)
            assert not thread.is_alive(), "a racing operation hung"
        if self.crash is not None and self.crash == (self.appends, False):
            raise Crash(f"crash before append {self.appends}")
        self.inner.append(run_id, events, **kwargs)
        if self.crash is not None and self.crash == (self.appends, True):
            raise Crash(f"crash after append {self.appends}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class World:
    """``workers`` handles (separate Runtime objects, different owners, one store each opened
    on the same storage) driving one session through ``conversation``."""

    def __init__(self, open_store: Callable[[], Store], agent: Agent,
                 conversation: Sequence[Said], workers: int) -> None:
        self.open_store, self.agent, self.conversation = open_store, agent, conversation
        self.clock = VirtualClock()
        self.stores = [open_store() for _ in range(workers)]
        self.handles = [self._handle(i) for i in range(workers)]
        self.unexpected: list[BaseException] = []
        #: What happened, for hypothesis' statistics (events are recorded from the test's
        #: thread only, so racing operations note them here).
        self.seen: list[str] = []

    def _handle(self, index: int) -> tuple[FaultyStore, Sessions]:
        store = FaultyStore(self.stores[index])
        runtime = Runtime(store, clock=self.clock, seed=7, owner=f"worker-{index}",
                          lease_ttl_s=LEASE_TTL_S)
        return store, Sessions(runtime, agents=[self.agent])

    def sessions(self, index: int) -> Sessions:
        return self.handles[index][1]

    # -- operations (each as a client or a worker would make it) ---------------------------

    def perform(self, op: tuple[Any, ...]) -> None:
        """Run ``op``; a crash replaces the worker (same owner: it takes its runs back)."""
        kind, index = op[0], op[1]
        try:
            if kind == "turn":
                self._turn(index)
            elif kind == "resume":
                asyncio.run(self.sessions(index).resume(SID))
            elif kind == "continue":
                self._continue(index, op[2])
        except Crash:
            self.seen.append("a worker crashed")
            self.handles[index] = self._handle(index)
        except RACE_ERRORS as exc:
            self.seen.append(f"a worker was told {type(exc).__name__}")
        except BaseException as exc:  # collected, then reported
            self.unexpected.append(exc)

    def arm(self, fault: tuple[Any, ...]) -> tuple[Any, ...]:
        """Arm ``fault`` on the worker of the operation it carries, and return that operation:
        ``("crash", k, after, op)`` kills the worker at its k-th append from now (before or
        after it is stored); ``("race", k, op, other)`` runs ``other`` (another worker's
        operation, or the same worker's in a second task) right before its k-th append."""
        if fault[0] == "crash":
            _, k, after, op = fault
            store = self.handles[op[1]][0]
            store.crash = (store.appends + k, after)
        else:
            _, k, op, other = fault
            store = self.handles[op[1]][0]
            store.race = (store.appends + k, lambda: self._race(other))
        return op  # type: ignore[no-any-return]

    def _race(self, op: tuple[Any, ...]) -> None:
        self.seen.append("a race ran")
        self.perform(op)

    def _turn(self, index: int) -> None:
        sessions = self.sessions(index)
        turns = sessions.session(SID).turns
        if len(turns) < len(self.conversation):
            asyncio.run(sessions.turn(SID, self.conversation[len(turns)].text))
        else:
            asyncio.run(sessions.resume(SID))

    def _continue(self, index: int, how: str) -> None:
        sessions = self.sessions(index)
        runtime = sessions.runtime
        turns = sessions.session(SID).turns
        started = [t for t in turns if runtime.store.get_run(t.run_id) is not None]
        if how in ("answer", "answer-one"):
            pending = [t for t in started if t.status is None]
            calls = runtime.pending_client_calls(pending[0].run_id) if pending else []
            if calls:
                results = {c.call_id: self.reply_to(pending[0].number, c.call_id)
                           for c in calls[:1 if how == "answer-one" else None]}
                asyncio.run(runtime.continue_execution(pending[0].run_id, results))
            return
        if how == "unrequested":
            run_id = started[-1].run_id if started else f"session:{SID}:turn:9"
            expected: type[Exception] = ClientResultRefused if started else UnknownExecution
            self._refused(expected, runtime, run_id, {"zz": "yes"})
            return
        answered = [(t.run_id, call_id, value) for t in started
                    for call_id, value in answers_in(runtime.store.read(t.run_id))]
        if answered:
            run_id, call_id, value = answered[-1]
            if how == "repeat":
                asyncio.run(runtime.continue_execution(run_id, {call_id: value}))
            else:
                self._refused(ClientResultConflict, runtime, run_id, {call_id: f"{value}!"})

    def reply_to(self, number: int, call_id: str) -> str:
        """What the client answers to call ``call_id`` of turn ``number``."""
        answer = self.conversation[number - 1].answer
        return answer.upper() if call_id.endswith("b") else answer

    def _refused(self, expected: type[Exception], runtime: Runtime, run_id: str,
                 results: dict[str, Any]) -> None:
        try:
            asyncio.run(runtime.continue_execution(run_id, results))
        except expected:
            return
        raise AssertionError(f"continue {results} of {run_id} was not refused with "
                             f"{expected.__name__}")

    # -- faults off: any worker finishes the conversation ----------------------------------

    def converge(self) -> list[dict[str, Any]]:
        """A fresh worker answers what is asked and sends what is not sent yet, until every
        message has its finished turn; returns the history."""
        _, sessions = self._fresh("closer")
        for _ in range(4 * len(self.conversation) + 4):
            session = sessions.session(SID)
            pending = [t for t in session.turns if t.status is None]
            try:
                if pending and sessions.runtime.store.get_run(pending[0].run_id) is not None \
                        and sessions.runtime.pending_client_calls(pending[0].run_id):
                    self.answer(sessions, pending[0].number)
                elif pending:
                    asyncio.run(sessions.resume(SID))
                elif len(session.turns) < len(self.conversation):
                    asyncio.run(sessions.turn(SID, self.conversation[len(session.turns)].text))
                else:
                    return [m.model_dump(mode="json") for m in session.history()]
            except RunOwned:
                self.clock.advance(LEASE_TTL_S + 1)  # a dead worker's lease runs out
        raise AssertionError(f"the conversation did not converge: {sessions.session(SID).turns}")

    def answer(self, sessions: Sessions, number: int) -> None:
        """Answer what turn ``number`` asks the client, if it asks anything."""
        runtime = sessions.runtime
        run_id = f"session:{SID}:turn:{number}"
        calls = runtime.pending_client_calls(run_id)
        if calls:
            asyncio.run(runtime.continue_execution(
                run_id, {c.call_id: self.reply_to(number, c.call_id) for c in calls}))

    def _fresh(self, owner: str) -> tuple[Store, Sessions]:
        store = self.open_store()
        self.stores.append(store)
        runtime = Runtime(store, clock=self.clock, seed=7, owner=owner, lease_ttl_s=LEASE_TTL_S)
        return store, Sessions(runtime, agents=[self.agent])

    def close(self) -> None:
        for store in self.stores:
            store.close()


def answers_in(events: Sequence[Event]) -> list[tuple[str, Any]]:
    """The (call id, value) of every client call answered in a run's journal."""
    asked = {e.key: str(e.data.get("call_id")) for e in events if isinstance(e, WaitStarted)}
    return [(asked[e.key], e.value) for e in events
            if isinstance(e, WaitResolved) and e.key in asked]


def serial(conversation: Sequence[Said]) -> tuple[list[dict[str, Any]], Ledger, Store]:
    """One worker, no faults: each message's turn, its client call answered, in order."""
    ledger = Ledger()
    store = MemoryStore()
    world = World(lambda: store, shop_agent(ledger), conversation, 1)
    sessions = world.sessions(0)
    sessions.create(SID, agent="shop")
    for number, message in enumerate(conversation, 1):
        asyncio.run(sessions.turn(SID, message.text))
        world.answer(sessions, number)
        asyncio.run(sessions.resume(SID))
    history = [m.model_dump(mode="json") for m in sessions.session(SID).history()]
    return history, ledger, store


# -- strategies ----------------------------------------------------------------------------

MESSAGES = st.builds(
    Said,
    text=st.tuples(st.sampled_from(["refund", "status", "hello"]),
                   st.sampled_from(["", "?", "??"])).map("".join),
    answer=st.sampled_from(["yes", "no", "later"]),
)


@st.composite
def plans(draw: st.DrawFn, max_messages: int = 3,
          max_ops: int = 14) -> tuple[list[Said], int, list[tuple[Any, ...]]]:
    """A conversation, a number of workers and the operations they interleave."""
    conversation = draw(st.lists(MESSAGES, min_size=1, max_size=max_messages))
    workers = draw(st.integers(2, 3))
    worker = st.integers(0, workers - 1)
    simple = st.one_of(
        st.tuples(st.just("turn"), worker),
        st.tuples(st.just("resume"), worker),
        st.tuples(st.just("continue"), worker,
                  st.sampled_from(["answer", "answer", "answer-one", "repeat", "conflict",
                                   "unrequested"])),
    )
    ops = draw(st.lists(st.one_of(
        simple, simple,
        st.tuples(st.just("crash"), st.integers(1, 10), st.booleans(), simple),
        st.tuples(st.just("race"), st.integers(1, 6), simple, simple),
        st.tuples(st.just("tick"), st.just(0)),
    ), max_size=max_ops))
    return conversation, workers, ops


def play(open_store: Callable[[], Store],
         plan: tuple[list[Said], int, list[tuple[Any, ...]]]) -> list[str]:
    """Play ``plan`` on stores from ``open_store``, check every invariant against the serial
    run, and return what happened (crashes, races, what workers were told)."""
    conversation, workers, ops = plan
    want, serial_ledger, serial_store = serial(conversation)
    ledger = Ledger()
    world = World(open_store, shop_agent(ledger), conversation, workers)
    try:
        world.sessions(0).create(SID, agent="shop")
        for op in ops:
            if op[0] in ("crash", "race"):
                world.perform(world.arm(op))
            elif op[0] == "tick":
                world.clock.advance(LEASE_TTL_S + 1)
            else:
                world.perform(op)
        if currently_in_test_context():
            for what in sorted(set(world.seen)):
                event(what)
        assert world.unexpected == [], world.unexpected
        got = world.converge()
        assert got == want
        # Each server write took effect once per intent, and its handler ran once: after a
        # crash the ledger was looked up, never written blindly again.
        assert ledger.applied == serial_ledger.applied
        assert set(ledger.invoked.values()) <= {1}, ledger.invoked
        store = world.stores[0]
        for number in range(1, len(conversation) + 1):
            run_id = f"session:{SID}:turn:{number}"
            # No model call journaled twice: each turn paid for what the serial one did.
            assert model_calls(store, run_id) == model_calls(serial_store, run_id), run_id
        assert_turns_in_order(store.read(f"session:{SID}"), len(conversation))
        return world.seen
    finally:
        world.close()


def model_calls(store: Store, run_id: str) -> int:
    return sum(1 for e in store.read(run_id) if isinstance(e, ModelCalled))


def assert_turns_in_order(stream: list[Event], count: int) -> None:
    """Turn n+1 starts only after turn n finished; each turn starts and finishes once."""
    marks = [(type(e).__name__, e.turn) for e in stream
             if isinstance(e, TurnStarted | TurnFinished)]
    expected = list(itertools.chain.from_iterable(
        (("TurnStarted", n), ("TurnFinished", n)) for n in range(1, count + 1)))
    assert marks == expected


def examples(count: int) -> settings:
    return settings(max_examples=count, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@examples(100)
@given(plan=plans())
def test_any_interleaving_on_memory_gives_the_serial_history(
        plan: tuple[list[Said], int, list[tuple[Any, ...]]]) -> None:
    """On one memory store shared by 2-3 workers, whatever interleaving of turns, continues
    (right, repeated, conflicting, unrequested), resumes, races and crashes: the serial
    history, one write per intent, no model call paid twice, turns never interleaved."""
    store = MemoryStore()
    play(lambda: store, plan)


@examples(20)
@given(plan=plans())
def test_any_interleaving_on_sqlite_gives_the_serial_history(
        tmp_path_factory: pytest.TempPathFactory,
        plan: tuple[list[Said], int, list[tuple[Any, ...]]]) -> None:
    """The same on a real SQLite file, each worker with its own connection."""
    path = tmp_path_factory.mktemp("interleavings") / "store.db"
    play(lambda: SQLiteStore(path), plan)


@pytest.mark.postgres
def test_any_interleaving_on_postgres_gives_the_serial_history(postgres_dsn: str) -> None:
    """The same on PostgreSQL, each worker with its own connection (fewer examples)."""
    from tether.store.postgres import PostgresStore

    schemas = itertools.count(1)

    @examples(6)
    @given(plan=plans())
    def check(plan: tuple[list[Said], int, list[tuple[Any, ...]]]) -> None:
        schema = f"interleave_{next(schemas)}"
        play(lambda: PostgresStore(postgres_dsn, schema=schema), plan)

    check()


def test_a_race_right_before_turn_started_makes_one_turn_and_one_conflict(
        tmp_path: Path) -> None:
    """Worker 1 sends the message while worker 0 is about to append the same turn: one
    turn_started lands, the other worker is told SessionConflict, and the history is serial."""
    conversation = [Said("refund?", "yes")]
    path = tmp_path / "store.db"
    seen = play(lambda: SQLiteStore(path),
                (conversation, 2, [("race", 1, ("turn", 0), ("turn", 1)),
                                   ("continue", 1, "answer"), ("resume", 0)]))
    assert seen == ["a race ran", "a worker was told SessionConflict"]


def retrying_client(store: Store, conversation: Sequence[Said],
                    crashes: list[tuple[int, bool]]) -> list[dict[str, Any]]:
    """A client that knows nothing of turn numbers: it sends each message conditioned on the
    revision it last read and, when the worker dies, sends it again under the same condition;
    a conflict means the message was taken, so it finishes that turn instead."""
    ledger = Ledger()
    world = World(lambda: store, shop_agent(ledger), conversation, 1)
    world.sessions(0).create(SID, agent="shop")
    plan = list(crashes)

    def worker() -> Sessions:
        world.handles[0] = world._handle(0)
        if plan:
            store_, _ = world.handles[0]
            store_.crash = plan.pop(0)
        return world.sessions(0)

    sessions = worker()
    for number, said in enumerate(conversation, 1):
        revision = sessions.session(SID).revision
        while True:
            try:
                try:
                    asyncio.run(sessions.turn(SID, said.text, expected_revision=revision))
                except SessionConflict:
                    asyncio.run(sessions.resume(SID))  # it was taken: finish that turn
                if sessions.runtime.pending_client_calls(f"session:{SID}:turn:{number}"):
                    world.answer(sessions, number)
                    asyncio.run(sessions.resume(SID))
                if sessions.session(SID).state.pending is None:
                    break
            except Crash:
                sessions = worker()
    session = sessions.session(SID)
    assert [t.input for t in session.turns] == [s.text for s in conversation]
    assert set(ledger.invoked.values()) <= {1}
    return [m.model_dump(mode="json") for m in session.history()]


@pytest.mark.parametrize("after", [False, True])
def test_a_message_resent_after_a_crash_under_its_revision_is_one_turn(after: bool) -> None:
    """Whichever append of a turn the worker dies at, a client that sends the message again
    with the revision it read gets one turn for it, never two, and the serial history."""
    conversation = [Said("refund?", "yes"), Said("status", "no")]
    want = serial(conversation)[0]
    appends = FaultyStore(MemoryStore())
    retrying_client(appends, conversation, [])  # type: ignore[arg-type]
    for crash_at in range(1, appends.appends + 1):
        assert retrying_client(MemoryStore(), conversation, [(crash_at, after)]) == want, \
            crash_at


def test_a_message_conditioned_on_an_old_revision_is_refused() -> None:
    """A turn whose expected revision is not the session's appends nothing and says which
    revision it expected and which it found."""
    sessions = World(MemoryStore, shop_agent(Ledger()), [], 1).sessions(0)
    revision = sessions.create(SID, agent="shop").revision
    sessions.set_variable(SID, "tier", "gold")
    with pytest.raises(SessionConflict) as caught:
        asyncio.run(sessions.turn(SID, "hello", expected_revision=revision))
    assert (caught.value.expected_revision, caught.value.found_revision) == (revision,
                                                                            revision + 1)
    assert sessions.session(SID).turns == ()


@pytest.mark.parametrize("racer", [0, 1])
def test_two_turns_racing_to_record_an_earlier_ending_make_one_turn(racer: int) -> None:
    """Turn 1 finished (its client call answered) but its ending is not recorded yet; two
    turns for the next message race to record it. The one that loses the race to the ending
    must not go on to start a turn of its own after the winner's: one turn, one conflict."""
    conversation = [Said("refund?", "yes"), Said("status", "no")]
    store = MemoryStore()
    seen = play(lambda: store, (conversation, 2, [
        ("turn", 0), ("continue", 0, "answer"), ("race", 1, ("turn", 0), ("turn", racer))]))
    assert seen == ["a race ran", "a worker was told SessionConflict"]
