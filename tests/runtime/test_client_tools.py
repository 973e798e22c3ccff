"""Continuing an execution: unknown, unrequested, invalid, late, duplicate and conflicting."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Agent,
    ClientResultConflict,
    ClientResultRefused,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    RunStatus,
    Runtime,
    ScriptedModel,
    UnknownExecution,
    UsageError,
    VirtualClock,
    client_tool,
)
from tether.errors import rebuild_error
from tether.models.scripted import call, reply


class Charge(BaseModel):
    order_id: str
    amount_cents: int


class Receipt(BaseModel):
    charge_id: str
    amount_cents: int


def build(model_log: list[int]) -> Agent:
    charge = client_tool("charge", args=Charge, result=Receipt, effect="idempotent",
                         key=lambda a: f"charge:{a.order_id}", timeout_s=30)

    def script(request: ModelRequest) -> ModelResponse:
        model_log.append(len(request.messages))
        seen = [m.content for m in request.messages if m.role == "tool"]
        if not seen:
            return call("charge", {"order_id": "o1", "amount_cents": 700}, call_id="k1")
        return reply(f"done: {seen[-1]}")

    return Agent(name="payer", model=ScriptedModel(script), tools=[charge])


@pytest.fixture
def waiting() -> tuple[Runtime, str, list[int], VirtualClock]:
    clock = VirtualClock()
    log: list[int] = []
    rt = Runtime(MemoryStore(), clock=clock, seed=5)
    result = asyncio.run(rt.start(build(log), "charge it"))
    assert result.status is RunStatus.WAITING
    return rt, result.run_id, log, clock


GOOD = {"charge_id": "ch_1", "amount_cents": 700}


def test_unknown_execution_is_refused(waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """Continuing an execution the store does not hold raises UnknownExecution."""
    rt = waiting[0]
    with pytest.raises(UnknownExecution, match="no execution 'nope'"):
        asyncio.run(rt.continue_execution("nope", {"k1": GOOD}))
    with pytest.raises(UnknownExecution):
        rt.pending_client_calls("nope")


def test_result_for_a_call_never_requested_is_refused_and_nothing_recorded(
        waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """A result for a call id the execution never asked for is refused, the batch with it."""
    rt, run_id, _, _ = waiting
    before = len(rt.store.read(run_id))
    with pytest.raises(ClientResultRefused, match="never requested client call 'zz'") as info:
        asyncio.run(rt.continue_execution(run_id, {"k1": GOOD, "zz": GOOD}))
    assert (info.value.execution_id, info.value.call_id) == (run_id, "zz")
    assert len(rt.store.read(run_id)) == before
    assert [p.call_id for p in rt.pending_client_calls(run_id)] == ["k1"]


@pytest.mark.parametrize("bad", [
    {"charge_id": "ch_1"},
    {"charge_id": 5, "amount_cents": 700},
    {"charge_id": "ch_1", "amount_cents": True},
    "ch_1",
    None,
])
def test_result_breaking_the_schema_is_refused_and_nothing_recorded(
        waiting: tuple[Runtime, str, list[int], Any], bad: Any) -> None:
    """A result that does not fit the tool's result schema is refused with the reason."""
    rt, run_id, log, _ = waiting
    before = len(rt.store.read(run_id))
    with pytest.raises(ClientResultRefused, match="breaks its result schema"):
        asyncio.run(rt.continue_execution(run_id, {"k1": bad}))
    assert len(rt.store.read(run_id)) == before
    assert len(log) == 1


