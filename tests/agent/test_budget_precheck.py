"""Count budgets are checked before a call: a budget of N makes at most N calls; token and
cost budgets, known only after a call, stop the next call once they are reached."""

from __future__ import annotations

from pydantic import BaseModel

from tests.models.local_server import LocalServer, tool_call_completion
from tether import (
    Agent,
    Budgets,
    ModelRequest,
    ModelResponse,
    Price,
    PriceTable,
    RunStatus,
    ScriptedModel,
    ToolContext,
    Usage,
    tool,
)
from tether.models.openai import OpenAIModel
from tether.models.scripted import call
from tether.runtime.budgets import Meter

from .helpers import decisions, run


class Args(BaseModel):
    n: int


made: list[int] = []


@tool
def count(ctx: ToolContext, args: Args) -> int:
    """Count."""
    made.append(args.n)
    return args.n


def counting_model() -> ScriptedModel:
    """Calls ``count`` with a new number each turn, forever."""
    return ScriptedModel(lambda r: call("count", {"n": len(r.messages)}))


def test_a_model_call_budget_of_three_makes_three_calls_over_http() -> None:
    """max_model_calls=3 against a real HTTP endpoint that always asks for a tool: the server
    sees exactly 3 requests, and the reason says the limit was reached, not crossed."""
    with LocalServer([(200, tool_call_completion("count", '{"n": 1}'))]) as server:
        model = OpenAIModel("local-model", base_url=server.url + "/v1")
        agent = Agent(name="a", model=model, tools=[count],
                      budgets=Budgets(max_model_calls=3, repeat_limit=None))
        result, events, _ = run(agent)
        assert server.requests == 3
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["data"] == {"limit": "max_model_calls"}
    (budget,) = decisions(events, "budget")
    assert budget["reason"].startswith("max_model_calls: used 3 model calls, limit 3")


def test_a_retried_model_call_is_checked_too() -> None:
    """A malformed answer retried inside one turn does not slip past the model-call budget."""
    model = ScriptedModel(lambda r: ModelResponse(text=""))  # never usable: always reformat
    agent = Agent(name="a", model=model, budgets=Budgets(max_model_calls=2))
    result, _, _ = run(agent)
    assert model.calls == 2
    assert result.status is RunStatus.FAILED and "max_model_calls" in result.reason


def test_a_tool_call_budget_of_two_makes_two_calls() -> None:
    """One call per response: the third is refused before it runs (the old check ran it)."""
    made.clear()
    agent = Agent(name="a", model=counting_model(), tools=[count],
                  budgets=Budgets(max_tool_calls=2))
    result, events, _ = run(agent)
    assert len(made) == 2
    assert result.status is RunStatus.FAILED and "max_tool_calls" in result.reason
    (budget,) = decisions(events, "budget")
    assert budget["reason"].startswith("max_tool_calls: used 2 tool calls, limit 2")


def test_a_batch_that_would_cross_the_tool_budget_runs_none_of_it() -> None:
    """A response asking for 3 calls with 2 left: the run stops before any of them runs."""
    made.clear()

    def script(request: ModelRequest) -> ModelResponse:
        calls = tuple(c for n in range(3) for c in call("count", {"n": n}).tool_calls)
        return ModelResponse(tool_calls=tuple(
            c.model_copy(update={"id": f"call_{i}"}) for i, c in enumerate(calls)))

    agent = Agent(name="a", model=ScriptedModel(script), tools=[count],
                  budgets=Budgets(max_tool_calls=2))
    result, _, _ = run(agent)
    assert made == []
    assert result.status is RunStatus.FAILED and "max_tool_calls" in result.reason


def test_a_token_budget_reached_exactly_stops_the_next_call() -> None:
    """Each call uses 20 tokens; max_tokens=60 allows 3 calls (60 reached), not a 4th."""
    model = ScriptedModel(lambda r: ModelResponse(
        tool_calls=call("count", {"n": len(r.messages)}).tool_calls,
        usage=Usage(input_tokens=15, output_tokens=5)))
    agent = Agent(name="a", model=model, tools=[count], budgets=Budgets(max_tokens=60))
    result, _, _ = run(agent)
    assert model.calls == 3
    assert "max_tokens: used 60 tokens, limit 60" in result.reason


def test_a_cost_budget_reached_exactly_stops_the_next_call() -> None:
    """$0.01 a call and a $0.03 budget: three calls spend it all, a fourth does not start."""
    model = ScriptedModel(lambda r: ModelResponse(
        tool_calls=call("count", {"n": len(r.messages)}).tool_calls,
        usage=Usage(input_tokens=1000, output_tokens=0), model="pricey"))
    prices = PriceTable().with_prices({"pricey": Price(10.0, 0.0)})
    agent = Agent(name="a", model=model, tools=[count], prices=prices,
                  budgets=Budgets(max_cost_usd=0.03))
    result, _, _ = run(agent)
    assert model.calls == 3 and "max_cost_usd" in result.reason


def test_meter_rules_before_a_call() -> None:
    """The pure rule: counts refuse a call that would pass the limit; spent amounts refuse
    any call once the limit is reached; steps and retries keep counting what has happened."""
    meter = Meter(Budgets(max_model_calls=2, max_tool_calls=2, max_tokens=10))
    assert meter.breach(0.0, model_calls=1) is None
    meter.model_call(Usage(input_tokens=4), 0.0)
    meter.model_call(Usage(input_tokens=4), 0.0)
    breach = meter.breach(0.0, model_calls=1)
    assert breach is not None and breach.limit == "max_model_calls"
    assert meter.breach(0.0) is None  # two calls made, two allowed: nothing crossed
    meter.tool_call("t", "{}", ok=True)
    assert meter.before_tool_calls(1) is None
    crossed = meter.before_tool_calls(2)
    assert crossed is not None and crossed.limit == "max_tool_calls"
    assert "2 more would pass it" in crossed.reason
    tokens = Meter(Budgets(max_tokens=10))
    tokens.model_call(Usage(input_tokens=10), 0.0)
    spent = tokens.breach(0.0)
    assert spent is not None and spent.limit == "max_tokens"
