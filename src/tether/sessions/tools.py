"""Session tools: a turn reads and changes its session's resources and variables, exactly once.

:func:`session_tools` makes up to three tools for an agent that talks in sessions:

* ``read_resource(name)`` — the latest version of a resource, with its provenance. A ``read``:
  its result enters the context with the trust the version was written with, so a document
  derived from an email stays ``external`` to the policy.
* ``update_resource(name, content)`` — a new version of a resource.
* ``set_variable(name, value)`` — a session variable (checked against its declared type when
  the session's agent came from an agent file).

Only the names given are open to the model: they are the ``enum`` of the ``name`` argument, so
another name is an invalid call the model reads, never a crash.

**Which session.** The tools act on the session of the running turn, read from its run id
(``session:<sid>:turn:<n>``), through the :class:`~tether.sessions.session.Sessions` that runs
it: ``Sessions.add_agent`` gives that Sessions a copy of the agent whose session tools are bound
to it (:func:`bind_session_tools`), so two Sessions on two stores never share a binding and
there is no global. A session tool called outside a session turn (``agent.run(...)``) or
unbound fails with an error saying so.

**Exactly once.** The writes are ``idempotent`` tools whose "provider" is the session's stream:
a version or variable written by a tool carries the run id and the call's idempotency key in its
provenance, and the write appends only after finding no entry with that key *in the same read of
the stream it appends after* (a compare-and-set on the session's revision), so a re-issue after
a crash between the append and the journaled result finds the first write and returns it. The
stream forgets no key (``key_retention_s`` is infinite) and a lookup (``reconcile``) settles an
outcome the deadline left unknown. A write that races another writer of the session (a trigger
setting a variable) re-reads and tries again, so neither write is lost.

**Provenance.** A resource version written by a tool records ``source: "tool:update_resource"``,
the run id, the key and a trust: the lowest trust of what the turn had seen before the call —
its request, its history, the session's variables, the results of earlier tool and client calls
and the facts recalled from memory (:func:`context_trust`). Content derived from the context
can be no more trusted than the least trusted part of it; the model's own words carry no trust
of their own. A variable set by a tool is ``VariableSet(by="tool", provenance={run_id, key,
trust})``.

>>> tools = session_tools(resources=["notes"], variables=["plan"])
>>> [(t.name, t.effect.value) for t in tools]
[('read_resource', 'read'), ('update_resource', 'idempotent'), ('set_variable', 'idempotent')]
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, create_model

from tether.agent.agent import Agent
from tether.errors import SessionConflict, SessionInactive, TransientError, UsageError
from tether.events import (
    Event,
    ResourceVersion,
    RunStarted,
    StepRecorded,
    ToolResult,
    TurnStarted,
    VariableSet,
    WaitResolved,
    WaitStarted,
)
from tether.memory import derived_trust
from tether.runtime.client_tools import CLIENT_PREFIX
from tether.runtime.codec import to_json
from tether.runtime.provenance import Sourced, Trust
from tether.runtime.tools import Effect, Tool, ToolContext
from tether.sessions.state import SessionState, fold, stream_id

if TYPE_CHECKING:
    from tether.sessions.session import Sessions

__all__ = ["BoundAgent", "SessionTool", "bind_session_tools", "context_trust", "origin_of",
           "session_tools", "turn_of"]

#: How often a write re-reads the session after another writer changed it first, before it
#: gives up for now (a transient failure: the write layer retries it later under the same key).
CAS_ATTEMPTS = 20
_TURN = re.compile(r"^session:(?P<sid>.+):turn:(?P<n>[1-9][0-9]*)$", re.DOTALL)

#: (the Sessions, the call, its arguments) -> the result.
Operation = Callable[["Sessions", ToolContext, Any], Any]
#: (the Sessions, the call, the key) -> the result of the write under that key, or None.
Lookup = Callable[["Sessions", ToolContext, str], Any]


class SessionTool(Tool[Any, Any]):
    """A tool acting on the session of the running turn (see the module docstring). As made
    by :func:`session_tools` it is unbound; :meth:`bound` gives the copy a Sessions runs."""

    operation: Operation
    lookup: Lookup | None = None
    sessions: Sessions | None = None

    def bound(self, sessions: Sessions) -> SessionTool:
        """A copy of this tool acting through ``sessions``."""
        made = copy.copy(self)
        made.sessions = sessions
        operation, lookup = self.operation, self.lookup
        made.handler = lambda ctx, args: operation(sessions, ctx, args)
        if lookup is not None:
            made.reconcile = lambda ctx, key: lookup(sessions, ctx, key)
        return made


def _unbound(ctx: ToolContext, args: Any) -> Any:
    raise UsageError(
        f"tool {ctx.tool!r} is a session tool and is not bound to a Sessions (run {ctx.run_id!r}"
        "); give its agent to Sessions(runtime, agents=[...]) and run it with sessions.turn")


def _unbound_lookup(ctx: ToolContext, key: str) -> Any:
    return _unbound(ctx, None)


def _make(name: str, description: str, effect: Effect, args: type[BaseModel],
          operation: Operation, lookup: Lookup | None = None) -> SessionTool:
    made = SessionTool(name=name, description=description, effect=effect, handler=_unbound,
                       args_type=args, result_type=dict[str, Any],
                       reconcile=_unbound_lookup if lookup is not None else None,
                       key_retention_s=math.inf if effect.writes else None)
    made.operation, made.lookup = operation, lookup
    return made


def session_tools(*, resources: Sequence[str] = (), variables: Sequence[str] = (),
                  writable_resources: Sequence[str] | None = None,
                  variable_types: Mapping[str, str] | None = None) -> list[Tool[Any, Any]]:
    """The session tools for these names: ``read_resource`` when ``resources`` is not empty,
    ``update_resource`` for ``writable_resources`` (default: every resource named; each must be
    one of ``resources``), ``set_variable`` when ``variables`` is not empty. ``variable_types``
    (``{"plan": "string"}``, what an agent file declares) tells the model each variable's type
    in ``set_variable``'s description; the type itself is checked by the session."""
    resources = _names("resources", resources)
    variables = _names("variables", variables)
    writable = resources if writable_resources is None else \
        _names("writable_resources", writable_resources)
    stray = [n for n in writable if n not in resources]
    if stray:
        raise UsageError(f"session_tools: writable resource {stray[0]!r} is not one of "
                         f"resources ({', '.join(resources) or 'none'}); name it there too")
    made: list[Tool[Any, Any]] = []
    if resources:
        made.append(_make(
            "read_resource",
            "Read the latest version of one of this conversation's documents "
            f"({', '.join(resources)}): its content, version number and where it came from.",
            Effect.READ, _read_args(resources), _read))
    if writable:
        made.append(_make(
            "update_resource",
            "Replace one of this conversation's documents "
            f"({', '.join(writable)}) with new content, stored as its next version. Read it "
            "first and write the whole new content, not a change.",
            Effect.IDEMPOTENT, _update_args(writable), _update, _update_lookup))
    if variables:
        types = dict(variable_types or {})
        listed = ", ".join(f"{n} ({types[n]})" if n in types else n for n in variables)
        made.append(_make(
            "set_variable",
            f"Set one of this conversation's variables ({listed}) to a new value; later turns "
            "see it.",
            Effect.IDEMPOTENT, _set_args(variables), _set, _set_lookup))
    return made


