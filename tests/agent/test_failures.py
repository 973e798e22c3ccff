"""Each failure type through the loop: its journaled classification, the decision, the outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from tether import (
    Action,
    Agent,
    AuthExpired,
    Budgets,
    ContextOverflow,
    ContextWindow,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    ModelUnavailable,
    RateLimited,
    RetryPolicy,
    Rule,
    RunStatus,
    Runtime,
    ScriptedModel,
    ToolContext,
    TransientError,
    VirtualClock,
    tool,
)
from tether.events import RunFinished, TimerStarted, ToolIntent, ToolRetry
from tether.models.scripted import call, reply

from .helpers import decisions, run


class Args(BaseModel):
    order_id: str


def failing_then(errors: list[BaseException], then: Any) -> ScriptedModel:
    """A model raising ``errors`` one per request, then answering with ``then(request)``."""
    pending = list(errors)

    def script(request: ModelRequest) -> ModelResponse:
        if pending:
            raise pending.pop(0)
        return then(request)  # type: ignore[no-any-return]

    return ScriptedModel(script)


def test_rate_limit_backs_off_honoring_retry_after_on_the_run_clock() -> None:
    """429s are retried after at least retry-after, as durable timers; the answer follows."""
    clock = VirtualClock(start=1000.0)
    model = failing_then([RateLimited("slow down", retry_after_s=7.0)] * 2,
                         lambda r: reply("ok"))
    rt = Runtime(MemoryStore(), clock=clock, seed=5)
    result, events, _ = run(Agent(name="a", model=model), runtime=rt)
    assert result.status is RunStatus.COMPLETED and result.result["retries"] == 2
    made = decisions(events)
    assert [(d["failure"], d["domain"], d["action"]) for d in made] == \
        [("rate_limited", "infrastructure", "backoff")] * 2
    assert all(d["delay_s"] >= 7.0 for d in made)
    assert [round(e.wake_at - e.at, 6) for e in events if isinstance(e, TimerStarted)] == \
        [d["delay_s"] for d in made]
    assert clock.now() >= 1014.0
    assert [e.failure for e in events if e.kind == "model_failed"] == ["rate_limited"] * 2


def test_rate_limit_past_its_attempts_fails_the_run_with_the_error() -> None:
    """After the rule's attempts the run fails with RateLimited, the last decision says fail."""
    model = failing_then([RateLimited("no", retry_after_s=1.0)] * 10, lambda r: reply("x"))
    policy = RetryPolicy().with_rule("rate_limited", Rule(Action.BACKOFF, max_attempts=3,
                                                          base_delay_s=0.1))
    result, events, _ = run(Agent(name="a", model=model, retry=policy))
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"].endswith("RateLimited")
    assert [d["action"] for d in decisions(events)] == ["backoff", "backoff", "fail"]


def test_model_unavailable_backs_off_with_seeded_jitter() -> None:
    """5xx-like failures back off; the delays come from the run's seed, equal on every run."""
    def delays(seed: int) -> list[float]:
        model = failing_then([ModelUnavailable("503")] * 3, lambda r: reply("ok"))
        rt = Runtime(MemoryStore(), clock=VirtualClock(), seed=seed)
        _, events, _ = run(Agent(name="a", model=model), runtime=rt)
        return [d["delay_s"] for d in decisions(events)]

    first = delays(1)
    assert first == delays(1) and len(first) == 3
    assert first[0] <= 0.5 and first[1] <= 1.0 and first[2] <= 2.0  # exponential, capped jitter


def test_context_overflow_compresses_and_retries() -> None:
    """An overflow triggers compression (a durable step); the retried request is smaller."""
    sizes: list[int] = []
    long_history = [call("lookup", {"order_id": f"A-{i}"}, call_id=f"c{i}") for i in range(6)]

    @tool
    def lookup(ctx: ToolContext, args: Args) -> str:
        """Look up."""
        return "x" * 400

    def script(request: ModelRequest) -> ModelResponse:
        sizes.append(len(request.messages))
        turns = sum(1 for m in request.messages if m.role == "assistant")
        if len(sizes) == 7:
            raise ContextOverflow("too long")
        return long_history[turns] if turns < 6 and len(sizes) < 7 else reply("done")

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[lookup]))
    assert result.status is RunStatus.COMPLETED
    assert [d["action"] for d in decisions(events)] == ["compress"]
    assert any(e.kind == "step" and e.name == "compress_context" for e in events)
    assert sizes[7] < sizes[6]


