"""The journal records exactly what the live run saw: a resumed run sees equal values.

Each test runs a workflow live on a store, then resumes the same run, from the journal read back
out of that store, with a fresh runtime: every durable call replays. The value the live run saw
must equal (type for type, ``-0.0`` apart from ``0.0``, ``nan`` as ``nan``) the replayed one, or
the live call raised a clear error and the replay raises the same.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import Agent, MemoryStore, RunStatus, Runtime, ToolContext, VirtualClock, tool
from tether.errors import ModelUnavailable, UsageError
from tether.events import Decision, ModelFailed, RunFinished, encode
from tether.models.base import Message, ModelRequest, ModelResponse
from tether.models.scripted import ScriptedModel, call, reply
from tether.runtime.codec import MAX_DEPTH, MAX_INT_BITS, to_json
from tether.runtime.context import internals
from tether.store.base import Store

from ..conftest import StoreFactory

_runs = itertools.count(1)


class NoArgs(BaseModel):
    pass


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down; floats by repr (-0.0, nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def journalable(value: Any, depth: int = 0) -> bool:
    """Whether the codec's bounds (nesting, integer size, distinct keys) admit ``value``."""
    if isinstance(value, dict) and len({as_text(k) for k in value}) != len(value):
        return False
    if isinstance(value, list | tuple | dict):
        items = value.values() if isinstance(value, dict) else value
        return depth < MAX_DEPTH and all(journalable(item, depth + 1) for item in items)
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() <= MAX_INT_BITS
    return True


def as_text(text: str) -> str:
    """Text as journaled: lone surrogates replaced, split pairs joined."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def nested(depth: int) -> Any:
    value: Any = "core"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.lists(st.one_of(st.characters(), lone_surrogates), max_size=8).map("".join)
floats = st.one_of(st.floats(), st.sampled_from(
    [-0.0, 0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308]))
ints = st.one_of(st.integers(), st.sampled_from(
    [2**63, -(2**64) - 1, 10**300, 2**MAX_INT_BITS - 1, 2**MAX_INT_BITS, -(2**(MAX_INT_BITS + 5))]))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(texts, inner, max_size=4)),
    max_leaves=16,
) | st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3).map(nested)


def replayed(store: Store, fresh: Store, run_id: str, workflow: Any) -> Any:
    """Copy the run's journal (all but its end) out of ``store`` into ``fresh`` and resume."""
    events = store.read(run_id)
    assert isinstance(events[-1], RunFinished)
    fresh.append(run_id, events[:-1], expected_last_seq=0)
    runtime = Runtime(fresh, clock=VirtualClock(start=0.0), workflows=[workflow], seed=1)
    return asyncio.run(runtime.resume(run_id))


def live_and_replay(stores: tuple[Store, Store], call: Any) -> list[Any]:
    """Run a workflow observing ``call(ctx)`` live on the first store, then resumed from a copy
    of its journal in the second: both observations."""
    store, fresh = stores
    seen: list[Any] = []

    async def observe(ctx: Any) -> str:
        try:
            seen.append(("ok", await call(ctx)))
        except UsageError as exc:
            seen.append(("error", str(exc)))
        return "done"

    run_id = f"run-{next(_runs)}"
    runtime = Runtime(store, clock=VirtualClock(start=0.0), seed=1)
    first = asyncio.run(runtime.start(observe, run_id=run_id))
    assert first.status is RunStatus.COMPLETED, first.reason
    second = replayed(store, fresh, run_id, observe)
    assert second.status is RunStatus.COMPLETED, second.reason
    return seen


@pytest.fixture
def stores(store_factory: StoreFactory) -> tuple[Store, Store]:
    """Two stores of each kind: the live run's, and the one its journal is copied into."""
    return store_factory(), store_factory()


