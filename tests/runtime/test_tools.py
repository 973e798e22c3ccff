"""Tool declarations: schemas, argument validation, idempotency keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Effect,
    RunContext,
    Runtime,
    ToolArgsInvalid,
    ToolContext,
    UsageError,
    VirtualClock,
    tool,
)


class RefundArgs(BaseModel):
    order_id: str
    amount_cents: int


class Refund(BaseModel):
    refund_id: str


@tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
async def issue_refund(ctx: ToolContext, args: RefundArgs) -> Refund:
    """Refund an order in full."""
    return Refund(refund_id=f"re_{ctx.idempotency_key}")


@tool(effect="unsafe")
def wire(ctx: ToolContext, args: RefundArgs) -> dict[str, str]:
    """Wire money; the bank cannot deduplicate."""
    return {"key": ctx.idempotency_key}


def test_declaration_reads_types_and_docstring() -> None:
    """Args model, result type, description and effect come from the handler."""
    assert issue_refund.effect is Effect.IDEMPOTENT and issue_refund.effect.writes
    assert issue_refund.description == "Refund an order in full."
    schema = issue_refund.args_schema()
    assert schema["required"] == ["order_id", "amount_cents"]
    assert issue_refund.result_schema()["properties"]["refund_id"]["type"] == "string"


def test_keys_come_from_business_identity_or_run_position() -> None:
    """A declared key names the business operation; the default is (run, position)."""

    async def wf(ctx: RunContext) -> list[Any]:
        refund = await ctx.call_tool(issue_refund, {"order_id": "o-9", "amount_cents": 5})
        wired = await ctx.call_tool(wire, RefundArgs(order_id="o-9", amount_cents=5))
        return [refund.refund_id, wired["key"]]

    result = asyncio.run(Runtime(clock=VirtualClock(), seed=1).start(wf, run_id="r7"))
    assert result.result == ["re_refund:o-9", "r7:1"]


def test_invalid_arguments_are_refused_before_any_intent() -> None:
    """Schema-invalid arguments raise ToolArgsInvalid and journal nothing for the call."""

    async def wf(ctx: RunContext) -> str:
        try:
            await ctx.call_tool(issue_refund, {"order_id": "o", "amount_cents": "lots"})
        except ToolArgsInvalid as exc:
            return str(exc)
        return "called"

    rt = Runtime(clock=VirtualClock(), seed=1)
    result = asyncio.run(rt.start(wf))
    assert "amount_cents" in result.result
    assert [e.kind for e in rt.store.read(result.run_id)] == ["run_started", "run_finished"]


def test_bad_declarations_fail_at_import_time() -> None:
    """Handlers without a pydantic args annotation, or zero attempts, are refused."""
    with pytest.raises(UsageError, match="pydantic model"):
        @tool
        def untyped(ctx: ToolContext, args: dict) -> None: ...  # type: ignore[type-arg]

    with pytest.raises(UsageError, match="attempts"):
        @tool(attempts=0)
        def never(ctx: ToolContext, args: RefundArgs) -> None: ...


def test_handlers_defined_inside_functions_declare_their_models_explicitly() -> None:
    class LocalArgs(BaseModel):
        order_id: str

    class LocalResult(BaseModel):
        ok: bool

    def lookup(ctx: ToolContext, args: LocalArgs) -> LocalResult:
        return LocalResult(ok=True)

    # Postponed annotations cannot see function locals: the error says what to do.
    with pytest.raises(UsageError, match="pass args= and result="):
        tool(lookup)
    declared = tool(args=LocalArgs, result=LocalResult)(lookup)
    assert declared.args_type is LocalArgs
    assert declared.result_type is LocalResult
