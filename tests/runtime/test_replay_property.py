"""Property: resuming from any prefix of a recorded journal reproduces the same run."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import MemoryStore, RunContext, Runtime, ToolContext, VirtualClock, tool, workflow
from tether.runtime.journal import call_identity


class Key(BaseModel):
    n: int


ops = st.lists(
    st.one_of(
        st.tuples(st.just("step"), st.integers(0, 9)),
        st.tuples(st.just("random"), st.just(0)),
        st.tuples(st.just("uuid"), st.just(0)),
        st.tuples(st.just("now"), st.just(0)),
        st.tuples(st.just("sleep"), st.integers(1, 120)),
        st.tuples(st.just("read"), st.integers(0, 9)),
        st.tuples(st.just("write"), st.integers(0, 9)),
    ),
    min_size=1,
    max_size=10,
)


def make(program: list[tuple[str, int]], effects: Counter[str], executed: Counter[int]) -> Any:
    @tool(effect="read")
    def read(ctx: ToolContext, args: Key) -> int:
        return args.n * 10

    @tool(effect="idempotent")
    def write(ctx: ToolContext, args: Key) -> str:
        effects[ctx.idempotency_key] += 1  # the provider would dedupe; we count raw calls
        return f"w{args.n}"

    @workflow(name="program")
    async def run(ctx: RunContext) -> list[Any]:
        out: list[Any] = []
        for i, (op, arg) in enumerate(program):
            if op == "step":
                out.append(await ctx.step(f"s{i}", lambda i=i, a=arg: executed.update([i]) or a))
            elif op == "random":
                out.append(ctx.random())
            elif op == "uuid":
                out.append(ctx.uuid())
            elif op == "now":
                ctx.now()
            elif op == "sleep":
                await ctx.sleep(arg)
            elif op == "read":
                out.append(await ctx.call_tool(read, {"n": arg}))
            else:
                out.append(await ctx.call_tool(write, {"n": arg}))
        return out

    return run


def identities(events: list[Any]) -> dict[int, tuple[str, str] | None]:
    firsts: dict[int, Any] = {}
    for e in events:
        if hasattr(e, "pos"):
            firsts.setdefault(e.pos, e)
    return {pos: call_identity(e) for pos, e in firsts.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=ops)
def test_any_prefix_resumes_to_the_same_calls_and_result(program: list[tuple[str, int]]) -> None:
    """Cut the journal anywhere: the resumed run makes the same calls and returns the same."""
    store = MemoryStore()
    wf = make(program, Counter(), Counter())
    original = asyncio.run(Runtime(store, clock=VirtualClock(start=0.0), seed=5).start(wf))
    events = store.read(original.run_id)
    for cut in range(1, len(events)):
        prefix = MemoryStore()
        prefix.append(original.run_id, events[:cut], expected_last_seq=0)
        effects: Counter[str] = Counter()
        executed: Counter[int] = Counter()
        resumed_wf = make(program, effects, executed)
        runtime = Runtime(prefix, clock=VirtualClock(start=0.0), workflows=[resumed_wf])
        resumed = asyncio.run(runtime.resume(original.run_id))
        assert resumed.result == original.result
        replayed = prefix.read(original.run_id)
        assert identities(replayed) == identities(events)
        # Steps already journaled in the prefix never execute again (op i is position i).
        journaled_steps = {e.pos for e in events[:cut] if e.kind == "step"}
        assert not set(executed) & journaled_steps
        # A write whose result was journaled in the prefix is never called again.
        done_writes = {e.pos for e in events[:cut] if e.kind == "tool_result"}
        for key in effects:
            assert int(key.rsplit(":", 1)[1]) not in done_writes
