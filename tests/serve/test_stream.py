"""The SSE stream of one run: journal events to UI events, replay then live, exactly once."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import Agent, ModelRequest, ModelResponse, Runtime, ToolCall, tool
from tether.clock import VirtualClock
from tether.errors import UsageError
from tether.events import (
    Decision,
    Event,
    ModelCalled,
    ModelFailed,
    ResourceVersion,
    RunFinished,
    RunStarted,
    RunStatus,
    StepRecorded,
    ToolAmbiguous,
    ToolError,
    ToolIntent,
    ToolResult,
    WaitExpired,
    WaitResolved,
    WaitStarted,
)
from tether.models.scripted import ScriptedModel, call, reply
from tether.policy import Policy, argument_limit
from tether.runtime.client_tools import client_tool
from tether.serve.sse import SseFrame, comment, format_frame, parse_frames
from tether.serve.stream import DeltaFeed, UiEvent, event_stream, format_event, ui_events
from tether.sessions import Sessions
from tether.sessions.tools import session_tools
from tether.store.base import Lease, RunInfo
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

RUN = "session:t.s:turn:1"


class OrderRef(BaseModel):
    order_id: str


class Question(BaseModel):
    question: str


class Answer(BaseModel):
    confirmed: bool


class Pay(BaseModel):
    amount: int


def _agent() -> Agent:
    @tool
    def lookup(ctx: Any, args: OrderRef) -> dict[str, Any]:
        """Look an order up."""
        return {"order_id": args.order_id, "amount": 1200}

    @tool(effect="idempotent")
    def payout(ctx: Any, args: Pay) -> dict[str, Any]:
        """Pay out."""
        return {"paid": args.amount}

    confirm = client_tool("confirm", args=Question, result=Answer)

    def script(request: ModelRequest) -> ModelResponse:
        answered = sum(1 for m in request.messages if m.role == "tool")
        if answered == 0:
            return ModelResponse(text="let me look", tool_calls=(
                ToolCall(id="c1", name="lookup", arguments='{"order_id": "o1"}'),))
        if answered == 1:
            return call("confirm", {"question": "ok?"}, call_id="c2")
        if answered == 2:
            return call("update_resource", {"name": "notes", "content": "hi"}, call_id="c3")
        if answered == 3:
            return call("payout", {"amount": 5000}, call_id="c4")
        return reply("done")

    return Agent(name="a", model=ScriptedModel(script),
                 tools=[lookup, confirm, payout, *session_tools(resources=["notes"])],
                 policy=Policy.of(argument_limit("payout", "amount", 100, role="supervisor")))


def _turn() -> tuple[Sessions, str]:
    """A finished turn that used a server tool, a client tool, a resource and an approval."""
    agent = _agent()
    sessions = Sessions(Runtime(clock=VirtualClock(), seed=1), agents=[agent])
    sessions.create("t.s", agent=agent)
    first = asyncio.run(sessions.turn("t.s", "go"))
    asyncio.run(sessions.runtime.continue_execution(first.run.run_id, {"c2": {"confirmed": True}}))
    held = asyncio.run(sessions.resume("t.s"))
    assert held is not None and held.run.waiting_for is not None
    sessions.runtime.approve(held.run.run_id, by="sam", role="supervisor")
    done = asyncio.run(sessions.resume("t.s"))
    assert done is not None and done.run.status is RunStatus.COMPLETED
    return sessions, done.run.run_id


async def _never() -> None:
    await asyncio.Event().wait()


def _collect(store: Any, run_id: str, *, after: int = 0, limit: int = 1000,
             keepalive_s: float = 15.0, clock: VirtualClock | None = None) -> list[SseFrame]:
    """The frames (comments included) of one stream, up to ``limit``."""
    async def go() -> list[str]:
        out: list[str] = []
        stream = event_stream(store, run_id, after=after, wake=_never, keepalive_s=keepalive_s,
                              clock=clock or VirtualClock(), poll_s=1.0)
        async for frame in stream:
            out.append(frame)
            if len(out) >= limit:
                break
        await stream.aclose()
        return out

    return list(parse_frames(asyncio.run(go()), comments=True))


def test_turn_maps_every_event_kind() -> None:
    """A turn with a server tool, a client tool, a resource write and an approval streams each
    as its UI event, with the journal seq as id and the resource update without one."""
    sessions, run_id = _turn()
    frames = _collect(sessions.runtime.store, run_id)
    assert [f.event for f in frames] == [
        "turn.started", "tool.requested", "tool.finished",
        "tool.requested", "client_tool.requested", "tool.finished",
        "tool.requested", "tool.started", "resource.updated", "tool.finished",
        "tool.requested", "approval.requested", "approval.decided", "tool.started",
        "tool.finished", "model.text", "turn.finished"]
    ids = [int(f.id) for f in frames if f.id is not None]
    assert ids == sorted(set(ids))
    assert [f.id for f in frames if f.event == "resource.updated"] == [None]
    data = [json.loads(f.data) for f in frames]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for frame, item in zip(frames, data, strict=True):
        by_type.setdefault(frame.event, []).append(item)
    # The store's session id ("t.s": tenant-prefixed under tether serve) is not shown.
    assert by_type["turn.started"][0] == {"run_id": run_id, "turn": 1, "agent": "a",
                                          "input": "go"}
    assert by_type["tool.requested"][0]["text"] == "let me look"
    assert [c["call_id"] for r in by_type["tool.requested"] for c in r["calls"]] == \
        ["c1", "c2", "c3", "c4"]
    assert [(f["call_id"], f["tool"], f["status"]) for f in by_type["tool.finished"]] == [
        ("c1", "lookup", "ok"), ("c2", "confirm", "ok"), ("c3", "update_resource", "ok"),
        ("c4", "payout", "ok")]
    client = by_type["client_tool.requested"][0]
    assert (client["execution_id"], client["call_id"], client["tool"], client["arguments"]) == \
        (run_id, "c2", "confirm", {"question": "ok?"})
    assert client["result_schema"]["required"] == ["confirmed"]
    approval = by_type["approval.requested"][0]
    assert (approval["tool"], approval["args"], approval["role"]) == \
        ("payout", {"amount": 5000}, "supervisor")
    assert "above the limit" in approval["why"]
    assert by_type["approval.decided"][0] | {"step": 0} == {
        "step": 0, "decision": "approved", "by": "sam", "role": "supervisor", "note": ""}
    resource = by_type["resource.updated"][0]
    assert (resource["name"], resource["version"], resource["content"]) == ("notes", 1, "hi")
    assert resource["revision"] > 0
    assert by_type["turn.finished"][0]["answer"] == "done"
    assert by_type["turn.finished"][0]["status"] == "completed"


def test_waiting_turn_ends_with_run_waiting() -> None:
    """A turn suspended on a client call streams the request, then run.waiting, and ends."""
    agent = _agent()
    sessions = Sessions(Runtime(clock=VirtualClock(), seed=1), agents=[agent])
    sessions.create("t.s", agent=agent)
    waiting = asyncio.run(sessions.turn("t.s", "go"))
    frames = _collect(sessions.runtime.store, waiting.run.run_id)
    assert [f.event for f in frames][-2:] == ["client_tool.requested", "run.waiting"]
    assert frames[-1].id is None
    assert [w["call_id"] for w in json.loads(frames[-1].data)["waiting_for"]] == ["c2"]


# -- synthetic journals -----------------------------------------------------------------------

TURN, SESSION = "session:x:turn:1", "session:x"


class _Journal:
    """A turn's run journal and the session stream it wrote to, built from a list of kinds, and
    the order the writes happened in (``(stream, event)``)."""

    def __init__(self, kinds: list[str], *, end: str) -> None:
        self.run: list[Event] = []
        self.session: list[Event] = [RunStarted(seq=1, at=0.0, workflow="tether.session",
                                                seed=0)]
        self.writes: list[tuple[str, Event]] = []
        self.pos = 0
        self._add(RunStarted(seq=1, at=0.0, workflow="a", input={"text": "go"}, seed=1,
                             session_id="x"))
        for kind in kinds:
            getattr(self, f"_{kind}")()
        if end == "finished":
            self._add(RunFinished(seq=self._seq(), at=0.0, status=RunStatus.COMPLETED,
                                  result={"answer": "done"}))
        else:
            pos = self._pos()
            self._add(WaitStarted(seq=self._seq(), at=0.0, pos=pos, key=f"client:{pos}:z",
                                  data={"call_id": "z", "tool": "ask"}))

    def _seq(self) -> int:
        return len(self.run) + 1

    def _pos(self) -> int:
        self.pos += 1
        return self.pos

    def _add(self, event: Event) -> None:
        self.run.append(event)
        self.writes.append(("run", event))

    def _model(self, response: dict[str, Any]) -> None:
        self._add(ModelCalled(seq=self._seq(), at=0.0, pos=self._pos(), model="m",
                              request_digest="d", response=response))

    def _text(self) -> None:
        self._model({"text": f"answer {self._seq()}"})

    def _call(self) -> None:
        seq = self._seq()
        self._model({"text": "", "tool_calls": [
            {"id": f"k{seq}", "name": "t", "arguments": "{}"},
            {"id": f"j{seq}", "name": "t", "arguments": "{}"}]})

    def _intent(self) -> None:
        pos = self._pos()
        self._add(ToolIntent(seq=self._seq(), at=0.0, pos=pos, tool="t", effect="idempotent",
                             key=f"{TURN}:{pos}", args={}))

    def _result(self) -> None:
        self._add(ToolResult(seq=self._seq(), at=0.0, pos=self._pos(), tool="t",
                             result={"n": self._seq()}))

    def _step(self) -> None:
        self._add(StepRecorded(seq=self._seq(), at=0.0, pos=self._pos(), call="now",
                               name="now", result=0.0))

    def _approval(self) -> None:
        pos = self._pos()
        self._add(WaitStarted(seq=self._seq(), at=0.0, pos=pos, key=f"approval:{pos}",
                              data={"tool": "t", "role": "r", "reason": "why"}))
        self._add(WaitResolved(seq=self._seq(), at=0.0, key=f"approval:{pos}",
                               value={"approved": True}, by="sam"))

    def _client(self) -> None:
        pos = self._pos()
        self._add(WaitStarted(seq=self._seq(), at=0.0, pos=pos, key=f"client:{pos}:q{pos}",
                              data={"call_id": f"q{pos}", "tool": "ask"}))
        self._add(WaitResolved(seq=self._seq(), at=0.0, key=f"client:{pos}:q{pos}",
                               value="yes", by="client"))

    def _resource(self) -> None:
        pos = self._pos()
        self._add(ToolIntent(seq=self._seq(), at=0.0, pos=pos, tool="update_resource",
                             effect="idempotent", key=f"{TURN}:{pos}", args={"name": "doc"}))
        version = ResourceVersion(seq=len(self.session) + 1, at=0.0, name="doc",
                                  version=len(self.session), content={"v": pos},
                                  provenance={"run_id": TURN, "key": f"{TURN}:{pos}"})
        self.session.append(version)
        self.writes.append(("session", version))
        self._add(ToolResult(seq=self._seq(), at=0.0, pos=pos, tool="update_resource",
                             result={"name": "doc"}))

    def _invalid(self) -> None:
        seq = self._seq()
        self._model({"text": "", "tool_calls": [{"id": f"x{seq}", "name": "nope",
                                                 "arguments": "{}"}]})
        self._add(Decision(seq=self._seq(), at=0.0, pos=self._pos(), name="recover",
                           data={"call_id": f"x{seq}", "tool": "nope", "action": "observe",
                                 "failure": "invalid_tool_call", "message": "no such tool"}))

    def expected(self) -> list[UiEvent]:
        return ui_events(self.run, run_id=TURN, session_events=self.session)


def _journal_backed(events: list[UiEvent]) -> list[tuple[int, str]]:
    return [(u.id, u.type) for u in events if u.id is not None]


_KINDS = st.sampled_from(["text", "call", "intent", "result", "step", "approval", "client",
                          "resource", "invalid"])
_ENDS = st.sampled_from(["finished", "waiting"])


def _terminal(end: str) -> str:
    return "turn.finished" if end == "finished" else "run.waiting"


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(_KINDS, max_size=12), end=_ENDS,
       drops=st.lists(st.integers(min_value=0, max_value=6), max_size=8))
def test_resumed_streams_deliver_every_event_once(kinds: list[str], end: str,
                                                  drops: list[int]) -> None:
    """For any journal and any points where the connection drops, the streams resumed at each
    client-seen last id give every journal-backed event exactly once, in order, every resource
    update at least once, and end with the terminal event."""
    journal = _Journal(kinds, end=end)
    store = MemoryStore()
    store.append(TURN, journal.run, expected_last_seq=0)
    store.append(SESSION, journal.session, expected_last_seq=0)
    seen: list[tuple[int, str]] = []
    revisions: set[int] = set()
    last, ended = 0, ""
    for reads in [*drops, None]:
        frames = [f for f in _collect(store, TURN, after=last) if f.comment is None]
        frames = frames if reads is None else frames[:reads]
        for frame in frames:
            if frame.id is not None:
                seen.append((int(frame.id), frame.event))
            if frame.event == "resource.updated":
                revisions.add(json.loads(frame.data)["revision"])
            last = int(frame.last_id) if frame.last_id else last
        if frames and frames[-1].event in ("turn.finished", "run.waiting"):
            ended = frames[-1].event
            break
    expected = journal.expected()
    assert seen == _journal_backed(expected)
    assert revisions == {u.data["revision"] for u in expected if u.type == "resource.updated"}
    assert ended == _terminal(end)


class _Interleaving:
    """A store handle on which, before each read, another writer lands its next writes
    (``sizes`` cycled: how many each time), then releases the run."""

    def __init__(self, inner: MemoryStore, writes: list[tuple[str, Event]],
                 sizes: list[int]) -> None:
        self.inner, self.writes, self.sizes, self.calls = inner, writes, sizes, 0
        self.lease: Lease | None = inner.acquire(TURN, "worker", now=0.0, ttl_s=1e12)

    def done(self) -> bool:
        return self.lease is None

    def _land(self) -> None:
        count = self.sizes[self.calls % len(self.sizes)]
        self.calls += 1
        for stream, event in self.writes[:count]:
            target = TURN if stream == "run" else SESSION
            self.inner.append(target, [event], expected_last_seq=len(self.inner.read(target)),
                              lease=self.lease if stream == "run" else None)
        self.writes = self.writes[count:]
        if not self.writes and self.lease is not None:
            self.inner.release(self.lease)
            self.lease = None

    def read(self, run_id: str, *, after_seq: int = 0) -> list[Event]:
        self._land()
        return self.inner.read(run_id, after_seq=after_seq)

    def get_run(self, run_id: str) -> RunInfo | None:
        self._land()
        return self.inner.get_run(run_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(_KINDS, max_size=10), end=_ENDS,
       batches=st.lists(st.integers(min_value=0, max_value=3), max_size=10))
def test_live_stream_sends_what_a_replay_sends(kinds: list[str], end: str,
                                               batches: list[int]) -> None:
    """Followed live while the writes land at any points between the stream's store reads
    (run events, resource versions in the session stream, the worker letting go of a waiting
    run), the stream sends exactly the frames a replay of the finished journal sends, in the
    same order, then the terminal event."""
    journal = _Journal(kinds, end=end)
    inner = MemoryStore()
    inner.append(TURN, journal.run[:1], expected_last_seq=0)
    inner.append(SESSION, journal.session[:1], expected_last_seq=0)
    store = _Interleaving(inner, journal.writes[1:], [*batches, 1])
    idle = 0

    async def wake() -> None:
        nonlocal idle
        idle = idle + 1 if store.done() else 0
        if idle > 3:
            raise AssertionError("the stream did not end once everything was written")

    async def go() -> list[str]:
        stream = event_stream(store, TURN, wake=wake, keepalive_s=1e9,
                              clock=VirtualClock(start=0.0), poll_s=1e6)
        return [frame async for frame in stream]

    frames = asyncio.run(go())
    expected = [format_event(u) for u in journal.expected()]
    assert frames[:len(expected)] == expected
    assert [f.event for f in parse_frames(frames[len(expected):])] == \
        ([] if end == "finished" else ["run.waiting"])


def test_live_stream_sees_events_another_handle_appends(tmp_path: Path) -> None:
    """A stream on one SQLite connection follows events appended by a second connection to the
    same file (no wake: the stream polls on its clock) and ends at turn.finished."""
    path = tmp_path / "runs.db"
    reader, writer = SQLiteStore(path), SQLiteStore(path)
    events = _Journal(["text", "intent", "result", "text"], end="finished").run
    writer.append("r", events[:1], expected_last_seq=0)
    writer.acquire("r", "worker", now=0.0, ttl_s=1e12)
    lease = writer.get_run("r").lease  # type: ignore[union-attr]

    async def go() -> list[str]:
        out: list[str] = []
        clock = VirtualClock()
        stream = event_stream(reader, "r", wake=_never, keepalive_s=60.0, clock=clock,
                              poll_s=1.0)
        async for frame in stream:
            out.append(frame)
            seq = len([f for f in out if f.startswith("id:")])
            if seq < len(events):
                writer.append("r", [events[seq]], expected_last_seq=seq, lease=lease)
        return out

    frames = list(parse_frames(asyncio.run(go())))
    assert [int(f.id) for f in frames if f.id is not None] == \
        [u.id for u in ui_events(events) if u.id is not None]
    assert frames[-1].event == "turn.finished"
    reader.close()
    writer.close()


def test_keepalives_while_idle_and_no_end_while_a_worker_holds_the_run() -> None:
    """While a worker holds the run and nothing is appended, the stream sends ': keepalive'
    every keepalive_s of the virtual clock and does not end, even with a wait open (a second
    client call of the round may still be requested)."""
    store = MemoryStore()
    events = _Journal([], end="waiting").run
    store.append("r", events, expected_last_seq=0)
    store.acquire("r", "worker", now=0.0, ttl_s=1e12)
    clock = VirtualClock(start=0.0)
    frames = _collect(store, "r", limit=6, keepalive_s=10.0, clock=clock)
    assert [f.event for f in frames[:2]] == ["turn.started", "client_tool.requested"]
    assert [f.comment for f in frames[2:]] == ["keepalive"] * 4
    assert clock.now() >= 40.0


def test_stream_ends_with_run_waiting_once_the_worker_lets_go() -> None:
    """Two client calls of one round: the stream does not end after the first request while
    the worker holds the run; once it releases the run, the second request and run.waiting
    follow and the stream ends."""
    store = MemoryStore()
    events = _Journal([], end="waiting").run
    store.append("r", events, expected_last_seq=0)
    lease = store.acquire("r", "worker", now=0.0, ttl_s=1e12)

    async def go() -> list[str]:
        out: list[str] = []
        stream = event_stream(store, "r", wake=_never, keepalive_s=5.0,
                              clock=VirtualClock(start=0.0), poll_s=1.0)
        async for frame in stream:
            out.append(frame)
            if frame.startswith(":"):
                store.append("r", [WaitStarted(seq=3, at=0.0, pos=9, key="client:9:y",
                                               data={"call_id": "y", "tool": "ask"})],
                             expected_last_seq=2, lease=lease)
                store.release(lease)
        return out

    frames = list(parse_frames(asyncio.run(go()), comments=True))
    assert [f.event or f.comment for f in frames] == [
        "turn.started", "client_tool.requested", "keepalive", "client_tool.requested",
        "run.waiting"]


def test_deltas_pass_through_without_id() -> None:
    """Token deltas from the optional source are sent as they come, with no id, between the
    journal's frames."""
    store = MemoryStore()
    events = _Journal([], end="finished").run
    store.append("r", events[:1], expected_last_seq=0)
    lease = store.acquire("r", "worker", now=0.0, ttl_s=1e12)

    async def deltas() -> AsyncIterator[UiEvent]:
        for piece in ("he", "llo"):
            yield UiEvent("model.delta", {"text": piece})
        store.append("r", events[1:], expected_last_seq=1, lease=lease)

    async def go() -> list[str]:
        stream = event_stream(store, "r", wake=_never, keepalive_s=60.0,
                              clock=VirtualClock(start=0.0), poll_s=1.0, deltas=deltas())
        return [frame async for frame in stream]

    frames = list(parse_frames(asyncio.run(go())))
    assert [(f.event, f.id) for f in frames] == [
        ("turn.started", "1"), ("model.delta", None), ("model.delta", None),
        ("turn.finished", "2")]


