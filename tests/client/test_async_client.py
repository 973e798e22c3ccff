"""The async client against the fake server on a loopback port: the same streams and errors."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.client.fake_server import Fake
from tether.client import (
    AsyncClient,
    AuthenticationError,
    ConnectionFailedError,
    GoneError,
    Options,
    Reconnect,
    StreamEvent,
)

Server = tuple[str, Fake]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def client(url: str, waits: list[float], key: str = "key-a", attempts: int = 4) -> AsyncClient:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    options = Options(reconnect=Reconnect(attempts=attempts), rng=random.Random(3))
    return AsyncClient(url, key, options=options, sleep=sleep)


async def collect(stream: Any) -> list[StreamEvent]:
    return [event async for event in stream]


@pytest.mark.parametrize("mode", ["close", "abort"])
def test_an_async_stream_resumes_without_gap_or_duplicate(server: Server, mode: str) -> None:
    """Cut twice (after 3 frames, then after 2), the async stream yields each id once, in
    order, resuming with Last-Event-ID = the last id yielded each time."""
    url, fake = server
    waits: list[float] = []

    async def go() -> list[StreamEvent]:
        async with client(url, waits) as c:
            sid = (await c.create_session("support", session_id=f"async-{mode}")).id
            fake.cuts[f"session:a.{sid}:turn:1"] = [(3, mode), (2, mode)]
            return await collect(await c.fire(sid, "message", {"text": "hi"}))

    events = run(go())
    assert [e.id for e in events if e.id is not None] == [1, 2, 3, 4, 6, 7, 9]
    assert events[-1].type == "turn.finished"
    resumes = [r[1] for r in fake.stream_requests if f"async-{mode}" in r[0]
               and r[0].endswith("/events")]
    assert resumes == ["1", "3"] and len(waits) == 2


def test_async_errors_are_typed(server: Server) -> None:
    """An unknown key raises AuthenticationError; an expired session's trigger GoneError."""
    url, fake = server
    waits: list[float] = []

    async def go() -> None:
        async with client(url, waits, key="wrong") as bad:
            with pytest.raises(AuthenticationError):
                await bad.session("x")
        async with client(url, waits) as c:
            sid = (await c.create_session("support", session_id="async-gone")).id
            fake.sessions[f"a.{sid}"]["status"] = "expired"
            with pytest.raises(GoneError):
                await c.fire(sid, "message", {"text": "hi"})

    run(go())


def test_async_resume_gives_up_after_its_attempts(server: Server) -> None:
    """A stream every resume of which is cut before any event raises ConnectionFailedError after
    the configured attempts, naming where it stopped."""
    url, fake = server
    waits: list[float] = []

    async def go() -> None:
        async with client(url, waits, attempts=2) as c:
            sid = (await c.create_session("support", session_id="async-dead")).id
            fake.cuts[f"session:a.{sid}:turn:1"] = [(2, "abort"), (0, "abort"), (0, "close"),
                                                   (0, "abort")]
            stream = await c.fire(sid, "message", {"text": "hi"})
            with pytest.raises(ConnectionFailedError) as caught:
                await collect(stream)
            assert caught.value.last_id == 1 and stream.last_id == 1

    run(go())
    assert len(waits) == 2
