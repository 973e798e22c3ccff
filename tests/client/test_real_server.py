"""The client against the real ``tether serve`` app in process (httpx's ASGI transport): the
support-chat conversation through the client's verbs, and a stream cut mid-body resumed."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.serve.serve_helpers import KEYS, served
from tether.client import (
    AsyncClient,
    NotFoundError,
    Options,
    PermissionDeniedError,
    Reconnect,
    StreamEvent,
)

REFUND_SMALL = "The headphones from order ch_0002 stopped working. Please refund them."
REFUND_LARGE = "The espresso machine from order ch_0003 arrived broken. Please refund it."


def client(http: httpx.AsyncClient, who: str) -> AsyncClient:
    async def no_wait(seconds: float) -> None:
        return None

    options = Options(reconnect=Reconnect(attempts=3), rng=random.Random(1))
    return AsyncClient("http://serve", KEYS[who][0], http=http, options=options, sleep=no_wait)


async def collect(stream: Any) -> list[StreamEvent]:
    return [event async for event in stream]


async def say(c: AsyncClient, sid: str, text: str) -> list[StreamEvent]:
    return await collect(await c.fire(sid, "user-message", {"text": text}))


def test_a_conversation_through_the_client(tmp_path: Path) -> None:
    """Three turns: a read, a client tool answered with continue_execution, and an approval a
    customer key may not give (PermissionDeniedError) and a supervisor key gives; then the
    session, the runs and a run's journal read back typed."""

    async def go() -> None:
        async with served(tmp_path) as s:
            ada, grace = client(s.http, "ada"), client(s.http, "grace")
            made = await ada.create_session("support-chat", session_id="chat1",
                                            variables={"customer_name": "Ada"})
            assert made.revision >= 0 and made.status == "active"
            first = await say(ada, "chat1", "How much did I pay for order ch_0001?")
            assert first[-1].type == "turn.finished" and "49.99" in first[-1].data["answer"]

            second = await say(ada, "chat1", REFUND_SMALL)
            asked = next(e.data for e in second if e.type == "client_tool.requested")
            assert second[-1].type == "run.waiting"
            rest = await collect(await ada.continue_execution(
                asked["execution_id"], {asked["call_id"]: {"confirmed": True}}))
            assert rest[-1].type == "turn.finished"

            third = await say(ada, "chat1", REFUND_LARGE)
            asked = next(e.data for e in third if e.type == "client_tool.requested")
            run_id = asked["execution_id"]
            held = await collect(await ada.continue_execution(
                run_id, {asked["call_id"]: {"confirmed": True}}))
            assert held[-1].type == "run.waiting"
            assert [a.run_id for a in await grace.approvals()] == [run_id]
            with pytest.raises(PermissionDeniedError):
                await ada.approve(run_id)
            decision = await grace.approve(run_id, note="ok")
            assert decision.run_id == run_id
            last = max(e.id for e in held if e.id is not None)
            tail = await collect(await ada.events(run_id, after=last))
            assert tail[-1].type == "turn.finished" and all(
                e.id is None or e.id > last for e in tail)

            view = await ada.session("chat1")
            assert [t.number for t in view.turns] == [1, 2, 3]
            assert view.history[0].role == "user"
            assert run_id in {r.run_id for r in await ada.runs()}
            assert (await ada.run_events(run_id))[0]["seq"] == 1
            with pytest.raises(NotFoundError):
                await client(s.http, "mallory").session("chat1")

    asyncio.run(go())


