"""Sessions: durable conversations across runs, stored as journals on the ordinary store.

A session is the event stream ``session:<id>`` on the runtime's :class:`~tether.store.base.Store`
(see :mod:`tether.sessions.state`), so every store holds sessions with no table of its own. The
stream's last seq is the session's **revision**: each change is appended with
``expected_last_seq`` equal to the revision its writer read, so of two concurrent turns one
append wins and the other raises :class:`~tether.errors.SessionConflict` naming the revision it
expected and the one it found; nothing is interleaved.

**A turn** is a run of the session's agent. ``await sessions.turn(sid, "text")``:

1. finishes a half-done earlier turn first (see below);
2. appends ``turn_started`` (turn ``n``, run id ``session:<sid>:turn:<n>``) at the revision;
3. starts that run with a :class:`~tether.agent.agent.Task` whose ``history`` is the session's
   conversation so far, so the agent loop starts from it through the agent's context window,
   and whose ``variables`` are the session's variables as of the turn's start, so the agent's
   instructions and memory subjects are rendered from them (the same on a resumed run);
4. appends ``turn_finished`` with the run's status once the run has finished (a run that waits,
   for an approval or a client tool, leaves the turn open).

A crash between any two of these loses nothing and repeats nothing: the run id is derived from
the session and the turn number, so the next ``turn``/``resume`` resumes that run (or starts it,
if the crash came before it was created) and never starts a second one, and a resumed run pays
for no model call and repeats no tool effect its journal already holds.

**History** is derived, never stored twice: the restored client history (if any), then for every
finished turn the messages its run's journal implies (:mod:`tether.sessions.history`).

**Typed variables.** The sessions of an agent file's agent (:meth:`Sessions.add_definition`,
or ``Sessions(runtime, definitions=[...])``) take only the variables the file declares, of
their declared types: a wrong one is refused before anything is appended.

**Restore** (:meth:`Sessions.restore`) brings an expired or lost session back from the client's
copy of its history, validated and demoted to the client's trust (:mod:`tether.sessions.restore`).

>>> import asyncio
>>> from tether.agent.agent import Agent
>>> from tether.clock import VirtualClock
>>> from tether.models.scripted import ScriptedModel, reply
>>> from tether.runtime.runtime import Runtime
>>> agent = Agent(name="echo", model=ScriptedModel(lambda r: reply(r.messages[-1].content)))
>>> sessions = Sessions(Runtime(clock=VirtualClock(), seed=1), agents=[agent])
>>> _ = sessions.create("s1", agent="echo")
>>> asyncio.run(sessions.turn("s1", "hello")).run.result["answer"]
'hello'
>>> [m.role for m in sessions.session("s1").history()]
['user', 'assistant']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tether.agent.agent import Agent, Task
from tether.errors import ConcurrencyConflict, SessionConflict, SessionInactive, UsageError
from tether.events import (
    Event,
    ResourceVersion,
    RunFinished,
    RunStarted,
    RunStatus,
    SessionClosed,
    SessionCreated,
    SessionRestored,
    TurnFinished,
    TurnStarted,
    VariableSet,
)
from tether.models.base import Message
from tether.runtime.codec import to_json
from tether.runtime.runtime import RunResult, Runtime
from tether.sessions.history import turn_entries
from tether.sessions.restore import validated
from tether.sessions.spec import check_value
from tether.sessions.state import (
    SESSION_WORKFLOW,
    Resource,
    SessionState,
    SessionStatus,
    Turn,
    fold,
    stream_id,
    turn_run_id,
)

if TYPE_CHECKING:
    from tether.sessions.loader import AgentDefinition

__all__ = ["Session", "Sessions", "TurnResult"]

#: How often a turn's ending is appended again after the session changed under it.
_FINISH_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What a turn came to: its number and run, and the session's revision afterwards.

    ``run.status`` is ``waiting`` when the turn waits (an approval, a client tool): the turn
    stays open until the run is continued and :meth:`Sessions.resume` finishes it."""

    session_id: str
    turn: int
    run: RunResult
    revision: int


