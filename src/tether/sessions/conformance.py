"""The session conformance kit: what sessions promise, as checks any store can be run against.

Sessions live on the ordinary :class:`~tether.store.base.Store` (the stream ``session:<id>``
plus one run per turn), so a store that passes the store kit (:mod:`tether.store.conformance`)
should hold sessions too; this kit checks that it does, end to end, through
:class:`~tether.sessions.session.Sessions`. It lives here rather than beside the store kit
because the store layer may not import sessions.

A third-party store runs it the same way tether's memory, SQLite and PostgreSQL stores do::

    from tether.sessions.conformance import SessionConformance

    @pytest.mark.parametrize("check", SessionConformance.CHECKS)
    def test_my_store_holds_sessions(check):
        SessionConformance(make_my_store, open_peer=reopen_my_store).run(check)

``make_store`` returns a fresh, empty store; ``open_peer(store)`` another handle on the same
storage (another connection, as a second process would have). Without ``open_peer`` the store
itself is its peer. Each check makes and closes its own stores; every session it creates has a
fresh id, so the checks never see each other's data. Failures raise :class:`AssertionError`
naming what was expected and what was found.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from tether.agent.agent import Agent
from tether.clock import VirtualClock
from tether.errors import SessionConflict, SessionInactive, UsageError
from tether.events import Event, RunStatus, SessionCreated, SessionRestored, VariableSet
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.runtime.client_tools import client_tool
from tether.runtime.runtime import Runtime
from tether.runtime.tools import ToolContext, tool
from tether.sessions.session import Sessions
from tether.sessions.state import SESSION_WORKFLOW, SessionStatus, stream_id
from tether.store.base import Store
from tether.store.conformance import ConformanceKit

__all__ = ["SessionConformance"]

_TTL_S = 30.0
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=5), inner,
                      max_size=3),
    max_leaves=6,
)


def _check(condition: bool, message: str) -> None:
    # Not `assert`: the kit must keep checking under `python -O`.
    if not condition:
        raise AssertionError(message)


def _raises(kind: type[BaseException], what: str, action: Callable[[], object]) -> BaseException:
    try:
        action()
    except kind as exc:
        return exc
    raise AssertionError(f"{what}: expected {kind.__name__}, nothing was raised")


class _Query(BaseModel):
    q: str


def _agent() -> Agent:
    """The kit's agent: a request ending in "?" asks the client (a client tool, so the turn
    waits); any other is looked up with a server tool; then it answers with the result and the
    number of messages it was shown (so a lost or doubled history changes the answer)."""

    @tool(name="lookup", args=_Query)
    async def lookup(ctx: ToolContext, args: _Query) -> dict[str, str]:
        return {"found": args.q.upper()}

    ask = client_tool("ask", args=_Query, result=str, description="Ask the user.")

    def script(request: ModelRequest) -> ModelResponse:
        last = request.messages[-1]
        if last.role == "user":
            asked = sum(1 for m in request.messages if m.role == "user")
            name = "ask" if last.content.endswith("?") else "lookup"
            return call(name, {"q": last.content}, call_id=f"c{asked}")
        return reply(f"{last.content} after {len(request.messages)} messages")

    return Agent(name="kit-agent", model=ScriptedModel(script), tools=[lookup, ask])


class _BarrierStore:
    """A store handle whose first append holding an event of ``kind`` waits at ``barrier``, so
    two writers that read the same revision append at once."""

    def __init__(self, inner: Store, barrier: threading.Barrier, kind: str) -> None:
        self.inner, self.barrier, self.kind = inner, barrier, kind
        self.met = False

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        if not self.met and any(e.kind == self.kind for e in events):
            self.met = True
            self.barrier.wait(timeout=10)
        self.inner.append(run_id, events, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SessionConformance(ConformanceKit):
    """The session contract as checks on one store kind; :meth:`run` runs some or all."""

    #: The checks, in the order :meth:`run` runs them; each is the method ``check_<name>``.
    CHECKS: ClassVar[tuple[str, ...]] = (
        "create_and_read", "revision_conflicts", "variables_and_resources", "ttl_expiry",
        "close", "restore_expired", "restore_lost", "history_after_reopen",
        "turn_runs_visible",
    )
    SUBJECT: ClassVar[str] = "session conformance"

    def __init__(
        self,
        make_store: Callable[[], Store],
        *,
        open_peer: Callable[[Store], Store] | None = None,
        max_examples: int = 15,
    ) -> None:
        super().__init__(make_store, open_peer=open_peer, max_examples=max_examples)

    # -- plumbing -------------------------------------------------------------------------

    def _sessions(self, store: Store, clock: VirtualClock | None = None,
                  owner: str = "kit", agent: Agent | None = None) -> Sessions:
        runtime = Runtime(store, clock=clock or VirtualClock(), seed=7, owner=owner)
        return Sessions(runtime, agents=[agent or _agent()])

    def _sid(self) -> str:
        return self._fresh_id()

    # -- checks ---------------------------------------------------------------------------

    def check_create_and_read(self) -> None:
        """A created session reads back (agent, variables, TTL, revision) from another handle;
        creating it again is a SessionConflict that changes nothing; an unknown session is a
        UsageError saying how to make one."""
        with self._store(peers=1) as (store, peer):
            writer, reader = self._sessions(store), self._sessions(peer)
            sid = self._sid()
            created = writer.create(sid, agent="kit-agent", variables={"tier": "gold"},
                                    ttl_s=_TTL_S)
            seen = reader.session(sid)
            _check((seen.agent, seen.variables, seen.state.ttl_s, seen.revision)
                   == ("kit-agent", {"tier": "gold"}, _TTL_S, created.revision),
                   f"read back {seen.agent!r}, {seen.variables}, ttl {seen.state.ttl_s}, "
                   f"revision {seen.revision}; created revision {created.revision}")
            _check(seen.status is SessionStatus.ACTIVE, f"a new session is {seen.status}")
            _check(seen.turns == () and seen.history() == [],
                   "a new session has turns or history")
            again = _raises(SessionConflict, "creating a session twice",
                            lambda: reader.create(sid, agent="kit-agent", variables={"x": 1}))
            _check("already exists" in str(again), f"the conflict says: {again}")
            _check(writer.session(sid).state == created.state,
                   "the refused second create changed the session")
            _raises(UsageError, "reading an unknown session",
                    lambda: reader.session(self._sid()))

    def check_revision_conflicts(self) -> None:
        """Two handles that read one revision and change the session at once: one change is
        stored, the other raises SessionConflict naming the revision it expected and the one
        it found, and nothing of it is stored — for variables, for turns, and for turns that
        must first record the ending of an earlier turn (answered by the client while no
        turn was looking)."""
        for kind in ("variable_set", "turn_started", "turn_finished"):
            with self._store(peers=2) as (store, first, second):
                sid = self._sid()
                sessions = self._sessions(store)
                sessions.create(sid, agent="kit-agent")
                if kind == "turn_finished":
                    waiting = asyncio.run(sessions.turn(sid, "when?"))
                    asyncio.run(sessions.runtime.continue_execution(waiting.run.run_id,
                                                                    {"c1": "now"}))
                before = sessions.session(sid).revision
                outcomes = self._race(sid, kind, [first, second])
                conflicts = [o for o in outcomes if isinstance(o, SessionConflict)]
                _check(len(outcomes) == 2 and len(conflicts) == 1,
                       f"racing {kind}: expected one success and one SessionConflict, got "
                       f"{outcomes}")
                conflict = conflicts[0]
                _check(conflict.expected_revision >= before
                       and conflict.found_revision > conflict.expected_revision,
                       f"racing {kind}: the conflict expected {conflict.expected_revision} and "
                       f"found {conflict.found_revision}; the revision both read was {before}")
                self._check_race_left(store, sid, kind)

    def _check_race_left(self, store: Store, sid: str, kind: str) -> None:
        after = self._sessions(store).session(sid)
        stream = store.read(stream_id(sid))
        if kind == "variable_set":
            changes = [e for e in stream if isinstance(e, VariableSet)]
            _check(len(changes) == 1, f"racing variables: {len(changes)} were stored")
            return
        turns = 1 if kind == "turn_started" else 2
        started = [e for e in stream if e.kind == "turn_started"]
        _check(len(started) == turns, f"racing {kind}: {len(started)} turns started, "
                                      f"expected {turns}")
        _check([t.status for t in after.turns] == ["completed"] * turns,
               f"racing turns left turns {after.turns}")
        users = [m for m in after.history() if m.role == "user"]
        _check(len(users) == turns, f"racing turns left {len(users)} user messages")

    def _race(self, sid: str, kind: str, handles: list[Store]) -> list[object]:
        barrier = threading.Barrier(len(handles))
        outcomes: list[object] = []

        def change(index: int, handle: Store) -> None:
            racing = _BarrierStore(handle, barrier, kind)
            sessions = self._sessions(racing, owner=f"kit-{index}")
            try:
                if kind == "variable_set":
                    outcomes.append(sessions.set_variable(sid, "who", index))
                else:
                    outcomes.append(asyncio.run(sessions.turn(sid, f"from {index}")))
            except (SessionConflict, threading.BrokenBarrierError) as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=change, args=(i, h)) for i, h in enumerate(handles)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return outcomes

    def check_variables_and_resources(self) -> None:
        """Any JSON value set as a variable, and every resource version, reads back equal from
        another handle with who set it and from what; resource versions count up from 1."""
        with self._store(peers=1) as (store, peer):
            writer, reader = self._sessions(store), self._sessions(peer)

            @self._settings()
            @given(values=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), _JSON,
                                             st.sampled_from(["trigger", "tool", "client"])),
                                   min_size=1, max_size=4),
                   contents=st.lists(_JSON, min_size=1, max_size=3))
            def round_trip(values: list[tuple[str, Any, str]], contents: list[Any]) -> None:
                sid = self._sid()
                writer.create(sid, agent="kit-agent")
                want: dict[str, Any] = {}
                for index, (name, value, by) in enumerate(values):
                    writer.set_variable(sid, name, value, by=by,  # type: ignore[arg-type]
                                        provenance={"step": index})
                    want[name] = value
                for version, content in enumerate(contents, 1):
                    made = writer.put_resource(sid, "notes", content, source=f"src{version}",
                                               trust="user", run_id=f"run{version}")
                    _check(made.version == version, f"resource version {made.version}, "
                                                    f"expected {version}")
                seen = reader.session(sid)
                _check(seen.variables == want, f"variables {seen.variables} != {want}")
                notes = seen.resources["notes"]
                _check((notes.version, notes.content) == (len(contents), contents[-1]),
                       f"resource {notes.version}: {notes.content!r}; expected version "
                       f"{len(contents)}: {contents[-1]!r}")
                _check(notes.provenance == {"source": f"src{len(contents)}",
                                            "run_id": f"run{len(contents)}", "trust": "user"},
                       f"resource provenance {notes.provenance}")
                recorded = [(e.name, e.value, e.by, e.provenance)
                            for e in peer.read(stream_id(sid)) if isinstance(e, VariableSet)]
                _check(recorded == [(n, v, b, {"step": i}) for i, (n, v, b) in enumerate(values)],
                       f"variable events {recorded} != what was set")

            round_trip()

    def check_ttl_expiry(self) -> None:
        """On the runtime's clock a session is active until ``ttl_s`` after its last activity
        (creation or a turn), then expired: a turn is refused with SessionInactive saying to
        restore it, and nothing is appended."""
        with self._store() as (store,):
            clock = VirtualClock()
            sessions = self._sessions(store, clock)
            sid = self._sid()
            sessions.create(sid, agent="kit-agent", ttl_s=_TTL_S)
            clock.advance(_TTL_S - 1)
            asyncio.run(sessions.turn(sid, "hello"))
            clock.advance(_TTL_S - 1)
            status = sessions.session(sid).status
            _check(status is SessionStatus.ACTIVE,
                   f"{_TTL_S - 1} s after a turn the session is {status}, not active")
            clock.advance(1)
            status = sessions.session(sid).status
            _check(status is SessionStatus.EXPIRED,
                   f"{_TTL_S} s after its last turn the session is {status}, not expired")
            revision = sessions.session(sid).revision
            refused = _raises(SessionInactive, "a turn in an expired session",
                              lambda: asyncio.run(sessions.turn(sid, "again")))
            _check(getattr(refused, "status", None) == "expired" and "restore" in str(refused),
                   f"the refusal says: {refused}")
            _check(sessions.session(sid).revision == revision,
                   "the refused turn appended something")

    def check_close(self) -> None:
        """A closed session takes no turn, variable or restore, and closing it again changes
        nothing; its history stays readable."""
        with self._store(peers=1) as (store, peer):
            sessions, other = self._sessions(store), self._sessions(peer)
            sid = self._sid()
            sessions.create(sid, agent="kit-agent")
            asyncio.run(sessions.turn(sid, "hello"))
            history = sessions.session(sid).history()
            closed = sessions.close(sid, "done")
            _check(other.session(sid).status is SessionStatus.CLOSED,
                   f"after close the session is {other.session(sid).status}")
            _check(other.close(sid).revision == closed.revision, "closing twice appended")
            _raises(SessionInactive, "a turn in a closed session",
                    lambda: asyncio.run(other.turn(sid, "again")))
            _raises(SessionInactive, "a variable of a closed session",
                    lambda: other.set_variable(sid, "x", 1))
            _raises(UsageError, "restoring a closed session",
                    lambda: other.restore(sid, [{"role": "user", "content": "hi"}]))
            _check(other.session(sid).revision == closed.revision,
                   "a refused change to a closed session appended something")
            _check(other.session(sid).history() == history, "closing changed the history")

    def check_restore_expired(self) -> None:
        """An expired session restored from the client's copy is active again, its history is
        the copy demoted to the user's trust, and its next turn starts from it."""
        with self._store(peers=1) as (store, peer):
            clock = VirtualClock()
            sessions = self._sessions(store, clock)
            sid = self._sid()
            sessions.create(sid, agent="kit-agent", ttl_s=_TTL_S)
            asyncio.run(sessions.turn(sid, "first"))
            clock.advance(_TTL_S)
            copy = _client_copy()
            _raises(UsageError, "restoring an active session",
                    lambda: self._sessions(peer).restore(self._restorable(peer), copy))
            restored = self._sessions(peer, clock).restore(sid, copy)
            _check(restored.status is SessionStatus.ACTIVE,
                   f"a restored session is {restored.status}")
            self._check_restored(self._sessions(store, clock), sid, copy)

    def check_restore_lost(self) -> None:
        """A session the store does not hold is restored only with its agent, created and
        restored in one append, and its next turn starts from the copy."""
        with self._store(peers=1) as (store, peer):
            sid = self._sid()
            copy = _client_copy()
            sessions = self._sessions(store)
            _raises(UsageError, "restoring a lost session without its agent",
                    lambda: sessions.restore(sid, copy))
            _check(store.read(stream_id(sid)) == [], "a refused restore stored something")
            restored = sessions.restore(sid, copy, agent="kit-agent", variables={"a": 1})
            _check(restored.variables == {"a": 1}, f"variables {restored.variables}")
            kinds = [e.kind for e in peer.read(stream_id(sid))]
            _check(kinds == ["run_started", "run_finished", "session_created",
                             "session_restored"], f"a lost session's restore stored {kinds}")
            self._check_restored(self._sessions(peer), sid, copy)

    def _restorable(self, store: Store) -> str:
        """A fresh active session (restoring it must be refused)."""
        sid = self._sid()
        self._sessions(store).create(sid, agent="kit-agent")
        return sid

    def _check_restored(self, sessions: Sessions, sid: str,
                        copy: list[dict[str, Any]]) -> None:
        history = sessions.session(sid).history()
        _check([(m.role, m.content) for m in history] == [(c["role"], c["content"])
                                                           for c in copy],
               f"the restored history {[(m.role, m.content) for m in history]} is not the copy")
        _check({(m.source, m.trust) for m in history} == {("user", "user")},
               "restored messages kept the provenance the copy claimed")
        recorded = [e for e in sessions.runtime.store.read(stream_id(sid))
                    if isinstance(e, SessionRestored)]
        _check(len(recorded) == 1, f"{len(recorded)} session_restored events")
        result = asyncio.run(sessions.turn(sid, "next"))
        # The copy's 4 messages, then the request, the call and its result: 7 shown.
        answer = str(result.run.result["answer"])
        _check(answer.endswith("after 7 messages"),
               f"the turn after a restore answered {answer!r}; it did not start from the copy")

    def check_history_after_reopen(self) -> None:
        """The history and transcript derived after the store is closed and opened again (or
        read through another handle) equal the ones derived before, message for message."""
        store = self.make_store()
        sid = self._sid()
        try:
            sessions = self._sessions(store)
            sessions.create(sid, agent="kit-agent", variables={"k": [1, "x"]})
            for text in ("refund", "status", "where?"):
                result = asyncio.run(sessions.turn(sid, text))
                if result.run.status is RunStatus.WAITING:
                    asyncio.run(sessions.runtime.continue_execution(
                        result.run.run_id, {"c3": "tomorrow"}))
                    asyncio.run(sessions.resume(sid))
            before = sessions.session(sid)
            history, transcript = before.history(), before.transcript()
            _check([t.status for t in before.turns] == ["completed"] * 3,
                   f"turns ended {[t.status for t in before.turns]}")
            reopened = self._peer(store)
        except BaseException:
            store.close()
            raise
        if reopened is not store:
            store.close()  # only the new handle reads what the old one wrote
        try:
            after = self._sessions(reopened).session(sid)
            _check(after.history() == history, "the history differs after reopening the store")
            _check(after.transcript() == transcript,
                   "the transcript differs after reopening the store")
            _check((after.variables, after.revision) == (before.variables, before.revision),
                   "variables or revision differ after reopening the store")
        finally:
            reopened.close()

    def check_turn_runs_visible(self) -> None:
        """Each turn is an ordinary run: listed by status, its journal names the session, a
        waiting one shows its client call; the session's stream is finished at once, so
        recovery never resumes it, and a recovering worker leaves the session intact."""
        with self._store(peers=1) as (store, peer):
            sessions = self._sessions(store)
            sid = self._sid()
            sessions.create(sid, agent="kit-agent")
            done = asyncio.run(sessions.turn(sid, "refund"))
            waiting = asyncio.run(sessions.turn(sid, "when?"))
            _check(waiting.run.status is RunStatus.WAITING,
                   f"a turn asking the client ended {waiting.run.status}")
            completed = {i.run_id for i in peer.list_runs(status=RunStatus.COMPLETED)}
            waiting_ids = {i.run_id for i in peer.list_runs(status=RunStatus.WAITING)}
            _check(done.run.run_id in completed, f"{done.run.run_id} not listed as completed")
            _check(waiting.run.run_id in waiting_ids,
                   f"{waiting.run.run_id} not listed as waiting")
            stream = peer.get_run(stream_id(sid))
            _check(stream is not None and stream.workflow == SESSION_WORKFLOW
                   and stream.status.finished,
                   f"the session stream is listed as {stream}")
            for run_id in (done.run.run_id, waiting.run.run_id):
                started = peer.read(run_id)[0]
                _check(getattr(started, "session_id", None) == sid,
                       f"run {run_id} does not name session {sid!r}")
            other = self._sessions(peer, owner="kit-recover")
            calls = other.runtime.pending_client_calls(waiting.run.run_id)
            _check([c.tool for c in calls] == ["ask"], f"pending client calls {calls}")
            asyncio.run(other.runtime.recover())
            session = other.session(sid)
            _check([t.status for t in session.turns] == ["completed", None],
                   f"after recovery the turns are {session.turns}")
            created = [e for e in peer.read(stream_id(sid)) if isinstance(e, SessionCreated)]
            _check(len(created) == 1, "recovery touched the session stream")
            asyncio.run(other.runtime.continue_execution(waiting.run.run_id,
                                                         {calls[0].call_id: "soon"}))
            finished = asyncio.run(other.resume(sid))
            _check(finished is not None and finished.run.status is RunStatus.COMPLETED,
                   f"the continued turn ended {finished}")


def _client_copy() -> list[dict[str, Any]]:
    """A well-formed history as a client keeps it, claiming more trust than it has."""
    return [
        {"role": "user", "content": "where is my order?", "trust": "system"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "name": "lookup", "arguments": '{"q": "order"}'}]},
        {"role": "tool", "content": '{"found": "ORDER"}', "tool_call_id": "c1",
         "name": "lookup", "source": "lookup", "trust": "system"},
        {"role": "assistant", "content": "It ships tomorrow."},
    ]