class Cutting(httpx.AsyncBaseTransport):
    """A transport in front of the app that drops its ``nth`` event stream after ``cut``
    bytes, as a dropped connection would (the request stays served on the server)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cut: int, nth: int = 1) -> None:
        self.inner, self.cut, self.nth = inner, cut, nth
        self.streams, self.cuts, self.whole = 0, 0, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return response
        self.streams += 1
        if self.streams != self.nth:
            return response
        self.cuts += 1
        body = await response.aread()
        kept, self.whole = body[:self.cut], len(body)

        async def dropped() -> AsyncIterator[bytes]:
            yield kept
            raise httpx.RemoteProtocolError("peer closed connection mid-body")

        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Stream(dropped()), request=request)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk


@pytest.mark.parametrize("cut", [200, 400, 700, 950])
def test_a_turn_cut_mid_stream_is_resumed_from_the_real_server(tmp_path: Path,
                                                               cut: int) -> None:
    """A turn's stream dropped after ``cut`` bytes is resumed by the client from the server's
    journal: the ids seen equal those of an uncut replay of the run, each once, in order."""

    async def go() -> tuple[list[StreamEvent], list[StreamEvent]]:
        async with served(tmp_path) as s:
            cutting = Cutting(s.http._transport, cut)
            async with httpx.AsyncClient(transport=cutting, base_url="http://serve") as http:
                ada = client(http, "ada")
                await ada.create_session("support-chat", session_id="cut",
                                         variables={"customer_name": "Ada"})
                stream = await ada.fire("cut", "user-message",
                                        {"text": "How much did I pay for order ch_0001?"})
                seen = await collect(stream)
                assert stream.run_id is not None and cutting.cuts == 1
                assert cutting.cut < cutting.whole, "the cut fell inside the stream"
                whole = await collect(await ada.events(stream.run_id))
                return seen, whole

    seen, whole = asyncio.run(go())
    assert [e.id for e in seen if e.id is not None] == [e.id for e in whole if e.id is not None]
    assert [e.type for e in seen] == [e.type for e in whole]
    assert seen[-1].type == "turn.finished"


@pytest.mark.parametrize("cut", [0, 40])
def test_a_stream_cut_before_its_first_event_is_resumed_by_its_header(tmp_path: Path,
                                                                     cut: int) -> None:
    """Dropped before its first frame was whole, a fire's stream is still resumed: the
    response's Tether-Run-Id header named the run, so nothing is guessed or fired twice."""

    async def go() -> None:
        async with served(tmp_path) as s:
            cutting = Cutting(s.http._transport, cut)
            async with httpx.AsyncClient(transport=cutting, base_url="http://serve") as http:
                ada = client(http, "ada")
                await ada.create_session("support-chat", session_id="early",
                                         variables={"customer_name": "Ada"})
                stream = await ada.fire("early", "user-message", {"text": "Hello?"})
                seen = await collect(stream)
                assert cutting.cuts == 1 and stream.run_id == "session:acme.early:turn:1"
                whole = await collect(await ada.events(stream.run_id))
                assert [e.id for e in seen] == [e.id for e in whole]
                assert seen[0].type == "turn.started" and seen[-1].type == "turn.finished"
                assert len((await ada.session("early")).turns) == 1

    asyncio.run(go())


def test_a_continue_cut_before_its_first_event_resumes_where_it_started(
        tmp_path: Path) -> None:
    """A continue's stream dropped before any frame resumes after the seq the server said it
    starts after (Tether-After), not from the run's beginning: it yields exactly the events
    of an uncut stream from that point, none the fire's stream already gave."""

    async def go() -> None:
        async with served(tmp_path) as s:
            cutting = Cutting(s.http._transport, 0, nth=2)
            async with httpx.AsyncClient(transport=cutting, base_url="http://serve") as http:
                ada = client(http, "ada")
                await ada.create_session("support-chat", session_id="cont",
                                         variables={"customer_name": "Ada"})
                first = await say(ada, "cont", REFUND_SMALL)
                asked = next(e.data for e in first if e.type == "client_tool.requested")
                stream = await ada.continue_execution(
                    asked["execution_id"], {asked["call_id"]: {"confirmed": True}})
                rest = await collect(stream)
                assert cutting.cuts == 1
                before = max(e.id for e in first if e.id is not None)
                uncut = await collect(await ada.events(asked["execution_id"], after=before))
                assert [e.id for e in rest] == [e.id for e in uncut]
                assert all(e.id is None or e.id > before for e in rest)
                assert rest[-1].type == "turn.finished"

    asyncio.run(go())


@settings(max_examples=12, deadline=None)
@given(nth=st.sampled_from([1, 2]), fraction=st.floats(0.0, 1.0))
def test_any_byte_cut_of_a_fire_or_continue_stream_loses_and_repeats_nothing(
        nth: int, fraction: float) -> None:
    """The fire's (nth=1) or the continue's (nth=2) stream of a client-tool turn dropped at any
    byte yields what an uncut stream from the same start yields: same ids, same events."""

    async def turn(folder: Path, cut: int) -> tuple[list[StreamEvent], Cutting]:
        # A fresh server and world each time: the same seed gives the same run.
        async with served(folder) as s:
            cutting = Cutting(s.http._transport, cut, nth=nth)
            async with httpx.AsyncClient(transport=cutting, base_url="http://serve") as http:
                return await turn_with_client_tool(client(http, "ada"), "t"), cutting

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "a").mkdir()
        (Path(folder) / "b").mkdir()
        whole, probe = asyncio.run(turn(Path(folder) / "a", 10**9))
        seen, cutting = asyncio.run(turn(Path(folder) / "b", int(probe.whole * fraction)))
    assert cutting.cuts == 1
    assert [(e.id, e.type) for e in seen] == [(e.id, e.type) for e in whole]


async def turn_with_client_tool(c: AsyncClient, sid: str) -> list[StreamEvent]:
    """A small refund's turn: the fire's stream, then the continue's, as the client saw them."""
    await c.create_session("support-chat", session_id=sid, variables={"customer_name": "Ada"})
    first = await say(c, sid, REFUND_SMALL)
    asked = next(e.data for e in first if e.type == "client_tool.requested")
    rest = await collect(await c.continue_execution(
        asked["execution_id"], {asked["call_id"]: {"confirmed": True}}))
    return first + rest