def _chunks(text: str, cuts: list[int]) -> Iterator[str]:
    start = 0
    for cut in sorted(set(c % (len(text) + 1) for c in cuts)):
        yield text[start:cut]
        start = cut
    yield text[start:]


# -- the wire format -------------------------------------------------------------------------

_FRAMES = st.lists(st.tuples(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=12),
    st.text(max_size=40),
    st.none() | st.integers(min_value=0, max_value=10**12),
    st.booleans()), max_size=6)


@settings(max_examples=150, deadline=None)
@given(frames=_FRAMES, cuts=st.lists(st.integers(min_value=0), max_size=10),
       as_bytes=st.booleans())
def test_frames_survive_any_chunking(frames: list[tuple[str, str, int | None, bool]],
                                     cuts: list[int], as_bytes: bool) -> None:
    """Frames written by format_frame (data with any line breaks, comments between them) read
    back by parse_frames give the same event, id and data (breaks as LF), however the text is
    cut into chunks, as text or as UTF-8 bytes split inside a character."""
    text = "".join(format_frame(event, data, id=id_) + (comment("keepalive") if note else "")
                   for event, data, id_, note in frames)
    source: list[str] | list[bytes] = list(_chunks(text, cuts))
    if as_bytes:
        raw = text.encode()
        source = [raw[a:b] for a, b in _spans(len(raw), cuts)]
    parsed = [(f.event, f.data, f.id) for f in parse_frames(source)]
    assert parsed == [(event, re.sub(r"\r\n|\r|\n", "\n", data),
                       None if id_ is None else str(id_)) for event, data, id_, _ in frames]


