"""Agents, stores and drivers shared by the session tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from tether import Crash, Runtime, VirtualClock
from tether.agent.agent import Agent
from tether.events import Event
from tether.models.base import ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.runtime.tools import ToolContext, tool
from tether.sessions import Sessions
from tether.store.base import Store


class Query(BaseModel):
    q: str


def lookup_agent(calls: list[str] | None = None, seen: list[int] | None = None) -> Agent:
    """An agent that looks each request up with a tool, then answers with the result and the
    number of messages it was shown (so a lost or doubled history changes its answer)."""
    made_calls = calls if calls is not None else []
    counts = seen if seen is not None else []

    @tool(name="lookup", args=Query)
    async def lookup(ctx: ToolContext, args: Query) -> dict[str, str]:
        made_calls.append(args.q)
        return {"found": args.q.upper()}

    def script(request: ModelRequest) -> ModelResponse:
        last = request.messages[-1]
        if last.role == "user":
            asked = sum(1 for m in request.messages if m.role == "user")
            return call("lookup", {"q": last.content}, call_id=f"c{asked}")
        counts.append(len(request.messages))
        return reply(f"{last.content} after {len(request.messages)} messages")

    return Agent(name="helper", model=ScriptedModel(script), tools=[lookup])


def sessions_on(store: Store, agent: Agent, clock: VirtualClock | None = None,
                owner: str = "worker") -> Sessions:
    """Sessions of ``agent`` on ``store`` with a virtual clock and a fixed worker name (a
    replacement after a crash takes the crashed worker's runs back at once)."""
    runtime = Runtime(store, clock=clock or VirtualClock(), seed=7, owner=owner)
    return Sessions(runtime, agents=[agent])


class CrashingStore:
    """A store handle that raises :class:`Crash` at its ``crash_at``-th append (1-based),
    before the append reaches the store or, with ``after``, once it is stored."""

    def __init__(self, inner: Store, crash_at: int, *, after: bool) -> None:
        self.inner, self.crash_at, self.after = inner, crash_at, after
        self.appends = 0

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        self.appends += 1
        if self.appends == self.crash_at and not self.after:
            raise Crash(f"crash before append {self.appends}")
        self.inner.append(run_id, events, **kwargs)
        if self.appends == self.crash_at:
            raise Crash(f"crash after append {self.appends}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class BarrierStore:
    """A store handle whose appends of ``kind`` wait at ``barrier`` first, so two writers that
    read the same revision append at the same time."""

    def __init__(self, inner: Store, barrier: threading.Barrier, kind: str) -> None:
        self.inner, self.barrier, self.kind = inner, barrier, kind

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        if any(getattr(e, "kind", "") == self.kind for e in events):
            self.barrier.wait(timeout=10)
        self.inner.append(run_id, events, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