def test_window_budget_compresses_before_asking() -> None:
    """A conversation over the window's token budget is compressed before the call."""
    seen: list[int] = []

    @tool
    def fetch(ctx: ToolContext, args: Args) -> str:
        """Fetch a long document."""
        return "y" * 2000

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(sum(len(m.content) for m in request.messages))
        turn = len(seen)
        return call("fetch", {"order_id": str(turn)}, call_id=f"f{turn}") if turn < 4 \
            else reply("done")

    agent = Agent(name="a", model=ScriptedModel(script), tools=[fetch],
                  window=ContextWindow(max_tokens=700), budgets=Budgets(repeat_limit=None))
    result, _, _ = run(agent)
    assert result.status is RunStatus.COMPLETED
    assert max(seen) < 2 * 2000 + 500  # never more than one old document plus the newest


def test_malformed_arguments_get_a_format_reminder_then_succeed() -> None:
    """Invalid JSON in tool arguments → reformat: a reminder is added and the model re-asked."""
    @tool
    def lookup(ctx: ToolContext, args: Args) -> str:
        """Look up."""
        return "found"

    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        if len(seen) == 1:
            return call("lookup", '{"order_id": "A-1"')  # broken JSON
        if len(seen) == 2:
            return call("lookup", {"order_id": "A-1"})
        return reply("ok")

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[lookup]))
    assert result.status is RunStatus.COMPLETED
    made = decisions(events)
    assert [(d["failure"], d["domain"], d["action"]) for d in made] == \
        [("malformed_output", "model", "reformat")]
    reminder = seen[1].messages[-1]
    assert reminder.source == "harness" and "valid JSON" in reminder.content


def test_malformed_output_is_bounded() -> None:
    """A model that never produces usable output fails the run after the rule's attempts."""
    model = ScriptedModel(lambda r: ModelResponse(text="   "))
    result, events, _ = run(Agent(name="a", model=model))
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"].endswith("MalformedOutput")
    assert [d["action"] for d in decisions(events)] == ["reformat", "reformat", "fail"]


def test_transient_tool_errors_retry_the_tool_not_the_model() -> None:
    """A tool raising TransientError twice is retried in place; the model is asked twice only."""
    tries: list[int] = []

    @tool(retry_delay_s=0.5)
    def flaky(ctx: ToolContext, args: Args) -> str:
        """Flaky lookup."""
        tries.append(ctx.attempt)
        if ctx.attempt < 3:
            raise TransientError("503 from upstream", retry_after_s=2.0)
        return "ok"

    model = ScriptedModel(lambda r: reply("done") if any(m.role == "tool" for m in r.messages)
                          else call("flaky", {"order_id": "A"}))
    result, events, _ = run(Agent(name="a", model=model, tools=[flaky]))
    assert result.status is RunStatus.COMPLETED and result.result["model_calls"] == 2
    retries = [e for e in events if isinstance(e, ToolRetry)]
    assert [(r.attempt, r.failure, r.delay_s) for r in retries] == \
        [(1, "transient_tool_error", 2.0), (2, "transient_tool_error", 2.0)]
    assert tries == [1, 2, 3]


def test_a_tool_that_keeps_failing_is_disabled_and_the_model_told() -> None:
    """Retries exhausted → the tool is disabled for the run and hidden from the model."""
    @tool(attempts=2, retry_delay_s=0.0)
    def broken(ctx: ToolContext, args: Args) -> str:
        """Always down."""
        raise TransientError("down")

    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return call("broken", {"order_id": "A"}) if len(seen) == 1 else reply("sorry")

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[broken]))
    assert result.status is RunStatus.COMPLETED
    assert result.result["disabled_tools"] == {"broken": "transient_tool_error 1 time(s)"}
    assert [(d["failure"], d["action"]) for d in decisions(events)] == \
        [("transient_tool_error", "disable_tool")]
    assert [t.name for t in seen[1].tools] == []
    assert "disabled for this run" in seen[1].messages[-1].content