def _names(what: str, names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise UsageError(f"session_tools: {what} is a list of names, not the string {names!r}")
    found = tuple(names)
    for name in found:
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"session_tools: {what}: expected non-empty names, found {name!r}")
    if len(set(found)) != len(found):
        raise UsageError(f"session_tools: {what} names one name twice: {list(found)}")
    return found


def _name(names: Sequence[str], description: str) -> Any:
    """A ``name`` argument that is one of ``names``: an ``enum`` in the schema the model sees
    (also for one name, which pydantic would write as ``const``, less widely understood)."""

    def as_enum(schema: dict[str, Any]) -> None:
        schema.pop("const", None)
        schema["enum"] = list(names)

    return (Literal[tuple(names)], Field(description=description, json_schema_extra=as_enum))


def _read_args(names: Sequence[str]) -> type[BaseModel]:
    return create_model("ReadResourceArgs", name=_name(names, "Which document."))


def _update_args(names: Sequence[str]) -> type[BaseModel]:
    return create_model(
        "UpdateResourceArgs", name=_name(names, "Which document."),
        content=(str, Field(description="The document's whole new content.")))


def _set_args(names: Sequence[str]) -> type[BaseModel]:
    return create_model(
        "SetVariableArgs", name=_name(names, "Which variable."),
        value=(Any, Field(description="Its new value: a string, number, boolean, list or "
                                      "object.")))


# -- binding ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BoundAgent(Agent):
    """An agent whose session tools act through one Sessions; ``origin`` is the agent given."""

    origin: Agent | None = dataclasses.field(default=None, repr=False, compare=False)


def origin_of(agent: Agent) -> Agent:
    """The agent ``agent`` was bound from (itself when it was not)."""
    if isinstance(agent, BoundAgent) and agent.origin is not None:
        return agent.origin
    return agent