def test_parser_follows_the_event_stream_rules() -> None:
    """CRLF, CR and LF all end lines (a CRLF split across chunks is one break), one space
    after the colon is dropped, a leading BOM is ignored, a frame without data is not
    dispatched, the last id carries over frames without one, and an unfinished frame at the
    end is dropped."""
    chunks = ["\ufeffid: 7\r", "\nevent: a\r\ndata:x\rdata:  y\n\n", "event: b\n\n",
              "data: z\n\n", "data: cut"]
    frames = list(parse_frames(chunks, comments=True))
    assert [(f.event, f.data, f.id, f.last_id) for f in frames] == [
        ("a", "x\n y", "7", "7"), ("message", "z", None, "7")]


def test_format_frame_refuses_forged_fields() -> None:
    """An event name or id holding a line break is refused: it would inject fields."""
    for bad in ({"event": "a\ndata: x"}, {"event": "a", "id": "1\r2"}):
        with pytest.raises(ValueError, match="line break"):
            format_frame(bad["event"], "{}", id=bad.get("id"))


def test_event_data_is_sorted_json_with_finite_numbers() -> None:
    """A UI event's data is JSON with sorted keys, one data line, non-finite numbers as
    strings (every JSON reader accepts it)."""
    frame = format_event(UiEvent("tool.finished", {"b": float("inf"), "a": [float("nan")],
                                                   "c": "line\nbreak"}, id=4))
    assert frame == ('id: 4\nevent: tool.finished\n'
                     'data: {"a":["NaN"],"b":"Infinity","c":"line\\nbreak"}\n\n')
    assert json.loads(next(parse_frames([frame])).data)["c"] == "line\nbreak"


