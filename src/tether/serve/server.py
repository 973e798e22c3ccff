"""The server behind ``tether serve``: one Runtime, one Sessions, the agent files, the turns.

A :class:`Server` is everything the HTTP face (:mod:`tether.serve.app`) calls, as methods that
take the caller's :class:`~tether.serve.tenants.KeyHolder` and the public ids of its tenant:

- sessions are stored as ``{tenant}.{sid}`` and runs are checked to be the caller's turn runs
  before anything is read, so another tenant's resource is "not found", never "forbidden";
- **turns run as background tasks owned by the server**, not by the request: a client that
  drops the connection does not cancel its turn. Tasks of one session run one after another
  (a continue or an approval queues the session's resumption behind a turn still under way);
- a trigger answers with the run id of the turn it started as soon as that run's
  ``run_started`` is journaled (or with the error that refused it, before anything streams);
- :meth:`Server.start` finishes the turns a killed server left open (their runs are leased
  by the same worker name, so they are taken back at once) and records how they ended;
- :meth:`Server.tick` (every ``tick_s`` on the runtime's clock, from :meth:`Server.start` to
  :meth:`Server.stop`) fires the schedule triggers' due slots and resumes the turn runs the
  store's work queue says are due (a wait deadline passed, a wait resolved from elsewhere, a
  dead server's lease expired), bounded per tick, each as a task of its session;
- a webhook delivery (:meth:`Server.fire_webhook`) carries no API key: the trigger's HMAC
  secret authenticates the sender and the tenant is the one the path names;
- ``expected_revision`` is a compare-and-set on the session's stream, so it holds between
  servers sharing one store;
- :meth:`Server.wake` is the hint the event streams wait on: the runtime's listener wakes the
  streams of a run when this process appends to it; the stream re-reads the store either way,
  so events another process appends are seen within ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import math
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tether.clock import Clock, SystemClock, system_seed
from tether.errors import RunOwned, UsageError
from tether.events import Event, RunStarted, RunStatus, WaitExpired, WaitResolved, WaitStarted
from tether.runtime.runtime import Runtime
from tether.serve.redact import STORE, Redactor
from tether.serve.stream import DeltaFeed, UiEvent
from tether.serve.tenants import KeyHolder, KeyRing, public_id, session_of_run, stored_id
from tether.sessions.loader import AgentDefinition
from tether.sessions.session import Session, Sessions, TurnResult
from tether.sessions.state import SESSION_WORKFLOW, SessionStatus, stream_id, turn_run_id
from tether.sessions.triggers import Fired, due, fire, fire_due, fire_webhook
from tether.store.base import Store, WorkQueue, claimable

__all__ = ["Limits", "Refusal", "Server", "Started"]

log = logging.getLogger("tether.serve")
T = TypeVar("T")

#: How many runs a listing reads from the store (the store's listing has no pages yet).
_LISTED = 100_000
#: The trigger a chat message fires; an agent file that declares none still takes messages.
MESSAGE_TRIGGER = "user-message"
#: Where a trigger that is not a ``message`` is fired from, for the refusal of a request that
#: fires it by hand.
_KIND_ROUTE = {
    "webhook": "its sender POSTs signed deliveries to "
               "/v1/tenants/{tenant}/sessions/{sid}/webhooks/{trigger}",
    "schedule": "the server fires it on its schedule",
    "approval": "it fires when an approval of the session's turns is decided",
}


class Refusal(Exception):
    """A request the server refuses with an HTTP status (404, 403, 413, 422 …)."""

    def __init__(self, status: int, type: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.param = status, type, message, param


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits: a request beyond one is refused with a 4xx naming the limit."""

    body_bytes: int = 1_000_000
    history_messages: int = 500
    variable_bytes: int = 16_000
    variables: int = 64
    input_bytes: int = 64_000
    results: int = 64


@dataclass(frozen=True, slots=True)
class Started:
    """A turn a trigger started: its run, and its model's text deltas from its first event
    on (subscribed as the run started, so none is missed before the stream is made)."""

    run_id: str
    deltas: AsyncIterator[UiEvent]


@dataclass(slots=True)
class _Firing:
    """A trigger being fired by a background task: which turn run answers the request."""

    stored: str
    turns_before: int
    started: asyncio.Future[Started]


