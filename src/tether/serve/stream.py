"""The event stream of one run: its journal as UI events, replayed then followed live.

:func:`ui_events` maps a run's journal (and the resource versions its turn wrote to the
session's stream) to the events a chat UI shows; :func:`event_stream` sends them as SSE frames:
first every event after the client's last seen id, read from the store, then new ones as they
are appended, until the run finishes (``turn.finished``) or waits for someone outside
(``run.waiting``); both are terminal and end the stream.

**One journal event, at most one frame.** A frame's ``id`` is the seq of the journal event it
shows, and a reconnect resumes after the last id the client saw; if one event were split into
several frames, a connection dropped between them would lose the rest (or, with the id on the
last only, repeat the first). So a model response is one frame: ``model.text`` when it has only
text, ``tool.requested`` when it asks for tools (with every call and any text beside them).

The UI event types and their data (deterministic JSON, keys sorted):

============================  ===============================================================
``turn.started``              ``run_started``: run id, turn number, agent, the input text
``model.text``                a usable model response without tool calls: ``text``
``tool.requested``            a usable response with calls: ``text``, ``calls`` (call id,
                              tool, arguments as the model wrote them)
``tool.started``              ``tool_intent`` (a write about to be sent): call id, tool, args,
                              effect, idempotency key, attempt
``tool.finished``             a call's outcome, by call id: ``status`` ``ok`` /
                              ``applied_unreadable`` / ``error`` (the tool failed, or the loop
                              refused the call: invalid arguments, unknown tool) / ``unknown``
                              (outcome not known yet; a later ``tool.finished`` of the same
                              call may settle it) / ``denied`` (by policy) / ``timed_out`` (a
                              client call nobody answered); the result or the error. A call
                              held for approval and denied ends with ``approval.decided``
``client_tool.requested``     a client tool's request (``client:*`` wait): execution id, call
                              id, tool, arguments, result schema, effect, idempotency key,
                              attempt, deadline
``approval.requested``        a call held for approval (``approval:*`` wait): step, tool,
                              args, role, why, deadline
``approval.decided``          its decision: ``decision`` approved / denied / expired, by,
                              role, note
``resource.updated``          a resource version this run wrote (from the session's stream;
                              no id): name, version, revision, content, provenance
``run.waiting``               derived, no id: the run is suspended; ``waiting_for`` lists the
                              open waits (client calls, approvals, other keys)
``turn.finished``             ``run_finished``: status, reason, answer, error
``model.delta``               not journaled, no id: ``position`` (the model call's) and
                              ``text``, from ``deltas`` (a :class:`DeltaFeed`); never sent
                              once that call's response is journaled, never replayed
============================  ===============================================================

A run is *waiting* (and ``run.waiting`` is sent) only once nobody executes it: its journal has
open waits and ends there, and no worker holds its lease. A run that requests two client calls
in one round journals them one after the other; the lease is released only after the last, so
the stream never ends between them.

``resource.updated`` has no id (it is not the run's journal): it is placed right after the
``tool.started`` of the call that wrote it, live as in a replay, and a stream resumed at or
before that place sends it again; clients tell versions apart by ``revision``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tether.clock import Clock
from tether.errors import UsageError
from tether.events import (
    Decision,
    Event,
    ModelCalled,
    ModelFailed,
    ResourceVersion,
    RunFinished,
    RunStarted,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.models.base import ModelResponse
from tether.runtime.approvals import APPROVAL_PREFIX
from tether.runtime.client_tools import CLIENT_PREFIX
from tether.serve.sse import comment, format_frame
from tether.sessions.history import usable
from tether.sessions.state import stream_id
from tether.store.base import Store

__all__ = ["TERMINAL", "DeltaFeed", "UiEvent", "event_stream", "format_event", "open_waits",
           "ui_events"]

#: Event types after which a stream ends.
TERMINAL = frozenset({"turn.finished", "run.waiting"})


@dataclass(frozen=True, slots=True)
class UiEvent:
    """One event of a run's stream.

    ``id`` is the seq of the journal event it shows (``None`` for events that are not the
    run's journal: resource updates, ``run.waiting``, token deltas). ``position`` is the run seq
    it is shown at: its own id, or for a resource update the seq of the write's intent.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    position: int = 0

    @property
    def terminal(self) -> bool:
        """Whether the stream ends after this event."""
        return self.type in TERMINAL


def format_event(event: UiEvent) -> str:
    """The SSE frame of ``event``: ``id:`` (journal-backed only), ``event:``, ``data:`` as
    JSON with sorted keys (non-finite numbers as the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``, which every JSON reader accepts)."""
    return format_frame(event.type, _json(event.data), id=event.id)


def _json(value: Any) -> str:
    return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- the mapping -----------------------------------------------------------------------------


def ui_events(events: Sequence[Event], *, run_id: str = "",
              session_events: Sequence[Event] = ()) -> list[UiEvent]:
    """The UI events a run's journal ``events`` imply, in order; pure, no I/O.

    ``session_events`` (the session's stream, for a turn) adds a ``resource.updated`` for each
    resource version run ``run_id`` wrote, placed right after the ``tool.started`` of the call
    that wrote it (or, when its intent is not among ``events``, before the last frame).
    """
    mapper = _Mapper(run_id)
    keyed: list[tuple[int, int, UiEvent]] = []
    for event in events:
        ui = mapper.journal(event)
        if ui is not None:
            keyed.append((ui.position, 0, ui))
    last = events[-1].seq if events else 0
    for event in session_events:
        if mapper.wrote(event):
            keyed.append(mapper.resource(event, last))
    # Stable: frames of one position keep the journal's and the session's own order.
    return [ui for *_, ui in sorted(keyed, key=lambda k: (k[0], k[1]))]


class _Mapper:
    """The state the mapping carries along a journal: the calls, the writes' intents."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.calls = _Calls()
        self.intents: dict[str, int] = {}

    def journal(self, event: Event) -> UiEvent | None:
        """The frame of one journal event (fed in order), if it has one."""
        if isinstance(event, ToolIntent):
            self.intents.setdefault(event.key, event.seq)
        ui = _map(event, self.run_id, self.calls)
        return None if ui is None else UiEvent(ui[0], ui[1], id=event.seq, position=event.seq)

    def wrote(self, event: Event) -> bool:
        """Whether ``event`` (of the session's stream) is a resource version this run wrote."""
        return bool(self.run_id) and isinstance(event, ResourceVersion) and \
            event.provenance.get("run_id") == self.run_id

    def anchor(self, event: ResourceVersion) -> int | None:
        """The seq of the intent of the call that wrote ``event``, if read."""
        return self.intents.get(str(event.provenance.get("key")))

    def resource(self, event: Event, last: int) -> tuple[int, int, UiEvent]:
        """The ``resource.updated`` of a version this run wrote, with its sort key: after the
        frame of its call's intent, or before the frame at ``last`` when the intent is not
        known."""
        assert isinstance(event, ResourceVersion)
        anchor = self.anchor(event)
        position, rank = (last, -1) if anchor is None else (anchor, 1)
        return position, rank, UiEvent("resource.updated", {
            "name": event.name, "version": event.version, "revision": event.seq,
            "content": event.content, "provenance": dict(event.provenance)},
            position=position)


class _Calls:
    """Which model call a tool event belongs to: the calls of the latest response, the one
    the policy ruled on last, and those finished."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.current: str | None = None
        self.done: set[str] = set()
        #: Client requests by wait key: (call id, tool).
        self.client: dict[str, tuple[str | None, str | None]] = {}

    def response(self, response: ModelResponse) -> None:
        self.calls = [(c.id, c.name) for c in response.tool_calls]
        self.current, self.done = None, set()

    def of(self, tool: str) -> str | None:
        names = dict(self.calls)
        if self.current is not None and names.get(self.current) == tool \
                and self.current not in self.done:
            return self.current
        return next((cid for cid, name in self.calls if name == tool and cid not in self.done),
                    None)

    def finish(self, call_id: str | None) -> None:
        if call_id is not None:
            self.done.add(call_id)
            if self.current == call_id:
                self.current = None


def _map(event: Event, run_id: str, calls: _Calls) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, RunStarted):
        return "turn.started", _started(event, run_id)
    if isinstance(event, ModelCalled):
        return _model(event, calls)
    if isinstance(event, Decision):
        return _decision(event, calls)
    if isinstance(event, ToolIntent):
        return "tool.started", {"call_id": calls.of(event.tool), "tool": event.tool,
                                "args": event.args, "effect": event.effect,
                                "idempotency_key": event.key, "attempt": event.attempt,
                                "compensates": event.compensates}
    if isinstance(event, ToolResult | ToolError | ToolAmbiguous):
        return "tool.finished", _finished(event, calls)
    if isinstance(event, WaitStarted):
        if event.key.startswith(CLIENT_PREFIX):
            call_id, tool = event.data.get("call_id"), event.data.get("tool")
            calls.client[event.key] = (None if call_id is None else str(call_id),
                                       None if tool is None else str(tool))
        return _wait(event)
    if isinstance(event, WaitResolved | WaitExpired):
        return _resolved(event, calls)
    if isinstance(event, RunFinished):
        answer = event.result.get("answer") if isinstance(event.result, dict) else None
        return "turn.finished", {"status": event.status.value, "reason": event.reason,
                                 "answer": answer, "error": event.error}
    return None


def _started(event: RunStarted, run_id: str) -> dict[str, Any]:
    value = event.input
    text = value if isinstance(value, str) else (
        value.get("text") if isinstance(value, dict) else None)
    # No session id: the store's (tenant-prefixed under tether serve) is not the one the
    # caller knows, and the caller named the session (or the run) to get this stream.
    return {"run_id": run_id or None, "turn": _turn_number(run_id), "agent": event.workflow,
            "input": text if isinstance(text, str) else None}


def _turn_number(run_id: str) -> int | None:
    head, sep, number = run_id.rpartition(":turn:")
    return int(number) if sep and head and number.isdigit() else None


def _model(event: ModelCalled, calls: _Calls) -> tuple[str, dict[str, Any]] | None:
    try:
        response = ModelResponse.model_validate(event.response)
    except ValidationError:
        return None
    if not usable(response):
        # The loop asked the model again; only the answer it used belongs to the turn.
        return None
    calls.response(response)
    if not response.tool_calls:
        return "model.text", {"text": response.text}
    return "tool.requested", {"text": response.text, "calls": [
        {"call_id": c.id, "tool": c.name, "arguments": c.parsed()}
        for c in response.tool_calls]}


def _decision(event: Decision, calls: _Calls) -> tuple[str, dict[str, Any]] | None:
    if event.name == "recover" and "call_id" in event.data:
        return _judged(event, calls)
    if event.name != "policy" or "call_id" not in event.data:
        return None
    call_id = str(event.data["call_id"])
    calls.current = call_id
    if event.data.get("verdict") != "deny":
        return None
    calls.finish(call_id)
    return "tool.finished", {"call_id": call_id, "tool": event.data.get("tool"),
                             "status": "denied", "reason": event.data.get("reason", ""),
                             "rule": event.data.get("rule")}


def _judged(event: Decision, calls: _Calls) -> tuple[str, dict[str, Any]] | None:
    """A failed call the loop judged: the error the model reads, unless a tool event already
    finished the call (a refreshed credential makes the call again: it is open once more)."""
    call_id = str(event.data["call_id"])
    if event.data.get("action") == "refresh_auth":
        calls.done.discard(call_id)
        calls.current = call_id
        return None
    if call_id in calls.done:
        return None
    calls.finish(call_id)
    return "tool.finished", {"call_id": call_id, "tool": event.data.get("tool"),
                             "status": "error", "failure": event.data.get("failure"),
                             "error": {"message": event.data.get("message", "")},
                             "action": event.data.get("action")}


def _finished(event: ToolResult | ToolError | ToolAmbiguous, calls: _Calls) -> dict[str, Any]:
    call_id = calls.of(event.tool)
    data: dict[str, Any] = {"call_id": call_id, "tool": event.tool}
    if isinstance(event, ToolResult):
        data |= {"status": "ok" if event.unreadable is None else "applied_unreadable",
                 "result": event.result, "source": event.source, "trust": event.trust,
                 "reconciled": event.reconciled}
        if event.unreadable is not None:
            data["unreadable"] = event.unreadable
    elif isinstance(event, ToolError):
        data |= {"status": "error", "failure": event.failure, "error": event.error}
    else:
        # Unknown outcome: a lookup or a retry may settle it later, under the same call.
        return data | {"status": "unknown", "reason": event.reason, "attempt": event.attempt}
    calls.finish(call_id)
    return data


def _wait(event: WaitStarted) -> tuple[str, dict[str, Any]] | None:
    data = event.data
    if event.key.startswith(CLIENT_PREFIX):
        return "client_tool.requested", {
            "execution_id": data.get("execution_id"), "call_id": data.get("call_id"),
            "tool": data.get("tool"), "arguments": data.get("arguments", {}),
            "result_schema": data.get("result_schema", {}), "effect": data.get("effect"),
            "idempotency_key": data.get("idempotency_key"), "attempt": data.get("attempt", 1),
            "deadline": event.deadline}
    if event.key.startswith(APPROVAL_PREFIX):
        return "approval.requested", {
            "step": event.pos, "tool": data.get("tool"), "args": data.get("args", {}),
            "role": data.get("role"), "why": data.get("reason", ""),
            "rule": data.get("rule"), "deadline": event.deadline}
    return None


def _resolved(event: WaitResolved | WaitExpired,
              calls: _Calls) -> tuple[str, dict[str, Any]] | None:
    if event.key.startswith(CLIENT_PREFIX):
        parts = event.key.split(":", 2)
        call_id, tool = calls.client.get(event.key, (parts[2] if len(parts) == 3 else None,
                                                     None))
        calls.finish(call_id)
        if isinstance(event, WaitExpired):
            return "tool.finished", {"call_id": call_id, "tool": tool, "status": "timed_out",
                                     "client": True}
        return "tool.finished", {"call_id": call_id, "tool": tool, "status": "ok",
                                 "result": event.value, "by": event.by, "client": True}
    if event.key.startswith(APPROVAL_PREFIX):
        step = _int(event.key.removeprefix(APPROVAL_PREFIX))
        if isinstance(event, WaitExpired):
            return "approval.decided", {"step": step, "decision": "expired", "by": None,
                                        "role": None, "note": ""}
        value = event.value if isinstance(event.value, dict) else {"approved": bool(event.value)}
        return "approval.decided", {
            "step": step, "decision": "approved" if value.get("approved") else "denied",
            "by": event.by, "role": value.get("role"),
            "note": value.get("note") or event.note}
    return None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def open_waits(events: Sequence[Event]) -> list[WaitStarted]:
    """The waits of a journal neither resolved nor expired, in the order they began."""
    closed = {e.key for e in events if isinstance(e, WaitResolved | WaitExpired)}
    seen: set[str] = set()
    found = []
    for event in events:
        if isinstance(event, WaitStarted) and event.key not in closed and event.key not in seen:
            seen.add(event.key)
            found.append(event)
    return found


def _waiting(events: Sequence[Event]) -> UiEvent:
    waits = []
    for wait in open_waits(events):
        kind = ("client_tool" if wait.key.startswith(CLIENT_PREFIX) else
                "approval" if wait.key.startswith(APPROVAL_PREFIX) else "signal")
        item: dict[str, Any] = {"key": wait.key, "kind": kind, "deadline": wait.deadline}
        if kind == "client_tool":
            item |= {"call_id": wait.data.get("call_id"), "tool": wait.data.get("tool")}
        elif kind == "approval":
            item |= {"step": wait.pos, "tool": wait.data.get("tool"),
                     "role": wait.data.get("role")}
        waits.append(item)
    last = events[-1].seq if events else 0
    return UiEvent("run.waiting", {"status": "waiting", "waiting_for": waits}, position=last)


# -- the stream ------------------------------------------------------------------------------


async def event_stream(
    store: Store,
    run_id: str,
    *,
    after: int = 0,
    wake: Callable[[], Awaitable[object]],
    keepalive_s: float,
    clock: Clock,
    poll_s: float = 0.5,
    deltas: AsyncIterator[UiEvent] | None = None,
    through_waits: bool = False,
    render: Callable[[UiEvent], UiEvent] | None = None,
) -> AsyncGenerator[str, None]:
    """SSE frames of run ``run_id``: the events with an id above ``after``, then live ones,
    until a terminal event (``through_waits``: until ``turn.finished`` only — each time the
    run waits, ``run.waiting`` is sent once and the stream goes on following it, so a client
    sees a decision or an answer made elsewhere when it is made, without asking again).
    ``render`` (optional) rewrites each event read from the store before it is sent
    (``tether serve`` words a finished turn's reason and error for the caller's tenant).

    The store is the truth: after every ``wake()`` (a hint that this process appended to the
    run) and at the latest every ``poll_s`` on ``clock``, the stream reads what follows its
    last seq, so events another process appends are seen too. ``wake()`` is called before
    each read and must listen from the moment it is called (return a future already
    registered, not a coroutine that registers when first scheduled), so no append between
    the read and the wait goes unheard. ``: keepalive`` comments are
    sent when nothing was sent for ``keepalive_s``. ``deltas`` (optional) yields ephemeral
    ``model.delta`` events, sent as they come, without an id; a :meth:`DeltaFeed.follow`
    subscription is closed when the stream ends, any other source is the caller's to close.
    A run not yet started (the server opened the stream before its first event) is waited
    for.
    """
    if not (keepalive_s > 0 and poll_s > 0):
        raise UsageError(f"an event stream needs a positive keepalive_s and poll_s, got "
                         f"keepalive_s={keepalive_s!r} poll_s={poll_s!r}")
    follower = _Follower(store, run_id, after, through_waits=through_waits, render=render)
    source = deltas
    last_sent = clock.now()
    pending: dict[str, asyncio.Future[Any]] = {}
    try:
        while True:
            # Interest is registered before the store is read: an append made after the read
            # (while the frames below are handed out, say) wakes the wait that follows, where
            # registering after the frames would miss it and leave the stream to the poll.
            if "wake" not in pending:
                pending["wake"] = asyncio.ensure_future(wake())
            frames, done = follower.poll()
            for frame in frames:
                yield frame
            if frames:
                last_sent = clock.now()
            if done:
                return
            idle = clock.now() - last_sent
            if idle >= keepalive_s:
                yield comment("keepalive")
                last_sent = clock.now()
                continue
            if "delta" not in pending and deltas is not None:
                pending["delta"] = asyncio.ensure_future(anext(deltas))
            pending["timer"] = asyncio.ensure_future(
                clock.sleep(min(poll_s, keepalive_s - idle)))
            await _first(pending)
            timer = pending.pop("timer")
            if not timer.done():
                timer.cancel()
            if "wake" in pending and pending["wake"].done():
                pending.pop("wake").result()
            delta = pending.get("delta")
            if delta is not None and delta.done():
                del pending["delta"]
                try:
                    event = delta.result()
                except StopAsyncIteration:
                    deltas = None
                else:
                    if not follower.stale(event):
                        yield format_event(UiEvent(event.type, event.data))
                        last_sent = clock.now()
    finally:
        # Nothing is awaited here: a stream dropped by its client is cancelled, and under a
        # cancel scope (Starlette's) every await in this block would be cancelled again.
        for task in pending.values():
            task.cancel()
        if isinstance(source, _DeltaSubscription):
            source.close()


async def _first(pending: dict[str, asyncio.Future[Any]]) -> None:
    """Until one of ``pending`` is done (the wake, the timer, the next delta).

    When the wake is a plain future (the server's: settled by the append itself), the stream
    awaits it alone and the timer and the delta settle it too: an append then wakes the
    stream in the event loop's next round. ``asyncio.wait`` over all three costs a round more
    (its callback, then the task), and under load every round waits behind every ready turn.
    """
    wake = pending.get("wake")
    others = [f for name, f in pending.items() if name != "wake"]
    if wake is None or isinstance(wake, asyncio.Task) or any(f.done() for f in others):
        await asyncio.wait(list(pending.values()), return_when=asyncio.FIRST_COMPLETED)
        return

    def nudge(_: asyncio.Future[Any]) -> None:
        if not wake.done():
            wake.set_result(None)

    for other in others:
        other.add_done_callback(nudge)
    try:
        await wake
    finally:
        for other in others:
            other.remove_done_callback(nudge)


class _Follower:
    """What a stream has read and sent of one run."""

    def __init__(self, store: Store, run_id: str, after: int, *,
                 through_waits: bool = False,
                 render: Callable[[UiEvent], UiEvent] | None = None) -> None:
        self.store, self.run_id = store, run_id
        #: How an event is shown to this stream's reader (the server's redaction), if not as is.
        self.render = render
        self.through_waits = through_waits
        #: The last seq at which ``run.waiting`` was sent (once per suspension).
        self.waiting_at = -1
        self.after = max(0, int(after))
        self.sent = self.after
        self.events: list[Event] = []
        self.session_seq = 0
        self.mapper = _Mapper(run_id)
        #: Resource versions of this run read but not sent yet (their call's intent unread).
        self.unplaced: list[ResourceVersion] = []
        #: The last position of a model call journaled (its deltas are stale).
        self.model_pos = -1

    def poll(self) -> tuple[list[str], bool]:
        """New frames since the last poll, and whether the stream is over."""
        new = self.store.read(self.run_id, after_seq=self.events[-1].seq if self.events else 0)
        self.events += new
        keyed: list[tuple[int, int, UiEvent]] = []
        for event in new:
            if isinstance(event, ModelCalled | ModelFailed):
                self.model_pos = max(self.model_pos, event.pos)
            ui = self.mapper.journal(event)
            if ui is not None and ui.id is not None and ui.id > self.sent:
                keyed.append((ui.position, 0, ui))
        started = self.events[0] if self.events else None
        if isinstance(started, RunStarted) and started.session_id:
            # Read after the run's events: a version written before any event just read is
            # in this read, so it is placed before the frames that follow it.
            for event in self.store.read(stream_id(started.session_id),
                                         after_seq=self.session_seq):
                self.session_seq = event.seq
                if self.mapper.wrote(event):
                    assert isinstance(event, ResourceVersion)
                    self.unplaced.append(event)
        finished = bool(self.events) and isinstance(self.events[-1], RunFinished)
        ending = finished or self._suspended()
        last = self.events[-1].seq if self.events else 0
        waiting = []
        for version in self.unplaced:
            # A version whose intent is not read yet waits for it (so the stream shows it
            # where a replay does), unless the run is over: then it goes before the end.
            if self.mapper.anchor(version) is None and not ending:
                waiting.append(version)
                continue
            position, rank, ui = self.mapper.resource(version, last)
            # Without an id: resent on a stream resumed at or before its place (the client
            # may have missed it); clients key it by name and version.
            if position >= self.after:
                keyed.append((position, rank, ui))
        self.unplaced = waiting
        frames: list[str] = []
        for _, _, ui in sorted(keyed, key=lambda k: (k[0], k[1])):
            if ui.id is not None:
                self.sent = ui.id
            frames.append(format_event(ui if self.render is None else self.render(ui)))
            if ui.type == "turn.finished":
                return frames, True
        if finished:
            return frames, True
        if ending and not self.through_waits:
            frames.append(format_event(_waiting(self.events)))
            return frames, True
        if ending and self.waiting_at != last:
            self.waiting_at = last
            frames.append(format_event(_waiting(self.events)))
        return frames, False

    def stale(self, delta: UiEvent) -> bool:
        """Whether ``delta`` belongs to a model call whose journal entry was already read (and
        sent, complete): showing its pieces after the whole would garble the text."""
        position = delta.data.get("position")
        return isinstance(position, int) and position <= self.model_pos

    def _suspended(self) -> bool:
        if not self.events or not open_waits(self.events):
            return False
        info = self.store.get_run(self.run_id)
        # Nobody executes it and nothing was appended since the read: the run waits.
        return info is not None and info.owner is None and info.last_seq == self.events[-1].seq


class DeltaFeed:
    """Fans a runtime's text deltas out to the streams of their runs, as ``model.delta``
    events (``position``: the model call's journal position; ``text``).

    Register it with ``runtime.add_delta_listener(feed)`` and pass ``feed.follow(run_id)`` as
    an :func:`event_stream`'s ``deltas``. It lives on the event loop that runs the turns
    (listeners are called from the run's own task). A stream that does not keep up loses
    deltas beyond ``limit`` rather than holding memory: they are hints, and the journaled
    response that follows them is the whole text.
    """

    def __init__(self, *, limit: int = 1000) -> None:
        self.limit = limit
        self._queues: dict[str, set[asyncio.Queue[UiEvent]]] = {}

    def __call__(self, run_id: str, position: int, text: str) -> None:
        for queue in self._queues.get(run_id, ()):
            if queue.qsize() < self.limit:
                queue.put_nowait(UiEvent("model.delta", {"position": position, "text": text}))

    def follow(self, run_id: str) -> _DeltaSubscription:
        """The deltas of ``run_id`` from now on (subscribed at once, not at the first read);
        the :func:`event_stream` given it closes it when it ends."""
        queue: asyncio.Queue[UiEvent] = asyncio.Queue()
        self._queues.setdefault(run_id, set()).add(queue)
        return _DeltaSubscription(self, run_id, queue)

    def _drop(self, run_id: str, queue: asyncio.Queue[UiEvent]) -> None:
        queues = self._queues.get(run_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[run_id]

    def followers(self, run_id: str) -> int:
        """How many streams follow ``run_id``'s deltas."""
        return len(self._queues.get(run_id, ()))


class _DeltaSubscription:
    """One stream's deltas of one run: an async iterator that never ends by itself."""

    def __init__(self, feed: DeltaFeed, run_id: str, queue: asyncio.Queue[UiEvent]) -> None:
        self._feed, self._run_id, self._queue = feed, run_id, queue

    def __aiter__(self) -> _DeltaSubscription:
        return self

    async def __anext__(self) -> UiEvent:
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving deltas (the stream that was given this does it when it ends)."""
        self._feed._drop(self._run_id, self._queue)

    async def aclose(self) -> None:
        """:meth:`close`, for code that closes async iterators."""
        self.close()