def _spans(size: int, cuts: list[int]) -> list[tuple[int, int]]:
    points = [0, *sorted({c % (size + 1) for c in cuts}), size]
    return list(itertools.pairwise(points))


def test_delta_feed_streams_live_deltas_and_drops_stale_ones() -> None:
    """Deltas fanned out by a DeltaFeed reach the stream of their run only (model.delta, no
    id); deltas of a model call whose response is already journaled are not sent, and the
    subscription is gone once the stream ends."""
    store = MemoryStore()
    journal = _Journal(["text"], end="finished")
    store.append("r", journal.run[:1], expected_last_seq=0)
    lease = store.acquire("r", "worker", now=0.0, ttl_s=1e12)
    feed = DeltaFeed()

    def early() -> None:
        feed("r", 1, "ans")
        feed("other", 1, "no")
        feed("r", 1, "wer")

    def answered() -> None:
        store.append("r", journal.run[1:2], expected_last_seq=1, lease=lease)

    def late() -> None:
        feed("r", 1, "late")

    def finished() -> None:
        store.append("r", journal.run[2:], expected_last_seq=2, lease=lease)

    steps = iter([early, answered, late, finished])

    async def wake() -> None:
        step = next(steps, None)
        if step is not None:
            step()
        await asyncio.sleep(0)

    async def go() -> list[str]:
        stream = event_stream(store, "r", wake=wake, keepalive_s=60.0,
                              clock=VirtualClock(start=0.0), poll_s=1.0,
                              deltas=feed.follow("r"))
        out = [frame async for frame in stream]
        assert feed.followers("r") == 0
        return out

    frames = list(parse_frames(asyncio.run(go())))
    assert [(f.event, f.id, json.loads(f.data).get("text")) for f in frames] == [
        ("turn.started", "1", None), ("model.delta", None, "ans"),
        ("model.delta", None, "wer"), ("model.text", "2", "answer 2"),
        ("turn.finished", "3", None)]


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(_KINDS, max_size=10), end=_ENDS,
       batches=st.lists(st.integers(min_value=0, max_value=3), max_size=10),
       drops=st.lists(st.integers(min_value=0, max_value=4), max_size=6))
