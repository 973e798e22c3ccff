"""Per-call timeouts on the run's clock, tool credentials refreshed, summaries by a model."""

from __future__ import annotations

from pydantic import BaseModel

from tether import (
    Agent,
    AuthExpired,
    ContextOverflow,
    ContextWindow,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    VirtualClock,
    tool,
)
from tether.agent.window import summarize_with_model
from tether.events import ToolAmbiguous, ToolRetry
from tether.models.scripted import call, reply

from .helpers import decisions, run


class Args(BaseModel):
    order_id: str


def asks_once(name: str) -> ScriptedModel:
    return ScriptedModel(lambda r: reply("done") if any(m.role == "tool" for m in r.messages)
                         else call(name, {"order_id": "A-1"}))


def test_a_slow_read_times_out_on_the_run_clock_and_is_retried() -> None:
    """A read slower than its timeout_s is cut off and retried (tool_retry journaled)."""
    clock = VirtualClock(start=0.0)
    attempts: list[int] = []

    async def slow_lookup(ctx: ToolContext, args: Args) -> str:
        attempts.append(ctx.attempt)
        await clock.sleep(30 if ctx.attempt == 1 else 1)
        return "found"

    lookup = tool(name="lookup", args=Args, result=str, timeout_s=5, retry_delay_s=0.0)(
        slow_lookup)
    rt = Runtime(MemoryStore(), clock=clock, seed=1)
    result, events, _ = run(Agent(name="a", model=asks_once("lookup"), tools=[lookup]),
                            runtime=rt)
    assert result.status is RunStatus.COMPLETED and attempts == [1, 2]
    (retry,) = [e for e in events if isinstance(e, ToolRetry)]
    assert retry.error["type"] == "TimeoutError"
    assert clock.now() < 30  # the slow attempt was abandoned at 5 s


def test_a_write_that_times_out_is_ambiguous_and_reissued_with_its_key() -> None:
    """A write cut off by its timeout may have happened: ambiguous, re-issued, same key."""
    clock = VirtualClock(start=0.0)
    keys: list[tuple[str, int]] = []

    async def slow_refund(ctx: ToolContext, args: Args) -> str:
        keys.append((ctx.idempotency_key, ctx.attempt))
        await clock.sleep(30 if ctx.attempt == 1 else 1)
        return "refunded"

    refund = tool(name="refund", args=Args, result=str, effect="idempotent", timeout_s=5,
                  retry_delay_s=0.0, key=lambda a: f"refund:{a.order_id}")(slow_refund)
    rt = Runtime(MemoryStore(), clock=clock, seed=1)
    result, events, _ = run(Agent(name="a", model=asks_once("refund"), tools=[refund]),
                            runtime=rt)
    assert result.status is RunStatus.COMPLETED
    assert keys == [("refund:A-1", 1), ("refund:A-1", 2)]
    assert next(e.reason for e in events if isinstance(e, ToolAmbiguous)).startswith(
        "TimeoutError")


def test_a_model_call_slower_than_its_timeout_is_unavailable_and_backed_off() -> None:
    """ModelSettings.timeout_s bounds a model call on the run's clock; the retry succeeds."""
    clock = VirtualClock(start=0.0)
    calls: list[int] = []

    async def script(request: ModelRequest) -> ModelResponse:
        calls.append(1)
        await clock.sleep(60 if len(calls) == 1 else 1)
        return reply("ok")

    agent = Agent(name="a", model=ScriptedModel(script),
                  settings=ModelSettings(timeout_s=10))
    result, events, _ = run(agent, runtime=Runtime(MemoryStore(), clock=clock, seed=1))
    assert result.status is RunStatus.COMPLETED and len(calls) == 2
    assert [(d["failure"], d["action"]) for d in decisions(events)] == \
        [("model_unavailable", "backoff")]


def test_a_tool_with_expired_credentials_is_refreshed_and_called_again() -> None:
    """A tool raising AuthExpired: the hook renews credentials, the call is made again."""
    token = {"valid": False}
    refreshed: list[str] = []

    @tool
    def crm(ctx: ToolContext, args: Args) -> str:
        """Read the CRM."""
        if not token["valid"]:
            raise AuthExpired("token expired", dependency="crm")
        return "customer: Ada"

    def refresh(dependency: str) -> None:
        refreshed.append(dependency)
        token["valid"] = True

    agent = Agent(name="a", model=asks_once("crm"), tools=[crm], refresh_auth=refresh)
    result, events, _ = run(agent)
    assert result.status is RunStatus.COMPLETED and refreshed == ["crm"]
    assert [(d["failure"], d["action"]) for d in decisions(events)] == \
        [("auth_expired", "refresh_auth")]
    assert [e.kind for e in events].count("tool_result") == 1


def test_overflow_summarized_by_a_model() -> None:
    """summarize_with_model: the summary replaces old turns, written by the summarizer model."""
    summaries: list[str] = []

    def summarizer(request: ModelRequest) -> ModelResponse:
        summaries.append(request.messages[-1].content)
        return reply("order A-0 and A-1 were looked up")

    @tool
    def lookup(ctx: ToolContext, args: Args) -> str:
        """Look up."""
        return "z" * 200

    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        if len(seen) == 4:
            raise ContextOverflow("too long")
        if len(seen) <= 3:
            return call("lookup", {"order_id": f"A-{len(seen) - 1}"}, call_id=f"c{len(seen)}")
        return reply("done")

    window = ContextWindow(compressor=summarize_with_model(ScriptedModel(summarizer)))
    result, _, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[lookup],
                             window=window))
    assert result.status is RunStatus.COMPLETED and len(summaries) == 1
    assert "lookup" in summaries[0]
    notes = [m.content for m in seen[4].messages if m.source == "summary"]
    assert notes == ["Summary of the earlier conversation: order A-0 and A-1 were looked up"]