def test_permanent_tool_error_is_an_observation() -> None:
    """A tool rejecting the call: the model reads the error and carries on."""
    @tool
    def strict(ctx: ToolContext, args: Args) -> str:
        """Rejects unknown orders."""
        raise ValueError(f"no order {args.order_id}")

    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return call("strict", {"order_id": "Z"}) if len(seen) == 1 else reply("no such order")

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[strict]))
    assert result.status is RunStatus.COMPLETED
    assert [(d["failure"], d["domain"], d["action"]) for d in decisions(events)] == \
        [("permanent_tool_error", "tool_interface", "observe")]
    assert "no order Z" in seen[1].messages[-1].content


def test_invalid_tool_calls_are_observations_naming_what_is_wrong() -> None:
    """An unknown tool and schema-invalid arguments are told to the model, not raised."""
    @tool
    def lookup(ctx: ToolContext, args: Args) -> str:
        """Look up."""
        return "ok"

    seen: list[ModelRequest] = []
    answers = [call("luukup", {"order_id": "A"}), call("lookup", {"order": 5}), reply("ok")]

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return answers[len(seen) - 1]

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[lookup]))
    assert result.status is RunStatus.COMPLETED
    assert [d["failure"] for d in decisions(events)] == ["invalid_tool_call"] * 2
    assert "there is no tool 'luukup'; available: lookup" in seen[1].messages[-1].content
    assert "order_id" in seen[2].messages[-1].content


def test_expired_model_credentials_are_refreshed_through_the_hook() -> None:
    """AuthExpired → the refresh hook runs (journaled) and the call is retried."""
    refreshed: list[str] = []
    model = failing_then([AuthExpired("token expired", dependency="m")], lambda r: reply("ok"))
    agent = Agent(name="a", model=model, refresh_auth=refreshed.append)
    result, events, _ = run(agent)
    assert result.status is RunStatus.COMPLETED and refreshed == ["scripted"]
    assert [(d["failure"], d["action"]) for d in decisions(events)] == \
        [("auth_expired", "refresh_auth")]
    assert any(e.kind == "step" and e.name == "refresh_auth" for e in events)


def test_ambiguous_write_is_reissued_with_the_same_key_and_happens_once() -> None:
    """A timeout after the refund committed: re-issued under the same key, one refund."""
    ledger: dict[str, int] = {}

    @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}", retry_delay_s=0.0)
    def refund(ctx: ToolContext, args: Args) -> str:
        """Refund an order."""
        ledger.setdefault(ctx.idempotency_key, 0)
        if ctx.attempt == 1:
            ledger[ctx.idempotency_key] += 1
            raise TimeoutError("read timed out after the write")
        return "refunded"

    model = ScriptedModel(lambda r: reply("done") if any(m.role == "tool" for m in r.messages)
                          else call("refund", {"order_id": "A-1"}))
    result, events, _ = run(Agent(name="a", model=model, tools=[refund]))
    assert result.status is RunStatus.COMPLETED and ledger == {"refund:A-1": 1}
    intents = [e for e in events if isinstance(e, ToolIntent)]
    assert [(i.key, i.attempt) for i in intents] == [("refund:A-1", 1), ("refund:A-1", 2)]


def test_ambiguous_unsafe_write_escalates_the_run() -> None:
    """An unsafe write with an unknown outcome is never re-issued: the run escalates."""
    calls: list[int] = []

    @tool(effect="unsafe")
    def wire(ctx: ToolContext, args: Args) -> str:
        """Wire money."""
        calls.append(1)
        raise TimeoutError("no answer")

    model = ScriptedModel(lambda r: call("wire", {"order_id": "A"}))
    result, _, _ = run(Agent(name="a", model=model, tools=[wire]))
    assert result.status is RunStatus.ESCALATED and calls == [1]
    assert "unsafe" in result.reason