@pytest.fixture(params=["memory", "sqlite"])
def local_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Memory and SQLite only: the property tests run many examples (PostgreSQL runs the
    targeted tests below)."""
    factory = StoreFactory(request.param, tmp_path, None)
    yield factory(), factory()
    factory.close_all()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=values)
def test_a_step_replays_exactly_what_it_returned_live(
        local_stores: tuple[Store, Store], value: Any) -> None:
    """Any JSON-like value a step returns comes back equal on replay, or both raise alike."""

    async def call(ctx: Any) -> Any:
        return await ctx.step("value", lambda: value)

    live, replay = live_and_replay(local_stores, call)
    assert live[0] == replay[0] and same(live[1], replay[1]), (live, replay)
    assert live[0] == ("ok" if journalable(value) else "error"), live


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=values)
def test_a_tool_result_replays_exactly(local_stores: tuple[Store, Store],
                                       value: Any) -> None:
    """A read tool's result is journaled so the replay returns what the live call returned."""

    @tool
    def fetch(ctx: ToolContext, args: NoArgs) -> Any:
        """Fetch."""
        return value

    async def call(ctx: Any) -> Any:
        return await ctx.call_tool(fetch, {})

    live, replay = live_and_replay(local_stores, call)
    assert live[0] == replay[0] and same(live[1], replay[1]), (live, replay)
    assert live[0] == ("ok" if journalable(value) else "error"), live


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=texts)
def test_a_models_text_replays_exactly(local_stores: tuple[Store, Store],
                                       text: str) -> None:
    """A model's text, lone surrogates included, is the same live and on replay."""
    model = ScriptedModel(lambda request: reply(text))
    request = ModelRequest(messages=(Message(role="user", content="hi"),))

    async def call(ctx: Any) -> Any:
        return (await ctx.call_model(model, request)).text

    live, replay = live_and_replay(local_stores, call)
    assert live == replay and live[0] == "ok"
    live[1].encode("utf-8")  # valid text: it can go anywhere UTF-8 goes


def test_edge_values_survive_every_store(stores: tuple[Store, Store]) -> None:
    """inf, -inf, nan, -0.0, huge ints and odd text come back as the live run saw them."""
    value = {"a": [1.0, math.inf, -math.inf, math.nan, -0.0], "big": 2**MAX_INT_BITS - 1,
             "neg": -(10**300), "text": "nul\x00 é \U0001f600 lone\ud800", "t": (1, "2")}

    async def call(ctx: Any) -> Any:
        return await ctx.step("x", lambda: value)

    live, replay = live_and_replay(stores, call)
    assert live[0] == replay[0] == "ok"
    assert same(live[1], replay[1]) and same(live[1], to_json(value, what="v"))
    assert repr(live[1]["a"]) == "[1.0, inf, -inf, nan, -0.0]"
    assert live[1]["text"] == "nul\x00 é \U0001f600 lone\ufffd" and live[1]["t"] == [1, "2"]


def test_a_value_that_cannot_be_journaled_is_rejected_at_the_call(
        stores: tuple[Store, Store]) -> None:
    """An integer too large to read back fails the step with the path, live and on replay."""

    async def call(ctx: Any) -> Any:
        return await ctx.step("count", lambda: {"a": [0, 0, 2**(MAX_INT_BITS + 1)]})

    live, replay = live_and_replay(stores, call)
    assert live == replay and live[0] == "error"
    assert "step 'count'" in live[1] and "value['a'][2]" in live[1]


def test_nesting_beyond_the_bound_is_rejected_with_its_path() -> None:
    """A value nested deeper than MAX_DEPTH is a UsageError, not a parser crash on replay."""
    with pytest.raises(UsageError, match="nested deeper than"):
        to_json(nested(MAX_DEPTH + 1), what="step 'deep'")
    assert to_json(nested(MAX_DEPTH), what="step 'deep'") == nested(MAX_DEPTH)


def test_lone_surrogates_become_replacement_characters_and_pairs_join() -> None:
    """Text is made valid Unicode the way a UTF-16 decoder would: live returns that form."""
    assert to_json({"k\udc00": "a\ud800b"}, what="v") == {"k\ufffd": "a\ufffdb"}
    assert to_json("\ud83d\ude00", what="v") == "\U0001f600"


def test_a_decision_returns_live_what_it_journaled() -> None:
    """decide() returns the journaled form (tuples as lists), the form a replay returns."""
    store = MemoryStore()
    seen: list[Any] = []

    async def decides(ctx: Any) -> str:
        seen.append(internals(ctx).decide("limits", {"pair": (1, 2), "cap": math.inf}))
        return "done"

    result = asyncio.run(Runtime(store, clock=VirtualClock(), seed=1).start(decides))
    (decision,) = [e for e in store.read(result.run_id) if isinstance(e, Decision)]
    assert seen == [{"pair": [1, 2], "cap": math.inf}] == [decision.data]
    assert "Infinity" in encode(decision)


def test_a_model_raising_cancelled_error_is_a_model_failure_and_is_retried() -> None:
    """CancelledError from a model (the run not cancelled) is journaled as model_unavailable."""
    answers = iter([asyncio.CancelledError("stream aborted"), None])

    def script(request: ModelRequest) -> ModelResponse:
        problem = next(answers)
        if problem is not None:
            raise problem
        return reply("done")

    store = MemoryStore()
    runtime = Runtime(store, clock=VirtualClock(), seed=1)
    result = asyncio.run(runtime.start(Agent(name="a", model=ScriptedModel(script)), "hi"))
    assert result.status is RunStatus.COMPLETED
    (failed,) = [e for e in store.read(result.run_id) if isinstance(e, ModelFailed)]
    assert failed.failure == "model_unavailable"
    assert failed.error["type"] == f"{ModelUnavailable.__module__}.ModelUnavailable"


