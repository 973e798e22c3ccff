"""Shared pieces for agent tests: a runtime on virtual time and journal queries."""

from __future__ import annotations

import asyncio
from typing import Any

from tether import Agent, MemoryStore, RunResult, Runtime, VirtualClock
from tether.events import Decision, Event


def run(agent: Agent, task: str = "help", *, runtime: Runtime | None = None,
        seed: int = 7) -> tuple[RunResult, list[Event], Runtime]:
    rt = runtime or Runtime(MemoryStore(), clock=VirtualClock(), seed=seed)
    result = asyncio.run(rt.start(agent, task))
    return result, rt.store.read(result.run_id), rt


def decisions(events: list[Event], name: str = "recover") -> list[dict[str, Any]]:
    return [e.data for e in events if isinstance(e, Decision) and e.name == name]


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]
