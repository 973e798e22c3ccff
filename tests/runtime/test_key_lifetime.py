"""Idempotency keys have a lifetime: no re-issue relies on a key the provider may have forgotten."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Crash,
    MemoryStore,
    ProbePoint,
    RunContext,
    RunStatus,
    Runtime,
    ToolContext,
    TransientError,
    VirtualClock,
    tool,
    workflow,
)
from tether.events import ToolAmbiguous, ToolIntent
from tether.runtime.tools import Tool
from tether.sim.services.payments import Payments
from tether.sim.world import World


class Args(BaseModel):
    order_id: str


@dataclass
class ForgetfulPayments:
    """A provider that deduplicates by key for ``retention_s`` of the clock, then forgets:
    a request under a forgotten key is a new refund."""

    clock: VirtualClock
    retention_s: float
    effects: list[str] = field(default_factory=list)
    keys: dict[str, tuple[float, str]] = field(default_factory=dict)

    def refund(self, key: str) -> str:
        known = self.keys.get(key)
        if known is not None and self.clock.now() - known[0] < self.retention_s:
            return known[1]
        refund_id = f"re_{len(self.effects) + 1}"
        self.effects.append(refund_id)
        self.keys[key] = (self.clock.now(), refund_id)
        return refund_id

    def lookup(self, key: str) -> str | None:
        """What a reconcile sees: the refund made under ``key``, however old."""
        return next((r for k, (_, r) in self.keys.items() if k == key), None)


def refund_tool(payments: ForgetfulPayments, behave: Any, *, retention_s: float | None,
                reconcilable: bool = False, retry_delay_s: float | None = 0.0,
                attempts: int = 3) -> Tool[Any, Any]:
    """An idempotent refund tool whose handler does ``behave(ctx)`` around the provider call."""

    async def handler(ctx: ToolContext, args: Args) -> str:
        return str(await behave(ctx, lambda: payments.refund(ctx.idempotency_key)))

    refund = tool(name="refund", args=Args, result=str, effect="idempotent",
                  key=lambda a: f"refund:{a.order_id}", key_retention_s=retention_s,
                  retry_delay_s=retry_delay_s, attempts=attempts)(handler)
    if reconcilable:
        refund.reconcile = lambda ctx, key: payments.lookup(key)
    return refund


def flow_for(refund: Tool[Any, Any], *, calls: int = 1, wait_s: float = 0.0) -> Any:
    @workflow(name="refund_flow")
    async def flow(ctx: RunContext, order: str) -> list[str]:
        results = []
        for i in range(calls):
            if i:
                await ctx.sleep(wait_s)
            results.append(await ctx.call_tool(refund, {"order_id": order}))
        return results

    return flow


def timeout_after_commit_then(then: Any) -> Any:
    """First attempt: the provider applies the refund and the answer is lost; later: ``then``."""

    async def behave(ctx: ToolContext, send: Any) -> Any:
        if ctx.attempt == 1 and ctx.position == 0:
            send()
            raise TimeoutError("no answer")
        return await then(ctx, send)

    return behave


async def just_send(ctx: ToolContext, send: Any) -> Any:
    return send()


def test_a_retry_after_longer_than_the_key_retention_is_not_waited_out_blindly() -> None:
    """429 retry-after past the key's retention: escalated as unknown, never refunded twice."""
    clock = VirtualClock(start=0.0)
    payments = ForgetfulPayments(clock, retention_s=100.0)

    async def throttled(ctx: ToolContext, send: Any) -> Any:
        if ctx.attempt == 2:
            raise TransientError("429", retry_after_s=500.0)
        return send()

    refund = refund_tool(payments, timeout_after_commit_then(throttled), retention_s=100.0)
    rt = Runtime(MemoryStore(), clock=clock, seed=1)
    result = asyncio.run(rt.start(flow_for(refund), "A-1"))
    assert payments.effects == ["re_1"]
    assert result.status is RunStatus.ESCALATED
    assert "unknown" in result.reason and "refund:A-1" in result.reason
    assert clock.now() < 100.0


def test_a_reconcilable_lookup_settles_a_write_whose_key_would_expire() -> None:
    """With a lookup, the same storm ends in the refund found, once, and the run completes."""
    clock = VirtualClock(start=0.0)
    payments = ForgetfulPayments(clock, retention_s=100.0)

    async def throttled(ctx: ToolContext, send: Any) -> Any:
        if ctx.attempt == 2:
            raise TransientError("429", retry_after_s=500.0)
        return send()

    refund = refund_tool(payments, timeout_after_commit_then(throttled), retention_s=100.0,
                         reconcilable=True)
    result = asyncio.run(Runtime(MemoryStore(), clock=clock, seed=1).start(
        flow_for(refund), "A-1"))
    assert result.status is RunStatus.COMPLETED and result.result == ["re_1"]
    assert payments.effects == ["re_1"]


def test_a_backoff_longer_than_the_key_lifetime_is_capped_inside_it() -> None:
    """Our own backoff past the key's lifetime is shortened: the re-issue is deduplicated."""
    clock = VirtualClock(start=0.0)
    payments = ForgetfulPayments(clock, retention_s=100.0)
    refund = refund_tool(payments, timeout_after_commit_then(just_send), retention_s=100.0,
                         retry_delay_s=400.0)
    store = MemoryStore()
    result = asyncio.run(Runtime(store, clock=clock, seed=1).start(flow_for(refund), "A-1"))
    assert result.status is RunStatus.COMPLETED and result.result == ["re_1"]
    assert payments.effects == ["re_1"]
    reissue = [e for e in store.read(result.run_id) if isinstance(e, ToolIntent)][-1]
    assert reissue.attempt == 2 and reissue.at < 100.0