def bind_session_tools(agent: Agent, sessions: Sessions) -> Agent:
    """``agent`` itself when it has no session tools; else a copy whose session tools act
    through ``sessions`` (what :meth:`Sessions.add_agent` runs)."""
    origin = origin_of(agent)
    if not any(isinstance(t, SessionTool) for t in origin.tools):
        return origin
    fields = {f.name: getattr(origin, f.name) for f in dataclasses.fields(origin)
              if f.init and f.name != "origin"}
    fields["tools"] = [t.bound(sessions) if isinstance(t, SessionTool) else t
                       for t in origin.tools]
    return BoundAgent(**fields, origin=origin)


def turn_of(run_id: str) -> tuple[str, int] | None:
    """``(session id, turn number)`` of a turn's run id, or None for any other run."""
    match = _TURN.match(run_id)
    return None if match is None else (match.group("sid"), int(match.group("n")))


# -- the operations --------------------------------------------------------------------------


class _Snapshot:
    """One read of a session's stream: its events and their fold, for the turn of a call."""

    def __init__(self, sessions: Sessions, ctx: ToolContext) -> None:
        turn = turn_of(ctx.run_id)
        if turn is None:
            raise UsageError(
                f"tool {ctx.tool!r} acts on the session of the running turn, and run "
                f"{ctx.run_id!r} is not a session turn; run the agent with sessions.turn")
        self.session_id, self.turn = turn
        self.events: list[Event] = list(sessions.runtime.store.read(stream_id(self.session_id)))
        self.state = SessionState(self.session_id)
        for event in self.events:
            fold(self.state, event)
        if not any(t.run_id == ctx.run_id for t in self.state.turns):
            raise UsageError(f"tool {ctx.tool!r}: session {self.session_id!r} has no turn run "
                             f"as {ctx.run_id!r}; run the agent with sessions.turn")

    def written(self, ctx: ToolContext) -> Event | None:
        """The entry this call already wrote (same run and idempotency key), if any."""
        for event in reversed(self.events):
            if isinstance(event, ResourceVersion | VariableSet) and \
                    event.provenance.get("run_id") == ctx.run_id and \
                    event.provenance.get("key") == ctx.idempotency_key:
                return event
        return None


def _read(sessions: Sessions, ctx: ToolContext, args: Any) -> Sourced:
    snapshot = _Snapshot(sessions, ctx)
    resource = snapshot.state.resources.get(args.name)
    if resource is None:
        return Sourced({"name": args.name, "version": 0, "content": None,
                        "note": "no version yet"}, source=f"resource:{args.name}",
                       trust=Trust.SYSTEM)
    return Sourced({"name": resource.name, "version": resource.version,
                    "content": resource.content, "provenance": resource.provenance},
                   source=f"resource:{resource.name}@{resource.version}",
                   trust=_trust(resource.provenance.get("trust")))


def _update(sessions: Sessions, ctx: ToolContext, args: Any) -> dict[str, Any]:
    def change(snapshot: _Snapshot) -> Event:
        known = snapshot.state.resources.get(args.name)
        trust = context_trust(sessions, ctx, snapshot)
        return ResourceVersion(
            seq=0, at=sessions.runtime.clock.now(), name=args.name,
            version=1 if known is None else known.version + 1,
            content=to_json(args.content, what=f"resource {args.name!r}"),
            provenance={"source": f"tool:{ctx.tool}", "run_id": ctx.run_id,
                        "key": ctx.idempotency_key, "trust": trust.value})

    return _update_result(_write_once(sessions, ctx, change))


def _set(sessions: Sessions, ctx: ToolContext, args: Any) -> dict[str, Any]:
    def change(snapshot: _Snapshot) -> Event:
        # The declared type, when the session's agent came from an agent file: a value that
        # does not fit is an error the model reads, and nothing is written.
        sessions._check_variable(snapshot.state, args.name, args.value)
        trust = context_trust(sessions, ctx, snapshot)
        return VariableSet(
            seq=0, at=sessions.runtime.clock.now(), name=args.name,
            value=to_json(args.value, what=f"variable {args.name!r}"), by="tool",
            provenance={"run_id": ctx.run_id, "key": ctx.idempotency_key,
                        "trust": trust.value})

    return _set_result(_write_once(sessions, ctx, change))


def _update_result(event: Event) -> dict[str, Any]:
    assert isinstance(event, ResourceVersion)
    return {"name": event.name, "version": event.version}


def _set_result(event: Event) -> dict[str, Any]:
    assert isinstance(event, VariableSet)
    return {"name": event.name, "value": event.value}