def test_live_streams_dropped_and_resumed_deliver_every_event_once(
        kinds: list[str], end: str, batches: list[int], drops: list[int]) -> None:
    """While the run is still being written, a client whose connection drops after any number
    of frames and who resumes at its last seen id gets every journal-backed event exactly
    once, in order, and every resource update, then the terminal event."""
    journal = _Journal(kinds, end=end)
    inner = MemoryStore()
    inner.append(TURN, journal.run[:1], expected_last_seq=0)
    inner.append(SESSION, journal.session[:1], expected_last_seq=0)
    store = _Interleaving(inner, journal.writes[1:], [*batches, 1])
    idle = 0

    async def wake() -> None:
        nonlocal idle
        idle = idle + 1 if store.done() else 0
        if idle > 3:
            raise AssertionError("the stream did not end once everything was written")

    async def connect(after: int, reads: int | None) -> list[SseFrame]:
        out: list[SseFrame] = []
        stream = event_stream(store, TURN, after=after, wake=wake, keepalive_s=1e9,
                              clock=VirtualClock(start=0.0), poll_s=1e6)
        async for text in stream:
            out += parse_frames([text])
            if reads is not None and len(out) >= reads:
                break
        await stream.aclose()
        return out[:reads] if reads is not None else out

    async def client() -> tuple[list[tuple[int, str]], set[int], str]:
        seen: list[tuple[int, str]] = []
        revisions: set[int] = set()
        last = 0
        for reads in [*drops, None]:
            frames = await connect(last, reads)
            for frame in frames:
                if frame.id is not None:
                    seen.append((int(frame.id), frame.event))
                    last = int(frame.id)
                if frame.event == "resource.updated":
                    revisions.add(json.loads(frame.data)["revision"])
            if frames and frames[-1].event in ("turn.finished", "run.waiting"):
                return seen, revisions, frames[-1].event
        return seen, revisions, ""

    seen, revisions, ended = asyncio.run(client())
    expected = journal.expected()
    assert seen == _journal_backed(expected)
    assert revisions == {u.data["revision"] for u in expected if u.type == "resource.updated"}
    assert ended == _terminal(end)