class Session:
    """A snapshot of one session as of :attr:`revision`, with its derived history."""

    def __init__(self, sessions: Sessions, state: SessionState) -> None:
        self._sessions, self.state = sessions, state

    @property
    def id(self) -> str:
        return self.state.session_id

    @property
    def revision(self) -> int:
        """The stream's last seq: what the next change must expect."""
        return self.state.revision

    @property
    def agent(self) -> str:
        return self.state.agent

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.state.variables)

    @property
    def resources(self) -> dict[str, Resource]:
        return dict(self.state.resources)

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self.state.turns)

    @property
    def status(self) -> SessionStatus:
        """Active, expired (on the runtime's clock) or closed."""
        return self.state.status(self._sessions.runtime.clock.now())

    def history(self) -> list[Message]:
        """The conversation: restored messages (client trust), then each finished turn's
        messages as its run's journal implies them, each with its source and trust."""
        return [message for _, _, message in self._sessions._entries(self.state)]

    def transcript(self) -> list[dict[str, Any]]:
        """:meth:`history` for a UI: ``role``, ``content``, ``tool_calls`` (when the assistant
        made some), ``run_id`` (``None`` for restored messages) and ``seq`` (the event of that
        run's journal, or of the session's stream, the message was derived from)."""
        rows: list[dict[str, Any]] = []
        for run_id, seq, message in self._sessions._entries(self.state):
            row: dict[str, Any] = {"role": message.role, "content": message.content,
                                   "run_id": run_id, "seq": seq}
            if message.tool_calls:
                row["tool_calls"] = [c.model_dump(mode="json") for c in message.tool_calls]
            if message.tool_call_id is not None:
                row["tool_call_id"] = message.tool_call_id
            row["source"], row["trust"] = message.source, message.trust
            rows.append(row)
        return rows


