"""The SSE stream of one run: journal events to UI events, replay then live, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import Agent, ModelRequest, ModelResponse, Runtime, ToolCall, tool
from tether.clock import VirtualClock
from tether.events import (
    Event,
    ModelCalled,
    RunFinished,
    RunStarted,
    RunStatus,
    StepRecorded,
    ToolIntent,
    ToolResult,
    WaitResolved,
    WaitStarted,
)
from tether.models.scripted import ScriptedModel, call, reply
from tether.policy import Policy, argument_limit
from tether.runtime.client_tools import client_tool
from tether.serve.sse import SseFrame, parse_frames
from tether.serve.stream import UiEvent, event_stream, ui_events
from tether.sessions import Sessions
from tether.sessions.tools import session_tools
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
    import json
    data = [json.loads(f.data) for f in frames]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for frame, item in zip(frames, data, strict=True):
        by_type.setdefault(frame.event, []).append(item)
    assert by_type["turn.started"][0]["input"] == "go"
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
    import json
    assert [w["call_id"] for w in json.loads(frames[-1].data)["waiting_for"]] == ["c2"]


# -- synthetic journals -----------------------------------------------------------------------


def _events(kinds: list[str], *, end: str) -> list[Event]:
    """A journal from a list of kinds: run_started, then each kind, then ``end``."""
    events: list[Event] = [RunStarted(seq=1, at=0.0, workflow="a", input={"text": "go"},
                                      seed=1)]
    pos = 0
    for kind in kinds:
        seq, pos = len(events) + 1, pos + 1
        if kind == "text":
            events.append(ModelCalled(seq=seq, at=0.0, pos=pos, model="m", request_digest="d",
                                      response={"text": f"answer {seq}"}))
        elif kind == "call":
            events.append(ModelCalled(seq=seq, at=0.0, pos=pos, model="m", request_digest="d",
                                      response={"tool_calls": [
                                          {"id": f"k{seq}", "name": "t", "arguments": "{}"},
                                          {"id": f"j{seq}", "name": "t", "arguments": "{}"}]}))
        elif kind == "intent":
            events.append(ToolIntent(seq=seq, at=0.0, pos=pos, tool="t", effect="idempotent",
                                     key=f"k{pos}", args={}))
        elif kind == "result":
            events.append(ToolResult(seq=seq, at=0.0, pos=pos, tool="t", result={"n": seq}))
        elif kind == "step":
            events.append(StepRecorded(seq=seq, at=0.0, pos=pos, call="now", name="now",
                                       result=0.0))
        elif kind == "approval":
            events.append(WaitStarted(seq=seq, at=0.0, pos=pos, key=f"approval:{pos}",
                                      data={"tool": "t", "role": "r", "reason": "why"}))
            events.append(WaitResolved(seq=seq + 1, at=0.0, key=f"approval:{pos}",
                                       value={"approved": True}, by="sam"))
    seq = len(events) + 1
    if end == "finished":
        events.append(RunFinished(seq=seq, at=0.0, status=RunStatus.COMPLETED,
                                  result={"answer": "done"}))
    else:
        events.append(WaitStarted(seq=seq, at=0.0, pos=pos + 1, key=f"client:{pos + 1}:z",
                                  data={"call_id": "z", "tool": "ask"}))
    return events


def _journal_backed(events: list[Event]) -> list[tuple[int, str]]:
    return [(u.id, u.type) for u in ui_events(events) if u.id is not None]


_KINDS = st.sampled_from(["text", "call", "intent", "result", "step", "approval"])


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(_KINDS, max_size=12), end=st.sampled_from(["finished", "waiting"]),
       drops=st.lists(st.integers(min_value=0, max_value=6), max_size=8))
def test_resumed_streams_deliver_every_event_once(kinds: list[str], end: str,
                                                  drops: list[int]) -> None:
    """For any journal and any points where the connection drops, the streams resumed at each
    client-seen last id give every journal-backed event exactly once, in order, and each
    resumed stream of a waiting run ends with run.waiting."""
    events = _events(kinds, end=end)
    store = MemoryStore()
    store.append("r", events, expected_last_seq=0)
    seen: list[tuple[int, str]] = []
    last, ended = 0, ""
    for reads in [*drops, None]:
        frames = [f for f in _collect(store, "r", after=last) if f.comment is None]
        frames = frames if reads is None else frames[:reads]
        for frame in frames:
            if frame.id is not None:
                seen.append((int(frame.id), frame.event))
            last = int(frame.last_id) if frame.last_id else last
        if frames and frames[-1].event in ("turn.finished", "run.waiting"):
            ended = frames[-1].event
            break
    assert ended == ("turn.finished" if end == "finished" else "run.waiting")
    assert seen == _journal_backed(events)


def test_live_stream_sees_events_another_handle_appends(tmp_path: Path) -> None:
    """A stream on one SQLite connection follows events appended by a second connection to the
    same file (no wake: the stream polls on its clock) and ends at turn.finished."""
    path = tmp_path / "runs.db"
    reader, writer = SQLiteStore(path), SQLiteStore(path)
    events = _events(["text", "intent", "result", "text"], end="finished")
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
    events = _events([], end="waiting")
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
    events = _events([], end="waiting")
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
    events = _events([], end="finished")
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