def test_stream_refuses_a_non_positive_keepalive_or_poll() -> None:
    """keepalive_s or poll_s of zero (or NaN) is refused before anything is read: it would
    spin without ever waiting."""
    for keepalive_s, poll_s in ((0.0, 1.0), (1.0, 0.0), (float("nan"), 1.0)):
        stream = event_stream(MemoryStore(), "r", wake=_never, keepalive_s=keepalive_s,
                              clock=VirtualClock(), poll_s=poll_s)
        with pytest.raises(UsageError, match="positive keepalive_s"):
            asyncio.run(anext(stream))


def test_a_cancelled_stream_lets_go_of_its_deltas_and_waits() -> None:
    """A stream cancelled while it waits (its client dropped; Starlette cancels it in an anyio
    cancel scope, which cancels every later await again) still unsubscribes from the
    DeltaFeed and cancels its pending waits."""
    import anyio

    store = MemoryStore()
    store.append("r", _Journal([], end="finished").run[:1], expected_last_seq=0)
    store.acquire("r", "worker", now=0.0, ttl_s=1e12)
    feed = DeltaFeed()
    woken: list[asyncio.Task[Any]] = []

    async def wake() -> None:
        task = asyncio.current_task()
        assert task is not None
        woken.append(task)
        await asyncio.Event().wait()

    async def go() -> None:
        stream = event_stream(store, "r", wake=wake, keepalive_s=60.0, clock=VirtualClock(),
                              poll_s=30.0, deltas=feed.follow("r"))
        with anyio.CancelScope() as scope:
            async for frame in stream:
                if frame.startswith("id: 1"):
                    asyncio.get_running_loop().call_soon(scope.cancel)
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0)
        assert feed.followers("r") == 0
        assert woken and all(t.cancelled() or t.cancelling() for t in woken)

    anyio.run(go)