def test_duplicate_continue_is_a_no_op_and_the_write_counts_once(
        waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """The same results twice: recorded once, the model asked once more, no new request."""
    rt, run_id, log, _ = waiting
    [request] = rt.pending_client_calls(run_id)
    client_ledger = {request.idempotency_key: GOOD}  # the client performs the write once
    first = asyncio.run(rt.continue_execution(run_id, {"k1": client_ledger["charge:o1"]}))
    journal = rt.store.read(run_id)
    second = asyncio.run(rt.continue_execution(run_id, {"k1": GOOD}))
    assert first.status is second.status is RunStatus.COMPLETED
    assert first.result == second.result
    assert rt.store.read(run_id) == journal
    assert len(log) == 2
    assert rt.pending_client_calls(run_id) == []


def test_duplicate_continue_before_the_resume_records_nothing_more(
        waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """Without resuming, a repeat of the same results appends nothing."""
    rt, run_id, _, _ = waiting
    asyncio.run(rt.continue_execution(run_id, {"k1": GOOD}, resume=False))
    journal = rt.store.read(run_id)
    again = asyncio.run(rt.continue_execution(run_id, {"k1": GOOD}, resume=False))
    assert rt.store.read(run_id) == journal
    assert again.status is RunStatus.RUNNING


def test_a_different_result_for_an_answered_call_is_a_conflict(
        waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """Another result for an answered call raises ClientResultConflict; the first stands."""
    rt, run_id, _, _ = waiting
    done = asyncio.run(rt.continue_execution(run_id, {"k1": GOOD}))
    other = {"charge_id": "ch_2", "amount_cents": 700}
    with pytest.raises(ClientResultConflict, match="first answer stands") as info:
        asyncio.run(rt.continue_execution(run_id, {"k1": other}))
    assert info.value.value == GOOD
    assert asyncio.run(rt.resume(run_id)).result == done.result


def test_a_result_after_the_deadline_is_refused(
        waiting: tuple[Runtime, str, list[int], VirtualClock]) -> None:
    """A late result (past timeout_s on the runtime's clock) is refused before anything."""
    rt, run_id, _, clock = waiting
    clock.advance(30)
    before = len(rt.store.read(run_id))
    with pytest.raises(ClientResultRefused, match="before its deadline"):
        asyncio.run(rt.continue_execution(run_id, {"k1": GOOD}))
    assert len(rt.store.read(run_id)) == before


def test_empty_results_are_a_usage_error(
        waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """A continue needs at least one result."""
    rt, run_id, _, _ = waiting
    with pytest.raises(UsageError, match="non-empty"):
        asyncio.run(rt.continue_execution(run_id, {}))


def test_pending_lists_every_waiting_execution(
        waiting: tuple[Runtime, str, list[int], Any]) -> None:
    """pending_client_calls() without an id lists the calls of all waiting executions."""
    rt, run_id, log, _ = waiting
    elsewhere = Runtime(rt.store, clock=VirtualClock(), seed=9)
    other = asyncio.run(elsewhere.start(build(log), "again")).run_id
    assert sorted(p.execution_id for p in rt.pending_client_calls()) == sorted([run_id, other])
    assert rt.pending_client_calls()[0].as_data()["tool"] == "charge"


def test_client_tool_has_no_server_handler() -> None:
    """Calling a client tool as a server tool is a clear usage error."""
    charge = client_tool("charge", args=Charge)

    async def wf(ctx: Any) -> Any:
        return await ctx.call_tool(charge, {"order_id": "o", "amount_cents": 1})

    result = asyncio.run(Runtime(MemoryStore(), clock=VirtualClock(), seed=1).start(wf))
    assert result.status is RunStatus.FAILED
    assert "client tool" in str(result.error)


def test_client_tool_declaration_is_checked() -> None:
    """A client tool needs a pydantic args model and a positive timeout."""
    with pytest.raises(UsageError, match="pydantic model"):
        client_tool("x", args=dict)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="timeout_s"):
        client_tool("x", args=Charge, timeout_s=0)


@pytest.mark.parametrize("error", [
    UnknownExecution("m", execution_id="e"),
    ClientResultRefused("m", execution_id="e", call_id="c"),
    ClientResultConflict("m", run_id="e", key="client:1:c", value={"a": 1}),
])
def test_errors_round_trip(error: Exception) -> None:
    """The new errors survive pickling and the journal's record form."""
    for copy in (pickle.loads(pickle.dumps(error)),
                 rebuild_error(error.to_record())):  # type: ignore[attr-defined]
        assert type(copy) is type(error)
        assert vars(copy) == vars(error)