def test_cancelling_the_run_still_cancels_it() -> None:
    """A real cancellation of the task running the run propagates; nothing is journaled."""
    store = MemoryStore()
    started = asyncio.Event()

    class Hanging:
        name = "hanging"

        async def complete(self, request: ModelRequest) -> ModelResponse:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    async def main() -> None:
        runtime = Runtime(store, clock=VirtualClock(autojump=False), seed=1)
        task = asyncio.create_task(runtime.start(Agent(name="a", model=Hanging()), "hi",
                                                 run_id="cancelled"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    kinds = [e.kind for e in store.read("cancelled")]
    assert "model_failed" not in kinds and "run_finished" not in kinds


class Echo(BaseModel):
    q: str


def test_an_agent_whose_model_emits_a_lone_surrogate_completes_the_same_on_replay(
        stores: tuple[Store, Store]) -> None:
    """A model's text and tool arguments with lone surrogates: the run completes, and a
    replay from the store's journal returns the same result."""

    @tool
    def echo(ctx: ToolContext, args: Echo) -> str:
        """Echo."""
        return f"echo:{args.q}"

    def script(request: ModelRequest) -> ModelResponse:
        if not any(m.role == "tool" for m in request.messages):
            asked = call("echo", {"q": "x\udc80y"})
            return ModelResponse(text="thinking \ud83d", tool_calls=asked.tool_calls)
        return reply(f"done {request.messages[-1].content}")

    def agent() -> Agent:
        return Agent(name="surrogates", model=ScriptedModel(script), tools=[echo])

    store, fresh = stores
    live = asyncio.run(Runtime(store, clock=VirtualClock(start=0.0), seed=1).start(
        agent(), "hi", run_id="surrogates"))
    assert live.status is RunStatus.COMPLETED, live.reason
    replay = replayed(store, fresh, "surrogates", agent())
    assert replay.status is RunStatus.COMPLETED and replay.result == live.result
    assert live.result["answer"] == "done echo:x\ufffdy"


@pytest.mark.parametrize(("value", "found"), [
    ({1: "a", "1": "b"}, "both journaled as '1'"),
    (dict([("\ud800", 1), ("\ufffd", 2)]), "both journaled as"),
    ({"k": {True: 1}}, "a dict key True of type bool"),
    ({None: 1}, "a dict key None"),
    ({0.5: 1}, "a dict key 0.5 of type float"),
    ({(1, 2): 3}, "a dict key (1, 2) of type tuple"),
    ({"s": {3, 1}}, "a set at value['s']"),
    ([frozenset({"x"})], "a frozenset at value[0]"),
])
def test_a_value_the_journal_would_change_is_rejected_with_its_path(
        value: Any, found: str) -> None:
    """Colliding keys, keys without an exact text form, and sets are rejected, never dropped,
    renamed or reordered silently."""
    with pytest.raises(UsageError, match=re.escape(found)):
        to_json(value, what="step 'x'")


def test_integer_and_enum_keys_are_journaled_as_their_text() -> None:
    """Integer keys (and enums of text or integers) become their decimal text, as in JSON."""

    class Tier(enum.Enum):
        GOLD = "gold"

    class Level(enum.IntEnum):
        ONE = 1

    assert to_json({1: "a", -2: "b", Tier.GOLD: "c"}, what="v") == {
        "1": "a", "-2": "b", "gold": "c"}
    assert to_json({2: "a", Tier.GOLD: "c", Level.ONE: "d"}, what="v") == {
        "2": "a", "gold": "c", "1": "d"}
    assert to_json({"t": (1, [2, (3,)])}, what="v") == {"t": [1, [2, [3]]]}


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(["0", "1", "-1", "x"])),
                     max_size=6, unique=True))
def test_keys_are_kept_one_for_one_or_rejected(keys: list[int | str]) -> None:
    """Every key of a dict is journaled as its own entry, or the value is rejected."""
    value = {k: i for i, k in enumerate(keys)}
    texts = [str(k) for k in keys]
    if len(set(texts)) < len(texts):
        with pytest.raises(UsageError, match="both journaled as"):
            to_json(value, what="v")
    else:
        assert to_json(value, what="v") == dict(zip(texts, range(len(keys)), strict=True))