def test_mapping_of_failures_refusals_and_expiries() -> None:
    """Each way a call ends maps to its tool.finished (denied by policy, failed, unknown then
    settled by a lookup under the same call, a client call unanswered, a call the loop
    refused), approvals denied and expired map to approval.decided, and responses the loop
    could not use and failed model calls show nothing."""
    def model(seq: int, pos: int, calls: list[tuple[str, str]], text: str = "") -> ModelCalled:
        return ModelCalled(seq=seq, at=0.0, pos=pos, model="m", request_digest="d", response={
            "text": text, "tool_calls": [{"id": i, "name": n, "arguments": "{}"}
                                         for i, n in calls]})

    events: list[Event] = [
        RunStarted(seq=1, at=0.0, workflow="a", input="hello", seed=1),
        model(2, 1, [], text=""),  # unusable: neither text nor calls
        ModelFailed(seq=3, at=0.0, pos=2, model="m", request_digest="d",
                    failure="rate_limited", error={"message": "slow down"}),
        model(4, 3, [("a", "pay"), ("b", "pay"), ("c", "read")]),
        Decision(seq=5, at=0.0, pos=4, name="policy",
                 data={"call_id": "a", "tool": "pay", "verdict": "deny", "reason": "no"}),
        Decision(seq=6, at=0.0, pos=5, name="policy",
                 data={"call_id": "b", "tool": "pay", "verdict": "allow"}),
        ToolIntent(seq=7, at=0.0, pos=6, tool="pay", effect="reconcilable", key="k6",
                   args={}),
        ToolAmbiguous(seq=8, at=0.0, pos=6, tool="pay", key="k6", reason="timeout"),
        ToolResult(seq=9, at=0.0, pos=6, tool="pay", result=1, reconciled=True),
        ToolError(seq=10, at=0.0, pos=7, tool="read", failure="permanent_tool_error",
                  error={"type": "E", "message": "gone"}),
        Decision(seq=11, at=0.0, pos=8, name="recover",
                 data={"call_id": "c", "tool": "read", "action": "observe",
                       "failure": "permanent_tool_error", "message": "gone"}),
        model(12, 9, [("d", "ask"), ("e", "nope")]),
        WaitStarted(seq=13, at=0.0, pos=10, key="client:10:d",
                    data={"call_id": "d", "tool": "ask"}),
        WaitExpired(seq=14, at=0.0, pos=10, key="client:10:d"),
        Decision(seq=15, at=0.0, pos=11, name="recover",
                 data={"call_id": "e", "tool": "nope", "action": "observe",
                       "failure": "invalid_tool_call", "message": "unknown tool"}),
        WaitStarted(seq=16, at=0.0, pos=12, key="approval:12", data={"tool": "pay"}),
        WaitResolved(seq=17, at=0.0, key="approval:12", value={"approved": False},
                     by="ann", note="too much"),
        WaitStarted(seq=18, at=0.0, pos=13, key="approval:13", data={"tool": "pay"}),
        WaitExpired(seq=19, at=0.0, pos=13, key="approval:13"),
        RunFinished(seq=20, at=0.0, status=RunStatus.FAILED, error={"type": "X"},
                    reason="X: broke"),
    ]
    mapped = [(u.id, u.type, {k: u.data.get(k) for k in ("call_id", "status", "decision")
                              if k in u.data}) for u in ui_events(events, run_id="r")]
    assert mapped == [
        (1, "turn.started", {}),
        (4, "tool.requested", {}),
        (5, "tool.finished", {"call_id": "a", "status": "denied"}),
        (7, "tool.started", {"call_id": "b"}),
        (8, "tool.finished", {"call_id": "b", "status": "unknown"}),
        (9, "tool.finished", {"call_id": "b", "status": "ok"}),
        (10, "tool.finished", {"call_id": "c", "status": "error"}),
        (12, "tool.requested", {}),
        (13, "client_tool.requested", {"call_id": "d"}),
        (14, "tool.finished", {"call_id": "d", "status": "timed_out"}),
        (15, "tool.finished", {"call_id": "e", "status": "error"}),
        (16, "approval.requested", {}),
        (17, "approval.decided", {"decision": "denied"}),
        (18, "approval.requested", {}),
        (19, "approval.decided", {"decision": "expired"}),
        (20, "turn.finished", {"status": "failed"}),
    ]
    finished = ui_events(events, run_id="r")[-1].data
    assert finished == {"status": "failed", "reason": "X: broke", "answer": None,
                        "error": {"type": "X"}}
    assert ui_events(events)[0].data["input"] == "hello"