def _crash_then_recover_after(later_s: float) -> tuple[Any, ForgetfulPayments, MemoryStore]:
    """A refund whose worker dies between the provider's commit and the result, recovered by a
    fresh runtime ``later_s`` seconds later (the provider keeps keys 24 h)."""
    clock = VirtualClock(start=0.0)
    payments = ForgetfulPayments(clock, retention_s=24 * 3600.0)
    flow = flow_for(refund_tool(payments, just_send, retention_s=None))

    def crash(point: ProbePoint) -> None:
        if point.point == "after_call":
            raise Crash()

    store = MemoryStore()
    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=clock, seed=1, probe=crash).start(flow, "A-1"))
    clock.advance(later_s)
    (result,) = asyncio.run(Runtime(store, clock=clock, workflows=[flow]).recover())
    return result, payments, store


def test_a_recovery_after_the_key_expired_escalates_instead_of_reissuing() -> None:
    """A crash between intent and result, recovered 25 h later: no blind re-issue."""
    result, payments, store = _crash_then_recover_after(25 * 3600.0)
    assert payments.effects == ["re_1"]
    assert result.status is RunStatus.ESCALATED and "unknown" in result.reason
    assert "86,400 s" in result.reason
    assert isinstance(store.read(result.run_id)[-2], ToolAmbiguous)


def test_a_recovery_within_the_key_lifetime_still_reissues() -> None:
    """The same crash recovered an hour later re-issues under the key, deduplicated."""
    result, payments, _ = _crash_then_recover_after(3600.0)
    assert result.status is RunStatus.COMPLETED and result.result == ["re_1"]
    assert payments.effects == ["re_1"]


def test_the_same_business_key_reused_after_the_provider_forgot_it_is_not_sent_blindly() -> None:
    """A later call under the key of an earlier, possibly applied one, after a day's wait
    (an approval, a timer), measures the key's age from its first send anywhere in the run."""
    clock = VirtualClock(start=0.0)
    payments = ForgetfulPayments(clock, retention_s=24 * 3600.0)
    refund = refund_tool(payments, timeout_after_commit_then(just_send), retention_s=None)
    store = MemoryStore()
    result = asyncio.run(Runtime(store, clock=clock, seed=1).start(
        flow_for(refund, calls=2, wait_s=25 * 3600.0), "A-1"))
    assert payments.effects == ["re_1"]
    assert result.status is RunStatus.ESCALATED
    assert "position 0" in result.reason and "refund:A-1" in result.reason


def test_the_same_business_key_reused_within_its_lifetime_is_deduplicated() -> None:
    """Within the lifetime, the second call under the key is sent and the provider dedups."""
    clock = VirtualClock(start=0.0)
    payments = ForgetfulPayments(clock, retention_s=24 * 3600.0)
    refund = refund_tool(payments, just_send, retention_s=None)
    result = asyncio.run(Runtime(MemoryStore(), clock=clock, seed=1).start(
        flow_for(refund, calls=2, wait_s=3600.0), "A-1"))
    assert result.status is RunStatus.COMPLETED and result.result == ["re_1", "re_1"]


def test_the_simulated_stripe_refund_is_made_once_across_a_next_day_recovery() -> None:
    """Against the simulated payments service (keys kept 24 h), a refund interrupted after
    the provider applied it and recovered 25 h later is not refunded a second time."""
    world = World(seed=1)
    payments = Payments(world, {"charges": [{"id": "ch_1", "amount": 500}]})

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
    def create_refund(ctx: ToolContext, args: Args) -> str:
        """Refund a charge."""
        return payments.create_refund(args.order_id, amount=100,
                                      idempotency_key=ctx.idempotency_key).id

    flow = flow_for(create_refund)

    def crash(point: ProbePoint) -> None:
        if point.point == "after_call":
            raise Crash()

    store = MemoryStore()
    with pytest.raises(Crash):
        asyncio.run(Runtime(store, clock=world.clock, seed=1, probe=crash).start(flow, "ch_1"))
    world.clock.advance(25 * 3600.0)
    (result,) = asyncio.run(Runtime(store, clock=world.clock, workflows=[flow]).recover())
    assert result.status is RunStatus.ESCALATED and "unknown" in result.reason
    assert [e.operation for e in world.ledger] == ["refund"]



class _HungArgs(BaseModel):
    n: int


def test_a_lookup_that_hangs_is_cut_off_by_the_tools_timeout_and_escalates() -> None:
    """A reconcile that never answers does not hang the run: it times out and escalates."""
    calls = {"write": 0}

    async def hang(ctx: ToolContext, key: str) -> None:
        await asyncio.Event().wait()  # never set

    async def handler(ctx: ToolContext, args: _HungArgs) -> dict[str, int]:
        calls["write"] += 1
        raise TimeoutError("sent, no answer")

    write = tool(effect="reconcilable", reconcile=hang, timeout_s=5.0, attempts=2,
                 args=_HungArgs, result=dict[str, int])(handler)

    async def flow(ctx: RunContext) -> object:
        return await ctx.call_tool(write, {"n": 1})

    result = asyncio.run(Runtime(clock=VirtualClock(), seed=1).start(flow))
    assert result.status is RunStatus.ESCALATED, result
    assert calls["write"] == 1
    assert "lookup" in result.reason