# The firing the current task works for: the runtime's listener runs in the task that appends,
# so it can tell which request a new turn run belongs to even when several fire at once.
_FIRING: contextvars.ContextVar[_Firing | None] = contextvars.ContextVar("_FIRING",
                                                                         default=None)


class Server:
    """The state of one ``tether serve`` process (see the module doc)."""

    def __init__(self, store: Store, definitions: Sequence[AgentDefinition], keys: KeyRing, *,
                 env: Any = None, clock: Clock | None = None, owner: str = "tether-serve",
                 limits: Limits | None = None, keepalive_s: float = 15.0,
                 poll_s: float = 0.25, webhook_environ: Mapping[str, str] | None = None,
                 tick_s: float | None = 1.0, tick_batch: int = 64) -> None:
        if tick_s is not None and not (math.isfinite(tick_s) and tick_s > 0):
            raise UsageError(f"tick_s={tick_s!r}: the timer loop's period must be a positive "
                             "number of seconds (or None for no loop)")
        if tick_batch < 1:
            raise UsageError(f"tick_batch={tick_batch!r}: at least one session per tick")
        #: The timer loop's period on the runtime's clock (None: :meth:`start` runs no loop)
        #: and how many sessions and waiting runs one tick looks at, at most.
        self.tick_s, self.tick_batch = tick_s, tick_batch
        self._timer: asyncio.Task[None] | None = None
        self._cursor = {"sessions": 0, "waits": 0}
        #: Sessions and runs a tick queued work for that has not ended yet (queued once).
        self._ticking: set[str] = set()
        #: Waiting run -> (last seq, earliest open wait deadline), read once per journal change
        #: (for a store that is not a work queue: see :meth:`_due_turns`).
        self._deadlines: dict[str, tuple[int, float | None]] = {}
        #: Due turn run -> the last seq at which a tick resumed it (not again until the run
        #: changes: a resumption that could not settle it is not retried hot).
        self._expired_at: dict[str, int] = {}
        self.keys, self.limits = keys, limits or Limits()
        #: Where webhook triggers' HMAC secrets are read (``os.environ`` by default).
        self.webhook_environ: Mapping[str, str] = (
            os.environ if webhook_environ is None else webhook_environ)
        self.keepalive_s, self.poll_s = keepalive_s, poll_s
        self.runtime = Runtime(store, clock=clock or SystemClock(), owner=owner)
        self.sessions = Sessions(self.runtime)
        self.definitions: dict[str, AgentDefinition] = {}
        for definition in definitions:
            self.sessions.add_definition(definition, env=env)
            self.definitions[definition.name] = definition
        #: Renders error messages for a tenant (the app's one error answer uses it).
        paths = _server_paths(store, self.definitions.values())
        keys_path = getattr(keys, "path", None)  # a KeyFile's; a KeyRing has none
        if isinstance(keys_path, os.PathLike | str):
            paths[os.fspath(keys_path)] = "the server's keys file"
        self.redactor = Redactor(paths=paths,
                                 tenants=lambda: {row["tenant"] for row in keys.rows()})
        self.runtime.add_listener(self._heard)
        #: Text deltas of streaming model calls, fanned out to the streams of their runs.
        self.deltas = DeltaFeed()
        self.runtime.add_delta_listener(self.deltas)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tails: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rng = random.Random(system_seed())

    @property
    def store(self) -> Store:
        return self.runtime.store

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Finish, in the background, every turn a previous server left open in a session of
        an agent this server serves; returns the stored ids of those sessions.

        Open turns are found from the sessions' own streams, not from the runs: a server
        killed after a turn started but before its run was created, or after its run finished
        but before the turn's ending was recorded, leaves an open turn whose run is not
        running, and it is finished too (a run that exists is resumed, never started twice).
        This reads every session's stream once at start."""
        resumed: list[str] = []
        for info in self.store.list_runs(limit=_LISTED):
            stored = _session_of_stream(info.run_id)
            if info.workflow != SESSION_WORKFLOW or stored is None:
                continue
            state = self.sessions.session(stored).state
            if state.pending is not None and state.agent in self.definitions:
                resumed.append(stored)
                self._after(stored, functools.partial(self._take_back, stored))
        if self.tick_s is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._timers(self.tick_s))
        return resumed

    async def _take_back(self, stored: str) -> TurnResult | None:
        """Resume the open turn of ``stored`` left by a previous server, unless another live
        server runs it (its lease is not this server's): that turn is left to it."""
        try:
            return await self.sessions.resume(stored)
        except RunOwned as exc:
            log.warning("session %s: turn run %s is run by worker %s (lease until %s), not by "
                        "this server (%s); left to it", stored, exc.run_id, exc.owner,
                        exc.expires_at, self.runtime.owner)
            return None

    async def stop(self) -> None:
        """Stop the timer loop and cancel the background tasks (their runs resume at the next
        start)."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.wait({self._timer})
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def idle(self) -> None:
        """Wait until no background task is left (tests, and a graceful shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # -- timers ---------------------------------------------------------------------------

    async def _timers(self, every_s: float) -> None:
        """Tick every ``every_s`` on the runtime's clock until cancelled (:meth:`stop`)."""
        while True:
            try:
                await self.tick()
            except Exception:  # a store hiccup: the next tick tries again
                log.exception("timer tick failed")
            await self.runtime.clock.sleep(every_s)

    async def tick(self) -> int:
        """One pass of the timer loop: queue (as session tasks, behind whatever the session
        is doing) the schedule slots that came due, and the resumption of turn runs that are
        due (:meth:`_due_turns`): a wait whose deadline passed (a client tool's ``timeout_s``,
        an approval's timeout: a wait is only settled when its run is resumed), a wait
        resolved from outside this server (``tether approve``, another server), a turn whose
        server died (its lease expired). At most ``tick_batch`` sessions and as many
        waiting runs are looked at per tick, round-robin, so one tick's work is bounded and
        every session is reached within a few ticks. A failure in one session is logged and
        the others go on. Returns how many tasks were queued."""
        queued = 0
        scheduled = {name: d for name, d in self.definitions.items()
                     if any(t.kind == "schedule" for t in d.spec.triggers.values())}
        if scheduled:
            streams = sorted(
                stored for info in self.store.list_runs(limit=_LISTED)
                if info.workflow == SESSION_WORKFLOW
                and (stored := _session_of_stream(info.run_id)) is not None)
            for stored in self._batch("sessions", streams):
                try:
                    queued += self._queue_due(stored, scheduled)
                except Exception as exc:  # one broken session does not stop the others
                    log.warning("session %s: schedule check failed: %r", stored, exc)
        due = self._due_turns()
        live = {run_id for run_id, _ in due}
        for gone in [r for r in self._expired_at if r not in live]:
            self._expired_at.pop(gone, None)
        for run_id, last_seq in self._batch("waits", due):
            try:
                queued += self._queue_turn(run_id, last_seq)
            except Exception as exc:
                log.warning("run %s: resuming it failed: %r", run_id, exc)
        return queued

    def _batch(self, kind: str, items: Sequence[T]) -> list[T]:
        """The next ``tick_batch`` of ``items`` after the cursor of ``kind`` (round-robin)."""
        if len(items) <= self.tick_batch:
            return list(items)
        start = self._cursor[kind] % len(items)
        self._cursor[kind] = start + self.tick_batch
        return [items[(start + i) % len(items)] for i in range(self.tick_batch)]

    def _queue_due(self, stored: str, scheduled: Mapping[str, AgentDefinition]) -> int:
        if stored in self._ticking:
            return 0
        session = self.sessions.session(stored)
        definition = scheduled.get(session.agent)
        # A session with an open turn fires its slots after that turn ends (fire_due would
        # refuse now): a waiting turn is the deadline check's, a running one is under way.
        if (definition is None or session.status is not SessionStatus.ACTIVE
                or session.state.pending is not None):
            return 0
        if not due(self.sessions, definition, stored):
            return 0
        self._ticking.add(stored)

        async def go() -> list[Fired]:
            try:
                return await fire_due(self.sessions, definition, stored)
            finally:
                self._ticking.discard(stored)

        self._after(stored, go)
        return 1

    def _due_turns(self) -> list[tuple[str, int]]:
        """Turn runs that need a worker now, as (run id, last seq): waiting ones whose wake
        time came (a deadline passed, or a resolution arrived, maybe from another process),
        and running ones nobody holds a live lease on (their server died).

        The store's work queue says first whether anything is due at all
        (:meth:`~tether.store.base.WorkQueue.next_wake`), so a tick with nothing due reads
        no listing of runs; only then are the waiting and running runs listed and sorted out
        by the queue's own rule (:func:`~tether.store.base.claimable`). A store that is not
        a work queue has its waiting runs' journals read for their deadlines instead."""
        now = self.runtime.clock.now()
        if isinstance(self.store, WorkQueue):
            wake = self.store.next_wake()
            if wake is None or wake > now:
                return []
            infos = self.store.list_runs(status=[RunStatus.WAITING, RunStatus.RUNNING],
                                         limit=_LISTED)
            return sorted((i.run_id, i.last_seq) for i in infos
                          if _session_of_turn(i.run_id) is not None and claimable(i, now=now))
        waiting = [i for i in self.store.list_runs(status=[RunStatus.WAITING], limit=_LISTED)
                   if _session_of_turn(i.run_id) is not None]
        for gone in [r for r in self._deadlines if r not in {i.run_id for i in waiting}]:
            del self._deadlines[gone]
        due: list[tuple[str, int]] = []
        for info in waiting:
            known = self._deadlines.get(info.run_id)
            if known is None or known[0] != info.last_seq:
                known = (info.last_seq, _earliest_deadline(self.store.read(info.run_id)))
                self._deadlines[info.run_id] = known
            if known[1] is not None and known[1] <= now:
                due.append((info.run_id, info.last_seq))
        return sorted(due)

    def _queue_turn(self, run_id: str, last_seq: int) -> int:
        """Queue the resumption of due turn run ``run_id`` as a task of its session, unless
        the session has work under way (that work, or the next tick, sees to it) or this
        run was already resumed at ``last_seq`` (a resumption that could not settle it is
        not retried hot)."""
        stored = _session_of_turn(run_id)
        if stored is None or run_id in self._ticking or stored in self._tails:
            return 0
        if self._expired_at.get(run_id) == last_seq:
            return 0
        if self.sessions.session(stored).agent not in self.definitions:
            return 0
        self._expired_at[run_id] = last_seq
        self._ticking.add(run_id)

        async def go() -> TurnResult | None:
            try:
                return await self._take_back(stored)
            finally:
                self._ticking.discard(run_id)

        self._after(stored, go)
        return 1

    # -- waking streams -------------------------------------------------------------------

    def _heard(self, run_id: str, event: Event) -> None:
        firing = _FIRING.get()
        if (firing is not None and isinstance(event, RunStarted) and not firing.started.done()
                and _turn_number(firing.stored, run_id) > firing.turns_before):
            firing.started.set_result(Started(run_id, self.deltas.follow(run_id)))
        self._wake_streams(run_id)

    def _wake_streams(self, run_id: str) -> None:
        """Settle the wakes of ``run_id``'s streams: it was appended to."""
        for waiter in self._waiters.pop(run_id, []):
            if waiter.done():
                continue
            loop = waiter.get_loop()
            if _running_loop() is loop:
                # The append's own task (the usual case): settled now, so the stream runs in
                # the loop's next round, not a round after a scheduled callback.
                _settle(waiter)
            else:
                loop.call_soon_threadsafe(_settle, waiter)

    def wake(self, run_id: str) -> asyncio.Future[None]:
        """A future settled when this process next appends to ``run_id``, listening from
        this call on (so an append between a stream's read and its wait is heard): a hint
        only, since the stream re-reads the store (the truth) at least every ``poll_s`` on
        the runtime's clock."""
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, []).append(heard)

        def forget(_: asyncio.Future[None]) -> None:
            waiters = self._waiters.get(run_id)
            if waiters is not None and heard in waiters:
                waiters.remove(heard)
                if not waiters:
                    del self._waiters[run_id]

        heard.add_done_callback(forget)
        return heard

    # -- background tasks -----------------------------------------------------------------

    def _after(self, stored: str, make: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """Run ``make()`` as a server task once the session's earlier tasks have ended."""
        before = self._tails.get(stored)

        async def run() -> T:
            if before is not None and not before.done():
                await asyncio.wait({before})
            return await make()

        task = asyncio.get_running_loop().create_task(run())
        self._tails[stored] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._ended(stored, t))
        return task

    def _ended(self, stored: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._tails.get(stored) is task:
            del self._tails[stored]
        if not task.cancelled() and task.exception() is not None:
            # A refused firing was answered to its request; anything else is for the log.
            log.info("session %s: background task ended with %r", stored, task.exception())

    # -- sessions -------------------------------------------------------------------------

    def create_session(self, who: KeyHolder, body: Mapping[str, Any]) -> Session:
        """Create a session of ``who``'s tenant (``body``: agent, session_id?, variables?,
        ttl_s?)."""
        agent = _field(body, "agent", str, required=True)
        if agent not in self.definitions:
            known = ", ".join(sorted(self.definitions)) or "none"
            raise Refusal(422, "unknown_agent", f"this server serves no agent {agent!r} "
                          f"(served: {known})", "agent")
        sid = _field(body, "session_id", str) or f"s_{self._rng.getrandbits(64):016x}"
        variables = self._variables(body)
        ttl_s = _ttl(body)
        stored = self._stored(who, sid)
        return self.sessions.create(stored, agent=agent, variables=variables, ttl_s=ttl_s)

    def session(self, who: KeyHolder, sid: str) -> Session:
        """The session ``sid`` of ``who``'s tenant; 404 when there is none."""
        stored = self._stored(who, sid)
        if self.store.get_run(stream_id(stored)) is None:
            raise Refusal(404, "not_found", f"no session {sid!r}", "session_id")
        return self.sessions.session(stored)

    def view(self, who: KeyHolder, session: Session) -> dict[str, Any]:
        """The session as the API shows it."""
        return {
            "id": public_id(who.tenant, session.id), "agent": session.agent,
            "status": session.status.value, "revision": session.revision,
            "variables": session.variables,
            "resources": {name: {"version": r.version, "content": r.content,
                                 "provenance": r.provenance}
                          for name, r in session.resources.items()},
            "turns": [{"number": t.number, "run_id": t.run_id, "trigger": t.trigger,
                       "status": t.status} for t in session.turns],
            "history": session.transcript(),
        }

    def restore(self, who: KeyHolder, sid: str, body: Mapping[str, Any]) -> Session:
        """Restore session ``sid`` from the client's copy of its history."""
        history: list[Any] = _field(body, "history", list, required=True) or []
        if len(history) > self.limits.history_messages:
            raise Refusal(413, "too_large", f"history has {len(history)} messages; at most "
                          f"{self.limits.history_messages} are restored", "history")
        agent = _field(body, "agent", str)
        if agent is not None and agent not in self.definitions:
            raise Refusal(422, "unknown_agent", f"this server serves no agent {agent!r}",
                          "agent")
        stored = self._stored(who, sid)
        if self.store.get_run(stream_id(stored)) is None:
            if agent is None:
                raise Refusal(404, "not_found", f"no session {sid!r}; restoring a session the "
                              "store lost needs the agent it talks to ('agent')", "session_id")
        else:
            session = self.sessions.session(stored)
            status = session.status
            if status is not SessionStatus.EXPIRED:
                raise Refusal(409, f"session_{status.value}", f"session {sid!r} is "
                              f"{status.value}; only an expired or lost session is restored")
            # The session's variables and lifetime are its own: taken only when a lost
            # session is created again, so here they would be dropped while the answer says
            # the restore succeeded.
            given = [name for name in ("variables", "ttl_s") if body.get(name) is not None]
            given += ["agent"] if agent not in (None, session.agent) else []
            if given:
                raise Refusal(422, "invalid_request", f"session {sid!r} is in the store "
                              f"(expired): it keeps its own agent, variables and ttl_s; send "
                              f"only 'history' (got {', '.join(given)})", given[0])
        return self.sessions.restore(stored, history, agent=agent,
                                     variables=self._variables(body), ttl_s=_ttl(body))

    # -- turns ----------------------------------------------------------------------------

    async def fire(self, who: KeyHolder, sid: str, trigger: str,
                   body: Mapping[str, Any]) -> Started | Session:
        """Fire ``trigger`` on session ``sid``: the turn it started (which goes on in the
        background), or the session when the trigger only set variables."""
        session = self.session(who, sid)
        stored = session.id
        payload = body.get("input", {})
        if not isinstance(payload, dict):
            raise Refusal(422, "invalid_request", f"'input' must be a JSON object (the "
                          f"trigger's input), got {type(payload).__name__}", "input")
        if _size(payload) > self.limits.input_bytes:
            raise Refusal(413, "too_large", f"the trigger's input is over "
                          f"{self.limits.input_bytes} bytes of JSON", "input")
        key = _field(body, "key", str)
        expected = _field(body, "expected_revision", int)
        definition = self.definitions.get(session.agent)
        if definition is None:
            raise Refusal(409, "agent_not_served", f"session {sid!r} talks to agent "
                          f"{session.agent!r}, which this server does not serve")
        started: asyncio.Future[Started] = asyncio.get_running_loop().create_future()

        async def go() -> TurnResult | Session:
            _FIRING.set(_Firing(stored, len(self.sessions.session(stored).turns), started))
            # expected_revision is a compare-and-set on the session's stream, checked on the
            # read the turn is appended at (in Sessions.turn and the triggers' one path), so
            # it holds across servers sharing one store, not only in this process.
            if trigger == MESSAGE_TRIGGER and trigger not in definition.spec.triggers:
                if not isinstance(payload.get("text"), str):
                    raise Refusal(422, "invalid_input", "a message needs input {\"text\": "
                                  "string}", "input")
                return await self.sessions.turn(stored, payload["text"],
                                                expected_revision=expected,
                                                principal=who.by, roles=sorted(who.roles))
            spec = definition.spec.triggers.get(trigger)
            if spec is None:
                raise Refusal(404, "not_found", f"agent {definition.name!r} has no trigger "
                              f"{trigger!r}", "trigger")
            if spec.kind != "message":
                raise Refusal(400, "invalid_request", f"trigger {trigger!r} of agent "
                              f"{definition.name!r} is kind {spec.kind}: "
                              + _KIND_ROUTE.get(spec.kind, "it is not fired by a request"),
                              "trigger")
            # The turn runs for the key's holder with the key's roles: the agent's policy
            # judges its calls by them (never by anything the request claims).
            return await fire(self.sessions, definition, stored, trigger, payload, key=key,
                              expected_revision=expected, principal=who.by,
                              roles=sorted(who.roles))

        done = await self._answer(self._after(stored, go), started)
        if isinstance(done, Started):
            return done
        if isinstance(done, TurnResult):
            run_id = turn_run_id(stored, done.turn)
            return Started(run_id, self.deltas.follow(run_id))
        return done

    async def fire_webhook(self, tenant: str, sid: str, trigger: str, body: bytes,
                           headers: Mapping[str, str]) -> Started | Session:
        """A webhook delivery for trigger ``trigger`` of session ``sid`` of ``tenant``: the
        turn it started or, for a repeated event id, the turn the first delivery started
        (its stream again, not a second turn); the session when the trigger only set
        variables.

        There is no API key: the trigger's HMAC secret is the sender's authentication, checked
        by :func:`tether.sessions.triggers.fire_webhook` before the body is parsed. So that an
        unsigned request learns nothing, a tenant, session or trigger that is not a webhook
        trigger of a served session is one answer (404).

        The signature covers the timestamp, event id, body and the target
        ``<tenant>/<sid>/<trigger>`` (see :func:`tether.sessions.triggers.sign_webhook`), so a
        captured delivery cannot be sent to another session, tenant or trigger. The secret is
        the agent file's, per trigger: whoever holds it may deliver to any session of that
        agent (give each sender its own agent file and secret where that matters)."""
        missing = Refusal(404, "not_found", f"no webhook trigger {trigger!r} on session "
                          f"{sid!r} of the tenant the path names", "trigger")
        try:
            stored = stored_id(tenant, sid)
        except UsageError as exc:
            raise missing from exc
        if self.store.get_run(stream_id(stored)) is None:
            raise missing
        agent = self.sessions.session(stored).agent
        definition = self.definitions.get(agent)
        spec = None if definition is None else definition.spec.triggers.get(trigger)
        if definition is None or spec is None or spec.kind != "webhook" or spec.webhook is None:
            raise missing
        if not self.webhook_environ.get(spec.webhook.secret_env):
            log.warning("webhook %s of agent %s: %s is not set in the server's environment; "
                        "deliveries are refused", trigger, agent, spec.webhook.secret_env)
            raise Refusal(503, "webhook_not_configured", f"this server holds no secret for "
                          f"webhook trigger {trigger!r}; its operator sets the environment "
                          "variable the agent file names and restarts it")
        started: asyncio.Future[Started] = asyncio.get_running_loop().create_future()

        async def go() -> Fired:
            _FIRING.set(_Firing(stored, len(self.sessions.session(stored).turns), started))
            return await fire_webhook(self.sessions, definition, stored, trigger, body,
                                      headers, environ=self.webhook_environ,
                                      target=f"{tenant}/{sid}/{trigger}")

        done = await self._answer(self._after(stored, go), started)
        if isinstance(done, Started):
            return done
        if done.turn is not None:
            run_id = turn_run_id(stored, done.turn)
            return Started(run_id, self.deltas.follow(run_id))
        return self.sessions.session(stored)

    async def _answer(self, task: asyncio.Task[T], started: asyncio.Future[Started],
                      ) -> Started | T:
        """The turn a firing task started as soon as its run started, else what the task
        came to (raising what refused it).

        The request waits on ``started`` alone, which the task's end settles too when no run
        started: a run's start wakes the request in the loop's next round. (Waiting on both
        with ``asyncio.wait`` costs a round more, and under load every round waits behind
        every other turn's step, which is where a served turn's first event lost its time.)"""

        def ended(done: asyncio.Task[T]) -> None:
            if not started.done():
                # Settled with the task itself: its result (or error) is read below.
                started.set_exception(_TaskEnded())

        task.add_done_callback(ended)
        try:
            return await started
        except _TaskEnded:
            return task.result()
        except asyncio.CancelledError:
            # The request went away (the turn goes on): no stream will read these deltas.
            if started.done() and not started.cancelled() and started.exception() is None:
                await _close(started.result().deltas)
            raise

    async def continue_execution(self, who: KeyHolder, run_id: str,
                                 body: Mapping[str, Any]) -> int:
        """Record client results for turn run ``run_id`` and resume its turn in the
        background; the run's last seq before the results (where its stream picks up)."""
        stored = self._run(who, run_id)
        results: dict[str, Any] = _field(body, "results", dict, required=True) or {}
        if len(results) > self.limits.results or _size(results) > self.limits.body_bytes:
            raise Refusal(413, "too_large", f"at most {self.limits.results} results",
                          "results")
        info = self.store.get_run(run_id)
        assert info is not None
        await self.runtime.continue_execution(run_id, results, by=who.by, resume=False)
        # The answers were appended by the runtime's resolve, which tells no listener: the
        # run's open streams (another tab following the wait) are woken here.
        self._wake_streams(run_id)
        self._after(stored, lambda: self.sessions.resume(stored))
        return info.last_seq

    def approvals(self, who: KeyHolder) -> list[dict[str, Any]]:
        """Pending approvals of ``who``'s tenant."""
        return [a.as_data() for a in self.runtime.pending_approvals()
                if session_of_run(who.tenant, a.run_id) is not None]

    def decide(self, who: KeyHolder, run_id: str, body: Mapping[str, Any], *,
               approve: bool) -> dict[str, Any]:
        """Approve or deny the held call of ``run_id`` (``body``: note?, step?); the role is
        the key's, the decider its principal. The turn resumes in the background."""
        stored = self._run(who, run_id)
        step = _field(body, "step", int)
        note = _field(body, "note", str) or ""
        held = [a for a in self.runtime.pending_approvals(run_id)
                if step is None or a.step == step]
        if not held:
            raise Refusal(404, "not_found", f"run {run_id!r} has no pending approval"
                          + ("" if step is None else f" at step {step}"), "run_id")
        needed = held[0].role
        if needed is not None and needed not in who.roles:
            raise Refusal(403, "forbidden", f"deciding this approval needs role {needed!r}; "
                          f"this key holds {sorted(who.roles) or 'none'}")
        decide = self.runtime.approve if approve else self.runtime.deny
        decided = decide(run_id, by=who.by, role=needed, note=note, step=held[0].step)
        self._wake_streams(run_id)  # as for a continue: the decision told no listener
        self._after(stored, lambda: self.sessions.resume(stored))
        return {**decided.as_data(), "decision": "approved" if approve else "denied",
                "by": who.by}

    def runs(self, who: KeyHolder) -> list[dict[str, Any]]:
        """The tenant's turn runs, oldest first."""
        return [{"run_id": i.run_id, "status": i.status.value, "last_seq": i.last_seq,
                 "created_at": i.created_at, "updated_at": i.updated_at}
                for i in self.store.list_runs(limit=_LISTED)
                if session_of_run(who.tenant, i.run_id)]

    def run_events(self, who: KeyHolder, run_id: str) -> list[dict[str, Any]]:
        """The journal of the tenant's run ``run_id``."""
        self._run(who, run_id)
        return [e.model_dump(mode="json") for e in self.store.read(run_id)]

    def own_run(self, who: KeyHolder, run_id: str) -> None:
        """404 unless ``run_id`` is an existing turn run of ``who``'s tenant."""
        self._run(who, run_id)

    # -- plumbing -------------------------------------------------------------------------

    def _stored(self, who: KeyHolder, sid: str) -> str:
        try:
            return stored_id(who.tenant, sid)
        except UsageError as exc:
            # Not echoed: a dotted id reads like another tenant's stored one.
            raise Refusal(422, "invalid_session_id", "a session id is 1 to 128 characters of "
                          "letters, digits, '_' and '-'", "session_id") from exc

    def _run(self, who: KeyHolder, run_id: str) -> str:
        # The tenant is checked on the id alone, before anything is read.
        stored = session_of_run(who.tenant, run_id)
        if stored is None or self.store.get_run(run_id) is None:
            raise Refusal(404, "not_found", f"no execution {run_id!r}", "run_id")
        return stored

    def _variables(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        variables = _field(body, "variables", dict)
        if variables is None:
            return None
        if len(variables) > self.limits.variables:
            raise Refusal(413, "too_large", f"at most {self.limits.variables} variables",
                          "variables")
        for name, value in variables.items():
            if _size(value) > self.limits.variable_bytes:
                raise Refusal(413, "too_large", f"variable {name!r} is over "
                              f"{self.limits.variable_bytes} bytes of JSON", "variables")
        return variables


def _server_paths(store: Store, definitions: Iterable[AgentDefinition]) -> dict[str, str]:
    """The server's own paths and what a caller is told instead (see :mod:`.redact`)."""
    paths: dict[str, str] = {}
    where = getattr(store, "path", None)
    if isinstance(where, str):
        paths[where] = STORE
    for definition in definitions:
        paths[definition.source] = f"agent {definition.name!r}"
        if definition.base_dir is not None:
            paths[str(definition.base_dir)] = f"agent {definition.name!r}'s folder"
    return paths


class _TaskEnded(Exception):
    """A firing task ended without starting a run (see :meth:`Server._answer`)."""


async def _close(deltas: AsyncIterator[UiEvent]) -> None:
    close = getattr(deltas, "aclose", None)
    if close is not None:
        await close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _turn_number(stored: str, run_id: str) -> int:
    prefix = f"{stream_id(stored)}:turn:"
    tail = run_id[len(prefix):] if run_id.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else 0


def _session_of_turn(run_id: str) -> str | None:
    """The session id of a turn run id (``session:<id>:turn:<n>``)."""
    prefix = stream_id("")
    head, sep, number = run_id.rpartition(":turn:")
    if not sep or not head.startswith(prefix) or not number.isdigit():
        return None
    return head[len(prefix):] or None


def _earliest_deadline(events: Sequence[Event]) -> float | None:
    """The earliest deadline of a journal's waits still open (None: no open wait has one)."""
    open_waits: dict[str, float | None] = {}
    for event in events:
        if isinstance(event, WaitStarted):
            open_waits[event.key] = event.deadline
        elif isinstance(event, WaitResolved | WaitExpired):
            open_waits.pop(event.key, None)
    deadlines = [d for d in open_waits.values() if d is not None]
    return min(deadlines) if deadlines else None


def _session_of_stream(run_id: str) -> str | None:
    """The session id of a session's stream id (``session:<id>``, no turn suffix)."""
    prefix = stream_id("")
    if not run_id.startswith(prefix) or ":turn:" in run_id:
        return None
    return run_id[len(prefix):] or None


def _size(value: Any) -> int:
    return len(json.dumps(value, default=str))


def _field(body: Mapping[str, Any], name: str, kind: type[T], *,
           required: bool = False) -> T | None:
    value = body.get(name)
    if value is None:
        if required:
            raise Refusal(422, "invalid_request", f"{name!r} is required", name)
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Refusal(422, "invalid_request", f"{name!r} must be a {kind.__name__}, got "
                      f"{type(value).__name__}", name)
    return value


def _ttl(body: Mapping[str, Any]) -> float | None:
    ttl = body.get("ttl_s")
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < 1e9:
        raise Refusal(422, "invalid_request", "'ttl_s' must be a positive number of seconds",
                      "ttl_s")
    return float(ttl)