def test_run_waiting_names_every_open_wait() -> None:
    """run.waiting lists the open waits of any kind: client calls, approvals and other
    signals, not the ones already resolved."""
    events: list[Event] = [
        RunStarted(seq=1, at=0.0, workflow="a", input="go", seed=1),
        WaitStarted(seq=2, at=0.0, pos=1, key="client:1:q", data={"call_id": "q",
                                                                    "tool": "ask"}),
        WaitStarted(seq=3, at=0.0, pos=2, key="approval:2", data={"tool": "pay",
                                                                   "role": "boss"}),
        WaitStarted(seq=4, at=0.0, pos=3, key="payment-cleared", deadline=50.0),
        WaitStarted(seq=5, at=0.0, pos=4, key="client:4:done", data={"call_id": "done"}),
        WaitResolved(seq=6, at=0.0, key="client:4:done", value=1),
    ]
    store = MemoryStore()
    store.append("r", events, expected_last_seq=0)
    frames = _collect(store, "r")
    assert frames[-1].event == "run.waiting"
    assert json.loads(frames[-1].data)["waiting_for"] == [
        {"key": "client:1:q", "kind": "client_tool", "call_id": "q", "tool": "ask",
         "deadline": None},
        {"key": "approval:2", "kind": "approval", "step": 2, "tool": "pay", "role": "boss",
         "deadline": None},
        {"key": "payment-cleared", "kind": "signal", "deadline": 50.0}]


def test_appends_made_while_frames_are_sent_wake_the_stream(tmp_path: Path) -> None:
    """Events appended while the stream hands out earlier frames (the consumer is awaited
    between frames) wake it: the stream registers its interest before it reads the store, so
    on a clock that never moves it still reaches the terminal event instead of waiting for a
    poll. A hang is caught by a generous real timeout; nothing here measures time."""
    store = SQLiteStore(tmp_path / "runs.db")
    run_id = "session:t.s:turn:1"
    listeners: list[asyncio.Future[None]] = []

    def wake() -> asyncio.Future[None]:
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        listeners.append(heard)
        return heard

    def append(events: list[Event]) -> None:
        last = store.get_run(run_id)
        base = 0 if last is None else last.last_seq
        store.append(run_id, [e.model_copy(update={"seq": base + i + 1})
                              for i, e in enumerate(events)],
                     expected_last_seq=base)
        while listeners:
            heard = listeners.pop()
            if not heard.done():
                heard.set_result(None)

    async def main() -> list[str]:
        append([RunStarted(seq=0, at=0.0, workflow="w", input={"text": "hi"}, seed=0)])
        stream = event_stream(store, run_id, wake=wake, keepalive_s=3600.0,
                              clock=VirtualClock(autojump=False), poll_s=3600.0)
        kinds = []
        async for frame in stream:
            kinds += [line.split(": ", 1)[1] for line in frame.splitlines()
                      if line.startswith("event: ")]
            if len(kinds) == 1:  # the run finishes while the consumer holds the first frame
                append([RunFinished(seq=0, at=1.0, status=RunStatus.COMPLETED, reason="")])
        return kinds

    kinds = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert kinds[-1] == "turn.finished", kinds