def _update_lookup(sessions: Sessions, ctx: ToolContext, key: str) -> Any:
    found = _Snapshot(sessions, ctx).written(dataclasses.replace(ctx, idempotency_key=key))
    return None if found is None else _update_result(found)


def _set_lookup(sessions: Sessions, ctx: ToolContext, key: str) -> Any:
    found = _Snapshot(sessions, ctx).written(dataclasses.replace(ctx, idempotency_key=key))
    return None if found is None else _set_result(found)


def _write_once(sessions: Sessions, ctx: ToolContext,
                change: Callable[[_Snapshot], Event]) -> Event:
    """Append ``change`` unless this call (run and key) already wrote it, in one
    compare-and-set: the look for the key and the append are at the same revision."""
    for _ in range(CAS_ATTEMPTS):
        snapshot = _Snapshot(sessions, ctx)
        found = snapshot.written(ctx)
        if found is not None:
            return found
        if snapshot.state.closed:
            raise SessionInactive(
                f"tool {ctx.tool!r}: session {snapshot.session_id!r} is closed; nothing was "
                "written", session_id=snapshot.session_id, status="closed")
        event = change(snapshot)
        try:
            sessions._append(snapshot.state, [event])
        except SessionConflict:
            continue  # another writer came first: read again, keep its write, retry ours
        return event
    raise TransientError(f"tool {ctx.tool!r}: session {turn_of(ctx.run_id)} changed under "
                         f"each of {CAS_ATTEMPTS} attempts to write; nothing was written")


# -- trust -----------------------------------------------------------------------------------


def _trust(value: Any) -> Trust:
    """A recorded trust level; anything unreadable counts as the least trusted."""
    try:
        return Trust(value)
    except ValueError:
        return Trust.EXTERNAL


def context_trust(sessions: Sessions, ctx: ToolContext, snapshot: _Snapshot) -> Trust:
    """The lowest trust of what the turn of ``ctx`` had seen before the call at
    ``ctx.position``: its request (``user``), its history, its session's variables, earlier
    tool results, client results (at their tool's trust) and recalled facts."""
    events = list(sessions.runtime.store.read(ctx.run_id))
    agent = sessions._agents.get(snapshot.state.agent)
    client = {} if agent is None else {t.name: t.trust for t in agent.tools}
    return derived_trust(Trust.USER, *_journal_levels(ctx, events, client),
                         *_variable_levels(snapshot, ctx.run_id))


def _journal_levels(ctx: ToolContext, events: Sequence[Event],
                    declared: Mapping[str, Trust]) -> Iterable[Trust]:
    waits: dict[str, WaitStarted] = {}
    for event in events:
        if isinstance(event, RunStarted) and isinstance(event.input, Mapping):
            for message in event.input.get("history") or ():
                if isinstance(message, Mapping) and message.get("trust") is not None:
                    yield _trust(message["trust"])
        pos = getattr(event, "pos", None)
        if isinstance(pos, int) and pos >= ctx.position:
            continue  # after the call (a sibling of the same response): not seen by it
        if isinstance(event, ToolResult):
            yield _trust(event.trust) if event.trust else Trust.EXTERNAL
        elif isinstance(event, StepRecorded):
            yield from _nested_levels(event.result)
        elif isinstance(event, WaitStarted):
            waits[event.key] = event
        elif isinstance(event, WaitResolved) and event.key.startswith(CLIENT_PREFIX):
            started = waits.get(event.key)
            if started is not None:
                # At the client tool's declared trust; a tool the agent no longer has: lowest.
                yield declared.get(str(started.data.get("tool", "")), Trust.EXTERNAL)


def _nested_levels(value: Any) -> Iterable[Trust]:
    """Every ``trust`` recorded inside a durable step's result (recalled facts carry theirs)."""
    if isinstance(value, Mapping):
        if isinstance(value.get("trust"), str):
            yield _trust(value["trust"])
        for item in value.values():
            yield from _nested_levels(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _nested_levels(item)


def _variable_levels(snapshot: _Snapshot, run_id: str) -> Iterable[Trust]:
    """The trust of each variable's value as of the turn's start (what its instructions and
    task were made from): a tool's or trigger's recorded trust, else the caller's (``user``)."""
    latest: dict[str, Trust] = {}
    for event in snapshot.events:
        if isinstance(event, TurnStarted) and event.run_id == run_id:
            break
        if isinstance(event, VariableSet):
            latest[event.name] = _trust(event.provenance.get("trust", Trust.USER.value))
    return latest.values()