class Sessions:
    """Sessions of the agents given, on ``runtime``'s store and clock (see the module doc).

    ``definitions`` are agent files (:class:`~tether.sessions.loader.AgentDefinition`): their
    agents are built and registered, and the variables of their sessions are typed — see
    :meth:`add_definition`.
    """

    def __init__(self, runtime: Runtime, *, agents: Iterable[Agent] = (),
                 definitions: Iterable[AgentDefinition] = ()) -> None:
        self.runtime = runtime
        self._agents: dict[str, Agent] = {}
        self._definitions: dict[str, AgentDefinition] = {}
        for agent in agents:
            self.add_agent(agent)
        for definition in definitions:
            self.add_definition(definition)

    def add_definition(self, definition: AgentDefinition, env: Any = None) -> Agent:
        """Let sessions talk to the agent ``definition`` declares (built with tool factories
        receiving ``env``) and type their variables: :meth:`create` fills the declared defaults
        and checks every value's type, :meth:`set_variable` checks the declared type, and an
        undeclared variable is refused, each before anything is appended. Each turn renders
        the instructions from the session's variables as of the turn's start."""
        known = self._definitions.get(definition.name)
        if known is not None:
            if known is definition:
                return self._agents[definition.name]
            raise UsageError(f"two different agent definitions are both named "
                             f"{definition.name!r} ({known.source} and {definition.source})")
        self.add_agent(definition.build(env=env, deferred=True))
        self._definitions[definition.name] = definition
        return self._agents[definition.name]

    def add_agent(self, agent: Agent) -> None:
        """Let sessions talk to ``agent`` (and its turns be resumed by this runtime). An agent
        with session tools (:mod:`tether.sessions.tools`) is run as a copy whose session tools
        act on these sessions: the binding is explicit and per Sessions, never global."""
        from tether.sessions.tools import bind_session_tools, origin_of

        known = self._agents.get(agent.name)
        if known is not None and origin_of(known) is not origin_of(agent):
            raise UsageError(f"two different agents are both named {agent.name!r}")
        bound = bind_session_tools(agent, self) if known is None else known
        try:
            self.runtime.register(bound)
        except UsageError as exc:
            if bound is agent:
                raise
            raise UsageError(
                f"agent {agent.name!r} has session tools, which act through the Sessions that "
                "runs its turns, so Sessions registers its own copy of it with the runtime; "
                f"the runtime already has another workflow named {agent.name!r}. Give the "
                "agent to Sessions only, not to the Runtime (workflows=...) too") from exc
        self._agents[agent.name] = bound

    # -- reading --------------------------------------------------------------------------

    def session(self, session_id: str) -> Session:
        """The session as stored now; :class:`UsageError` if there is no such session."""
        state = self._state(session_id)
        if not state.exists:
            raise UsageError(f"no session {session_id!r} in the store; create it with "
                             "sessions.create, or restore it from the client's copy")
        return Session(self, state)

    def _state(self, session_id: str) -> SessionState:
        if not session_id or "\x00" in session_id:
            raise UsageError(f"session id {session_id!r} must be a non-empty string without NUL")
        state = SessionState(session_id)
        for event in self.runtime.store.read(stream_id(session_id)):
            fold(state, event)
        return state

    def _entries(self, state: SessionState) -> list[tuple[str | None, int, Message]]:
        entries: list[tuple[str | None, int, Message]] = [
            (None, state.restored_seq, m) for m in state.restored]
        for turn in state.turns[state.turns_before_restore:]:
            if turn.status is None:
                continue
            events = self.runtime.store.read(turn.run_id)
            entries += [(turn.run_id, seq, m) for seq, m in turn_entries(turn.run_id, events)]
        return entries

    # -- changing -------------------------------------------------------------------------

    def create(self, session_id: str, *, agent: str | Agent,
               variables: Mapping[str, Any] | None = None,
               ttl_s: float | None = None) -> Session:
        """Create a session talking to ``agent``; :class:`SessionConflict` if it exists."""
        name = self._agent_name(agent)
        if ttl_s is not None and not ttl_s > 0:
            raise UsageError(f"a session's ttl_s must be positive or None, got {ttl_s!r}")
        state = SessionState(session_id)
        self._append(state, self._created(session_id, name, variables, ttl_s))
        return self.session(session_id)

    def set_variable(self, session_id: str, name: str, value: Any, *,
                     by: Literal["trigger", "tool", "client"] = "client",
                     provenance: Mapping[str, Any] | None = None) -> Session:
        """Set variable ``name``, journaled with who set it and from what."""
        state = self._live(session_id)
        self._check_variable(state, name, value)
        self._append(state, [VariableSet(
            seq=0, at=self._now(), name=name, value=to_json(value, what=f"variable {name!r}"),
            by=by, provenance=dict(provenance or {}))])
        return Session(self, state)

    def _check_variable(self, state: SessionState, name: str, value: Any) -> None:
        """Refuse ``value`` for ``name`` when the session's agent came from a definition that
        does not declare ``name`` or declares another type."""
        definition = self._definitions.get(state.agent)
        if definition is None:
            return
        declared = definition.spec.variables
        if name not in declared:
            known = ", ".join(declared) or "none are declared"
            raise UsageError(f"session {state.session_id!r}: variable {name!r} is not declared "
                             f"by agent {state.agent!r} ({definition.source}: variables; "
                             f"declared: {known}); nothing was changed")
        problem = check_value(declared[name].type, value)
        if problem is not None:
            raise UsageError(f"session {state.session_id!r}: variable {name!r}: {problem} "
                             f"({definition.source}: variables.{name} is declared "
                             f"{declared[name].type}); nothing was changed")

    def put_resource(self, session_id: str, name: str, content: Any, *, source: str,
                     trust: str, run_id: str | None = None) -> Resource:
        """Store a new version of resource ``name`` with its provenance; returns it."""
        state = self._live(session_id)
        known = state.resources.get(name)
        version = 1 if known is None else known.version + 1
        self._append(state, [ResourceVersion(
            seq=0, at=self._now(), name=name, version=version,
            content=to_json(content, what=f"resource {name!r}"),
            provenance={"source": source, "run_id": run_id, "trust": trust})])
        return state.resources[name]

    def close(self, session_id: str, reason: str = "") -> Session:
        """Close the session: no turn may start in it again (closing twice is a no-op)."""
        state = self.session(session_id).state
        if not state.closed:
            self._append(state, [SessionClosed(seq=0, at=self._now(), reason=reason)])
        return Session(self, state)

    def restore(self, session_id: str, history: Sequence[Message | dict[str, Any]], *,
                agent: str | Agent | None = None, variables: Mapping[str, Any] | None = None,
                ttl_s: float | None = None) -> Session:
        """Bring back an expired session, or one the store lost, from the client's copy of its
        history: validated and demoted to the client's trust (see
        :mod:`tether.sessions.restore`), recorded as ``session_restored``. The restored
        history replaces the one before it; later turns follow it. A lost session needs
        ``agent`` (and may take ``variables``/``ttl_s``); an active or closed one is refused."""
        messages = validated(history)
        state = self._state(session_id)
        batch: list[Event] = []
        if not state.exists:
            if agent is None:
                raise UsageError(f"session {session_id!r} is not in the store; restoring it "
                                 "needs the agent it talks to (agent=...)")
            batch += self._created(session_id, self._agent_name(agent), variables, ttl_s)
        else:
            status = state.status(self._now())
            if status is not SessionStatus.EXPIRED:
                raise UsageError(f"session {session_id!r} is {status.value}; only an expired "
                                 "or lost session is restored (an active one has its history "
                                 "on the server)" if status is SessionStatus.ACTIVE else
                                 f"session {session_id!r} is closed; start another session")
        batch.append(SessionRestored(seq=0, at=self._now(),
                                     messages=[m.model_dump(mode="json") for m in messages]))
        self._append(state, batch)
        return Session(self, state)

    # -- turns ----------------------------------------------------------------------------

    async def turn(self, session_id: str, text: str, *, trigger: str = "user-message",
                   agent: Agent | None = None,
                   expected_revision: int | None = None, principal: str = "anonymous",
                   roles: Sequence[str] = ()) -> TurnResult:
        """Run one turn of the session (see the module docstring) on behalf of ``principal``
        holding ``roles`` (what the agent's policy judges the turn's calls by; recorded with
        the turn, so a resumed turn runs for the same principal). Raises
        :class:`SessionInactive` for an expired or closed session and
        :class:`SessionConflict` when another turn changed the session first or an earlier
        turn is still waiting.

        ``expected_revision`` (the revision the caller last read) makes the turn conditional:
        a session that changed since is a :class:`SessionConflict` and nothing is appended.
        A client that did not hear back (its worker died) sends the message again under the
        same revision: if the first attempt was taken, it is told so instead of getting a
        second turn for one message, and :meth:`resume` finishes the first."""
        state = self.session(session_id).state
        if expected_revision is not None and state.revision != expected_revision:
            raise SessionConflict(
                f"session {session_id!r} is at revision {state.revision}, not the expected "
                f"{expected_revision}; nothing was appended. If this message was sent before, "
                "it was taken: read the session (and resume its open turn) rather than send "
                "it again", session_id=session_id, expected_revision=expected_revision,
                found_revision=state.revision)
        if agent is not None:
            if agent.name != state.agent:
                raise UsageError(f"session {session_id!r} talks to agent {state.agent!r}, not "
                                 f"{agent.name!r}; start another session for that agent")
            self.add_agent(agent)
        pending = state.pending
        if pending is not None:
            read_at, turns_read = state.revision, len(state.turns)
            done = await self._finish(state, pending)
            if done.run.status is RunStatus.WAITING:
                raise SessionConflict(
                    f"session {session_id!r}: turn {pending.number} (run {pending.run_id!r}) "
                    f"is waiting for {done.run.waiting_for!r}; resolve or continue it, then "
                    "call sessions.resume before the next turn",
                    session_id=session_id, expected_revision=state.revision,
                    found_revision=state.revision)
            if len(state.turns) != turns_read:
                # Recording that ending re-read the session (its tools may have changed it
                # while it ran) and found a turn another writer started meanwhile: this
                # message raced that turn and lost, as it would at turn_started.
                raise SessionConflict(
                    f"session {session_id!r} was changed by another writer: turn "
                    f"{len(state.turns)} started after this message read revision {read_at}; "
                    "nothing was appended for it. Read the session again and send the "
                    "message if it still makes sense", session_id=session_id,
                    expected_revision=read_at, found_revision=state.revision)
        status = state.status(self._now())
        if status is not SessionStatus.ACTIVE:
            raise SessionInactive(
                f"session {session_id!r} is {status.value}"
                + ("; restore it from the client's copy with sessions.restore"
                   if status is SessionStatus.EXPIRED else "; start another session"),
                session_id=session_id, status=status.value)
        number = len(state.turns) + 1
        self._append(state, [TurnStarted(
            seq=0, at=self._now(), turn=number, run_id=turn_run_id(session_id, number),
            trigger=trigger, input=text, principal=principal, roles=list(roles))])
        return await self._finish(state, state.turns[-1])

    async def resume(self, session_id: str) -> TurnResult | None:
        """Finish the session's half-done turn, if it has one (after a crash, or once its
        wait was resolved); ``None`` when every turn has finished."""
        state = self.session(session_id).state
        pending = state.pending
        return None if pending is None else await self._finish(state, pending)

    async def _finish(self, state: SessionState, turn: Turn) -> TurnResult:
        """Run (or resume) ``turn``'s run and record how it finished."""
        agent = self._agent(state.agent)
        store = self.runtime.store
        if store.get_run(turn.run_id) is None:
            prior = SessionState(state.session_id)
            for event in store.read(stream_id(state.session_id)):
                if isinstance(event, TurnStarted) and event.turn == turn.number:
                    break
                fold(prior, event)
            history = tuple(m for _, _, m in self._entries(prior))
            # The variables as of the turn's start, in the journaled input: the instructions
            # and memory subjects of this turn (and of its resumption) are rendered from them.
            task = Task(text=str(turn.input), history=history, variables=dict(prior.variables),
                        principal=turn.principal, roles=turn.roles)
            try:
                result = await self.runtime.start(agent, task.model_dump(mode="json"),
                                                  run_id=turn.run_id,
                                                  session_id=state.session_id)
            except UsageError:
                if store.get_run(turn.run_id) is None:
                    raise
                # Another process created the run between our look and our start.
                result = await self.runtime.resume(turn.run_id)
        else:
            result = await self.runtime.resume(turn.run_id)
        revision = state.revision
        if result.status.finished:
            revision = self._finished(state, turn, result.status)
        return TurnResult(state.session_id, turn.number, result, revision)

    def _finished(self, state: SessionState, turn: Turn, status: RunStatus) -> int:
        """Append ``turn_finished``; returns the session's revision afterwards.

        The turn itself may have changed the session while it ran (its session tools), and so
        may a trigger or a client: on a conflict ``state`` is read again (in place, so the
        caller goes on from it) and the ending is appended after those changes, unless another
        process recorded the same ending first. Bounded: a session changing under every
        attempt raises the last conflict."""
        for attempt in range(1, _FINISH_ATTEMPTS + 1):
            try:
                self._append(state, [TurnFinished(seq=0, at=self._now(), turn=turn.number,
                                                  run_id=turn.run_id, status=status)])
                return state.revision
            except SessionConflict:
                fresh = self._state(state.session_id)
                for name in SessionState.__slots__:
                    setattr(state, name, getattr(fresh, name))
                if any(t.number == turn.number and t.status is not None for t in state.turns):
                    return state.revision  # that ending is this one
                if attempt == _FINISH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- plumbing -------------------------------------------------------------------------

    def _now(self) -> float:
        return self.runtime.clock.now()

    def _live(self, session_id: str) -> SessionState:
        state = self.session(session_id).state
        if state.closed:
            raise SessionInactive(f"session {session_id!r} is closed; start another session",
                                  session_id=session_id, status=SessionStatus.CLOSED.value)
        return state

    def _agent_name(self, agent: str | Agent) -> str:
        if isinstance(agent, Agent):
            self.add_agent(agent)
            return agent.name
        return agent

    def _agent(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self._agents)) or "none"
            raise UsageError(f"the session's agent {name!r} was not given to Sessions "
                             f"(given: {known}); pass it in Sessions(runtime, agents=[...])")
        return agent

    def _created(self, session_id: str, agent: str, variables: Mapping[str, Any] | None,
                 ttl_s: float | None) -> list[Event]:
        now = self._now()
        definition = self._definitions.get(agent)
        if definition is not None:
            try:
                variables = definition.variables(variables)
            except UsageError as exc:
                raise UsageError(f"session {session_id!r}: {exc}; nothing was created") from exc
        # Created and finished at once: recovery never resumes a session's stream, and the
        # run listings skip it (its workflow is tether.session).
        return [
            RunStarted(seq=0, at=now, workflow=SESSION_WORKFLOW,
                       input={"session_id": session_id}, seed=0),
            RunFinished(seq=0, at=now, status=RunStatus.COMPLETED, reason="session stream"),
            SessionCreated(seq=0, at=now, agent=agent, ttl_s=ttl_s, created_at=now,
                           variables=to_json(dict(variables or {}), what="session variables")),
        ]

    def _append(self, state: SessionState, events: Sequence[Event]) -> None:
        """Append ``events`` at ``state``'s revision (compare-and-set) and fold them in."""
        batch = [e.model_copy(update={"seq": state.revision + i + 1})
                 for i, e in enumerate(events)]
        run_id = stream_id(state.session_id)
        try:
            # sync: a turn's start and end are what a client acts on (the output-commit rule).
            self.runtime.store.append(run_id, batch, expected_last_seq=state.revision,
                                      sync=True)
        except ConcurrencyConflict as exc:
            info = self.runtime.store.get_run(run_id)
            found = 0 if info is None else info.last_seq
            what = ("already exists" if state.revision == 0 else
                    f"was changed by another writer (revision {found}, expected "
                    f"{state.revision})")
            raise SessionConflict(
                f"session {state.session_id!r} {what}; nothing was appended. Read the session "
                "again and retry if the change still makes sense",
                session_id=state.session_id, expected_revision=state.revision,
                found_revision=found) from exc
        for event in batch:
            fold(state, event)