def test_retry_budget_caps_retries_across_failure_types() -> None:
    """With a retry budget of 1, the second retryable failure fails the run."""
    model = failing_then([ModelUnavailable("503"), RateLimited("429")], lambda r: reply("x"))
    agent = Agent(name="a", model=model, retry=RetryPolicy(retry_budget=1))
    result, events, _ = run(agent)
    assert result.status is RunStatus.FAILED
    last = decisions(events)[-1]
    assert last["action"] == "fail" and last["reason"] == "the run's retry budget is spent"


@pytest.mark.parametrize("policy", [RetryPolicy.never()])
def test_a_policy_without_retries_fails_at_once(policy: RetryPolicy) -> None:
    """RetryPolicy.never(): the first 503 fails the run."""
    model = failing_then([ModelUnavailable("503")], lambda r: reply("x"))
    result, events, _ = run(Agent(name="a", model=model, retry=policy))
    assert result.status is RunStatus.FAILED
    assert [d["action"] for d in decisions(events)] == ["fail"]
    finished = next(e for e in events if isinstance(e, RunFinished))
    assert finished.error is not None and "503" in finished.error["message"]


def test_a_failed_model_call_is_not_repeated_on_resume() -> None:
    """A journaled model failure is replayed as the same error, not asked again."""
    store = MemoryStore()
    model = failing_then([ModelUnavailable("503")] * 2, lambda r: reply("ok"))
    agent = Agent(name="a", model=model)
    first = asyncio.run(Runtime(store, clock=VirtualClock(), seed=2).start(agent, "x"))
    before = model.calls
    again = asyncio.run(Runtime(store, clock=VirtualClock(), workflows=[agent]).resume(
        first.run_id))
    assert again.result == first.result and model.calls == before == 3


def test_schema_drift_is_observed_then_the_tool_disabled() -> None:
    """A result breaking the declared schema is shown to the model; twice, and it is disabled."""
    class Refund(BaseModel):
        refund_id: str

    @tool(args=Args, result=Refund)
    def drifted(ctx: ToolContext, args: Args) -> dict[str, str]:
        """The provider renamed refund_id to id."""
        return {"id": "re_1"}

    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return call("drifted", {"order_id": str(len(seen))}) if len(seen) <= 2 else reply("gave up")

    result, events, _ = run(Agent(name="a", model=ScriptedModel(script), tools=[drifted]))
    assert result.status is RunStatus.COMPLETED
    assert [(d["failure"], d["domain"], d["action"]) for d in decisions(events)] == [
        ("tool_result_invalid", "tool_interface", "observe"),
        ("tool_result_invalid", "tool_interface", "disable_tool")]
    assert "refund_id" in seen[1].messages[-1].content
    assert result.result["disabled_tools"] == {"drifted": "tool_result_invalid 2 time(s)"}


def test_tool_retries_draw_from_the_runs_retry_budget() -> None:
    """With a budget of one retry for the run, a tool failing twice is retried once only."""
    tries: list[int] = []

    @tool(attempts=5, retry_delay_s=0.0)
    def flaky(ctx: ToolContext, args: Args) -> str:
        """Fails until the third attempt."""
        tries.append(ctx.attempt)
        if ctx.attempt < 3:
            raise TransientError("503")
        return "ok"

    model = ScriptedModel(lambda r: reply("done") if any(m.role == "tool" for m in r.messages)
                          else call("flaky", {"order_id": "A"}))
    agent = Agent(name="a", model=model, tools=[flaky], retry=RetryPolicy(retry_budget=1))
    result, events, _ = run(agent)
    assert tries == [1, 2]
    assert [e.attempt for e in events if isinstance(e, ToolRetry)] == [1]
    assert result.result["disabled_tools"] == {"flaky": "transient_tool_error 1 time(s)"}
