"""Agents of other frameworks in an episode: the conversation the simulator drives, tether's
tools in a foreign agent's hands under both harnesses, and the adapters."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import tether
from tether.errors import ToolFailed, UsageError
from tether.models.base import Message
from tether.sim import Environment, run_episode, scenario_from_dict
from tether.sim.foreign import (
    FinalReply,
    Replier,
    openai_chat_replier,
    replier,
    tether_tools,
)

WORLD = {"payments": {
    "customers": [{"id": "cus_1", "email": "ann@example.com", "name": "Ann"}],
    "charges": [{"id": "ch_1", "customer": "cus_1", "amount": 4_999}]}}


class RefundArgs(BaseModel):
    charge: str
    amount: int = 1_000


def refund_tool(env: Environment, *, effect: str = "idempotent") -> tether.Tool[Any, Any]:
    """A tether tool refunding a charge through the environment's payments client."""
    payments = env.client("payments")

    @tether.tool(effect=effect, key=lambda a: f"refund:{a.charge}", args=RefundArgs,
                 result=dict)
    async def issue_refund(ctx: tether.ToolContext, args: RefundArgs) -> Any:
        """Refund part of a charge."""
        return await payments.create_refund(args.charge, amount=args.amount,
                                            idempotency_key=ctx.idempotency_key or None)

    return issue_refund


class Desk:
    """A hand-written agent of "another framework": it asks which order, refunds it with the
    tool it was given (retrying any failure up to three times, as frameworks do), and ends."""

    def __init__(self, refund: Any, *, finish: bool = True) -> None:
        self.refund, self.finish = refund, finish
        self.seen: list[int] = []

    async def reply(self, conversation: Sequence[Message]) -> str:
        self.seen.append(len(conversation))
        said = " ".join(m.content for m in conversation if m.role == "user")
        found = re.search(r"ch_\w+", said)
        if found is None or not self.finish:
            return "Which order is it?"
        for attempt in range(3):
            try:
                done = await self.refund(charge=found.group())
                break
            except Exception:
                if attempt == 2:
                    return "Sorry, the refund failed."
        return FinalReply(f"Refunded {done['charge']} ({done['id']}). Goodbye!")


def desk(env: Environment) -> Replier:
    """The desk with tether's refund tool in its hands."""
    return Desk(tether_tools([refund_tool(env)])[0])


def chatty_desk(env: Environment) -> Replier:
    """A desk that never gets to the refund: it keeps asking."""
    return Desk(tether_tools([refund_tool(env)])[0], finish=False)


def unsafe_desk(env: Environment) -> Replier:
    """The desk whose refund tool is declared unsafe (no key the provider dedupes by)."""
    return Desk(tether_tools([refund_tool(env, effect="unsafe")])[0])


def unbound_desk(env: Environment) -> Replier:
    """A desk that takes nothing from the environment."""
    return replier(lambda conversation: FinalReply("Done."))


def _scenario(**overrides: Any) -> Any:
    data: dict[str, Any] = {
        "name": "foreign-refund", "agent": "unused:agent",
        "task": "My order arrived broken; please refund it.",
        "persona": {"name": "Ann", "known_facts": {"order": "ch_1"}, "patience": 3},
        "world": WORLD,
        "success": [{"exactly_once": {"effect": "payments.refund",
                                      "match": {"charge": "ch_1"}}}],
        "invariants": [{"exactly_once": {"effect": "payments.refund"}}],
    }
    data.update(overrides)
    return scenario_from_dict(data)


def _refunds(result: Any) -> int:
    return sum(1 for e in result.ledger if (e["service"], e["operation"]) ==
               ("payments", "refund"))


def _timeout_after() -> list[dict[str, Any]]:
    return [{"kind": "timeout_after", "target": "payments.create_refund", "on_call": [1]}]


def test_the_simulated_user_and_a_foreign_agent_hold_a_conversation_judged_by_the_ledger() -> None:
    """The task opens, the agent asks, the persona answers from its facts, the agent refunds
    with a tether tool and ends; the ledger holds the user's answer and one refund."""
    result = run_episode(_scenario(), 1, "default", agent=desk)
    assert result.status == "completed", result.reason
    assert result.reason == "the agent ended the conversation"
    assert result.ok and result.done
    assert [m["role"] for m in result.outcome.conversation] == [
        "user", "assistant", "user", "assistant"]
    assert result.outcome.conversation[2]["content"] == "order: ch_1"
    answers = [e for e in result.ledger if e["service"] == "user"]
    assert [a["data"]["question"] for a in answers] == ["Which order is it?"]
    assert result.answer.startswith("Refunded ch_1")
    assert [c.tool for c in result.calls] == ["issue_refund"]


def test_naive_harness_the_frameworks_retry_after_a_timeout_refunds_twice() -> None:
    """Under naive, the tool is called as the framework calls it (no key): its own retry after
    a timeout after commit refunds again, and the exactly-once invariant fails."""
    result = run_episode(_scenario(faults=_timeout_after()), 1, "naive", agent=desk)
    assert _refunds(result) == 2
    assert not result.ok
    assert result.harness == "naive"
    assert any("error" in entry for entry in result.outcome.transcript)


def test_default_harness_tether_tools_make_the_refund_once_despite_the_timeout() -> None:
    """Under default, the tool call is a durable run: the ambiguous write is re-issued under
    its key, the provider deduplicates, the agent gets its refund; one refund, all hold."""
    result = run_episode(_scenario(faults=_timeout_after()), 1, "default", agent=desk)
    assert _refunds(result) == 1
    assert result.ok and result.done, (result.status, result.reason)
    kinds = [e.kind for e in result.outcome.events]
    assert kinds.count("tool_intent") == 2  # the first send and its re-issue, one key
    assert result.firings


def test_a_worker_crash_after_the_refund_is_recovered_once_under_default_twice_naive() -> None:
    """A crash after the refund was applied: default recovers the call on a fresh runtime
    and the rebuilt agent's new call is deduplicated by key; naive refunds again."""
    faults = [{"kind": "crash", "target": "payments.create_refund", "on_call": [1]}]
    default = run_episode(_scenario(faults=faults), 1, "default", agent=desk)
    naive = run_episode(_scenario(faults=faults), 1, "naive", agent=desk)
    assert default.crashes == naive.crashes == 1
    assert _refunds(default) == 1 and default.ok and default.done
    assert default.answer.startswith("Refunded ch_1")  # the rebuilt agent's call succeeded
    assert _refunds(naive) == 2 and not naive.ok


def test_an_unsafe_write_with_an_unknown_outcome_escalates_and_is_not_sent_again() -> None:
    """An unsafe tool's timeout after commit escalates; the framework's retry under the same
    business key is refused without a request, and the episode is escalated."""
    result = run_episode(_scenario(faults=_timeout_after()), 1, "default", agent=unsafe_desk)
    assert _refunds(result) == 1
    assert result.status == "escalated"
    assert "refund:ch_1" in result.reason
    assert len([c for c in result.calls if c.target == "payments.create_refund"]) == 1


def test_the_user_ends_the_conversation_past_its_patience() -> None:
    """A persona answers its patience's worth of questions and one last plea, then leaves."""
    result = run_episode(_scenario(persona={"known_facts": {}, "patience": 2}), 1, "default",
                         agent=chatty_desk)
    assert result.status == "completed"
    assert result.reason == "the user ended the conversation"
    assert len([e for e in result.ledger if e["service"] == "user"]) == 3
    assert not result.done


def test_the_turn_limit_is_the_scenarios_max_steps() -> None:
    """budgets.max_steps bounds the agent's replies; reaching it fails the episode."""
    result = run_episode(_scenario(persona={"patience": 10}, budgets={"max_steps": 2}), 1,
                         "default", agent=chatty_desk)
    assert result.status == "failed"
    assert "2 replies" in result.reason
    assert result.model_calls == 2


def test_a_replayed_user_ends_when_its_recording_is_used_up() -> None:
    """A replayed user answers its recorded answers; then the conversation is over, and the
    episode is not inconclusive for it."""
    result = run_episode(_scenario(user={"played_by": "replay", "answers": ["It's ch_1."]}),
                         1, "default", agent=chatty_desk)
    assert result.reason == "the user ended the conversation"
    assert result.inconclusive == []
    assert result.outcome.conversation[2]["content"] == "It's ch_1."


def test_same_seed_same_digests() -> None:
    """Two runs of one seed give the same journal and ledger digests."""
    first = run_episode(_scenario(faults=_timeout_after()), 3, "default", agent=desk)
    second = run_episode(_scenario(faults=_timeout_after()), 3, "default", agent=desk)
    assert first.journal_digest == second.journal_digest
    assert first.ledger_digest == second.ledger_digest


def test_an_agent_that_took_nothing_from_the_environment_is_inconclusive() -> None:
    """A foreign agent that reached no simulated service cannot be judged by its ledger."""
    result = run_episode(_scenario(success=[], invariants=[]), 1, "default", agent=unbound_desk)
    assert any("took nothing from the environment" in r for r in result.inconclusive)


def test_a_scenario_policy_makes_a_foreign_agents_episode_inconclusive() -> None:
    """tether's policy cannot govern a foreign loop: the episode says so instead of passing."""
    policy = {"default": "allow", "rules": []}
    result = run_episode(_scenario(policy=policy), 1, "default", agent=desk)
    assert any("policy" in r for r in result.inconclusive)


def test_settings_only_tethers_loop_honours_are_refused_for_a_foreign_agent() -> None:
    """A scenario model or a harness variant's overrides cannot reach a foreign agent."""
    with pytest.raises(UsageError, match="model: own"):
        run_episode(_scenario(model={"replay": []}), 1, "default", agent=desk)
    from tether.sim.harness_spec import HarnessSpec

    variant = HarnessSpec(name="short", budgets={"max_steps": 3})
    with pytest.raises(UsageError, match="budgets"):
        run_episode(_scenario(), 1, variant, agent=desk)


def test_a_factory_returning_neither_agent_nor_replier_is_refused_naming_both() -> None:
    """The factory's result must be a tether.Agent or a Replier."""
    with pytest.raises(UsageError, match="Replier"):
        run_episode(_scenario(), 1, "default", agent=lambda env: object())


def test_tether_tools_outside_an_episode_journal_each_call_on_the_given_runtime() -> None:
    """Outside an episode each call is a run of the given runtime, keyed by the business
    key; the plain function's signature is the argument model's fields."""
    import inspect

    sent: list[str] = []

    @tether.tool(effect="idempotent", key=lambda a: f"refund:{a.charge}", args=RefundArgs,
                 result=dict)
    def refund(ctx: tether.ToolContext, args: RefundArgs) -> Any:
        sent.append(ctx.idempotency_key)
        return {"id": "re_1", "charge": args.charge}

    runtime = tether.Runtime(clock=tether.VirtualClock(), seed=1)
    (plain,) = tether_tools([refund], runtime)
    assert list(inspect.signature(plain).parameters) == ["charge", "amount"]
    assert asyncio.run(plain(charge="ch_9")) == {"id": "re_1", "charge": "ch_9"}
    assert sent == ["refund:ch_9"]
    (info,) = runtime.store.list_runs()
    kinds = [e.kind for e in runtime.store.read(info.run_id)]
    assert "tool_intent" in kinds and "tool_result" in kinds
    with pytest.raises(tether.ToolArgsInvalid):
        asyncio.run(plain(charge=5))


def test_a_permanent_tool_failure_reaches_the_framework_as_tool_failed() -> None:
    """A handler's definitive error is raised to the framework as ToolFailed."""

    @tether.tool(args=RefundArgs, result=dict)
    def broken(ctx: tether.ToolContext, args: RefundArgs) -> Any:
        raise KeyError("no such charge")

    (plain,) = tether_tools([broken], tether.Runtime(clock=tether.VirtualClock(), seed=1))
    with pytest.raises(ToolFailed, match="no such charge"):
        asyncio.run(plain(charge="ch_1"))


def test_openai_chat_replier_posts_the_conversation_and_returns_the_text() -> None:
    """The OpenAI-chat adapter sends the conversation (after its instructions) to
    /chat/completions and replies the first choice's text; done= ends the conversation."""
    seen: list[dict[str, Any]] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        assert request.headers["authorization"] == "Bearer k"
        body = json.loads(request.content)
        seen.append(body)
        return httpx.Response(200, json={"choices": [{"message": {
            "role": "assistant", "content": f"turn {len(body['messages'])}. Bye"}}]})

    agent = openai_chat_replier("http://agent.local/v1", "desk-1", api_key="k",
                                instructions="Be brief.",
                                transport=httpx.MockTransport(endpoint),
                                done=lambda text: text.endswith("Bye"))
    said = asyncio.run(agent.reply([Message.user("hello")]))
    assert said == "turn 2. Bye" and isinstance(said, FinalReply)
    assert seen[0]["model"] == "desk-1"
    assert seen[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "hello"}]


def test_openai_chat_replier_raises_a_model_error_on_a_bad_answer() -> None:
    """A 5xx or a body that is not a completion is a ModelError naming the endpoint."""
    agent = openai_chat_replier("http://agent.local/v1", "m", transport=httpx.MockTransport(
        lambda request: httpx.Response(503, text="overloaded")))
    with pytest.raises(tether.ModelError, match="503"):
        asyncio.run(agent.reply([Message.user("hi")]))
    agent = openai_chat_replier("http://agent.local/v1", "m", transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"nope": 1})))
    with pytest.raises(tether.ModelError, match="not a chat completion"):
        asyncio.run(agent.reply([Message.user("hi")]))


def test_an_openai_chat_endpoint_agent_runs_an_episode() -> None:
    """An endpoint agent takes part in an episode like any other: its replies and the user's
    answers make the conversation (it reaches nothing, so the episode says so)."""

    def endpoint(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        text = "Which order?" if len(body["messages"]) == 1 else "Noted. Goodbye"
        return httpx.Response(200, json={"choices": [{"message": {"content": text}}]})

    def factory(env: Environment) -> Replier:
        return openai_chat_replier("http://agent.local/v1", "m",
                                   transport=httpx.MockTransport(endpoint),
                                   done=lambda text: text.endswith("Goodbye"))

    result = run_episode(_scenario(success=[], invariants=[]), 1, "default", agent=factory)
    assert [m["content"] for m in result.outcome.conversation] == [
        "My order arrived broken; please refund it.", "Which order?", "order: ch_1",
        "Noted. Goodbye"]
    assert result.status == "completed"


def test_the_scenarios_duration_budget_bounds_tether_tool_calls_under_default() -> None:
    """budgets.max_duration_s is the tool calls' deadline: a write held past it by latency
    is cut off and escalated (its outcome unknown), not waited out or re-sent."""
    faults = [{"kind": "latency", "target": "payments.create_refund", "on_call": [1],
               "latency_s": 3000.0}]
    result = run_episode(_scenario(faults=faults, budgets={"max_duration_s": 300.0}), 1,
                         "default", agent=desk)
    assert result.status == "escalated"
    assert result.virtual_duration_s <= 300.0
    assert "duration budget" in result.reason


def _graph_desk(env: Environment, *, checkpointed: bool) -> Replier:
    """A LangGraph desk: a routing node asks which order or sends the graph to a refund node
    that calls tether's refund tool, retried by LangGraph's own RetryPolicy."""
    graph_module = pytest.importorskip("langgraph.graph")
    from langchain_core.messages import AIMessage
    from langgraph.types import RetryPolicy

    from tether.sim.foreign import langgraph_replier

    (refund,) = tether_tools([refund_tool(env)])

    def said(state: Any) -> str:
        return " ".join(str(m.content) for m in state["messages"] if m.type == "human")

    def route(state: Any) -> str:
        return "refund" if re.search(r"ch_\w+", said(state)) else "ask"

    def ask(state: Any) -> dict[str, Any]:
        return {"messages": [AIMessage("Which order is it?")]}

    async def do_refund(state: Any) -> dict[str, Any]:
        found = re.search(r"ch_\w+", said(state))
        assert found is not None
        done = await refund(charge=found.group())
        return {"messages": [AIMessage(f"Refunded {done['charge']}. Goodbye!")]}

    builder = graph_module.StateGraph(graph_module.MessagesState)
    builder.add_node("ask", ask)
    builder.add_node("refund", do_refund, retry_policy=RetryPolicy(
        max_attempts=3, initial_interval=0.0, jitter=False, retry_on=Exception))
    builder.add_conditional_edges(graph_module.START, route)
    builder.add_edge("ask", graph_module.END)
    builder.add_edge("refund", graph_module.END)
    config = None
    checkpointer = None
    if checkpointed:
        from langgraph.checkpoint.memory import InMemorySaver

        checkpointer = InMemorySaver()
        config = {"configurable": {"thread_id": "t1"}}
    return langgraph_replier(builder.compile(checkpointer=checkpointer), config=config,
                             done=lambda state: state["messages"][-1].content.endswith("Goodbye!"))


def graph_desk(env: Environment) -> Replier:
    """The LangGraph desk, sent the whole conversation each turn."""
    return _graph_desk(env, checkpointed=False)


def checkpointed_graph_desk(env: Environment) -> Replier:
    """The LangGraph desk on a checkpointed thread, sent only what is new."""
    return _graph_desk(env, checkpointed=True)


@pytest.mark.parametrize("factory", [graph_desk, checkpointed_graph_desk])
def test_a_langgraph_agent_converses_and_its_node_retries_are_judged(factory: Any) -> None:
    """A LangGraph graph over MessagesState takes part in the conversation; its node's own
    RetryPolicy after a timeout after commit refunds twice under naive, once under default."""
    naive = run_episode(_scenario(faults=_timeout_after()), 1, "naive", agent=factory)
    default = run_episode(_scenario(faults=_timeout_after()), 1, "default", agent=factory)
    assert [m["role"] for m in default.outcome.conversation] == [
        "user", "assistant", "user", "assistant"]
    assert default.answer == "Refunded ch_1. Goodbye!"
    assert _refunds(default) == 1 and default.ok and default.done
    assert _refunds(naive) == 2 and not naive.ok


def test_faults_aimed_at_the_model_or_the_user_that_cannot_reach_make_it_inconclusive() -> None:
    """A foreign agent calls its own model and talks with the user through the conversation:
    a model or user.ask fault that never fired is said, not passed over."""
    faults = [{"kind": "rate_limit", "target": "model", "on_call": [1]},
              {"kind": "error", "target": "user.ask", "on_call": [1]}]
    result = run_episode(_scenario(faults=faults), 1, "default", agent=desk)
    assert result.ok and result.done
    assert len([r for r in result.inconclusive if "never fired" in r]) == 2


def test_pydantic_ai_replier_keeps_history_and_rebuilds_it_from_the_conversation() -> None:
    """Each turn runs the agent on the user's new message with its history so far; an adapter
    built mid-conversation (after a crash) starts from the conversation as history; a
    structured output is replied as JSON and done= ends the conversation."""
    pydantic_ai = pytest.importorskip("pydantic_ai")
    from pydantic_ai.messages import ModelResponse, TextPart
    from pydantic_ai.models.function import FunctionModel

    from tether.sim.foreign import pydantic_ai_replier

    def model(messages: list[Any], info: Any) -> ModelResponse:
        return ModelResponse(parts=[TextPart(f"{len(messages)} messages")])

    agent = pydantic_ai.Agent(FunctionModel(model))
    desk = pydantic_ai_replier(agent, done=lambda output: output == "5 messages")
    first = asyncio.run(desk.reply([Message.user("hi")]))
    conversation = [Message.user("hi"), Message.assistant(first), Message.user("again")]
    second = asyncio.run(desk.reply(conversation))
    assert (first, second) == ("1 messages", "3 messages")
    assert not isinstance(second, FinalReply)
    rebuilt = pydantic_ai_replier(agent, done=lambda output: output == "3 messages")
    again = asyncio.run(rebuilt.reply(conversation))
    assert again == "3 messages" and isinstance(again, FinalReply)

    class Answer(BaseModel):
        text: str
        done: bool

    structured = pydantic_ai.Agent(FunctionModel(lambda messages, info: ModelResponse(
        parts=[pydantic_ai.messages.ToolCallPart(info.output_tools[0].name,
                                                 {"text": "ok", "done": True})])),
        output_type=Answer)
    said = asyncio.run(pydantic_ai_replier(structured, done=lambda out: out.done).reply(
        [Message.user("hi")]))
    assert json.loads(said) == {"text": "ok", "done": True} and isinstance(said, FinalReply)


def test_a_synchronous_reply_method_is_driven_too() -> None:
    """A replier whose reply is a plain def takes part like an async one."""

    class Plain:
        def __init__(self, env: Environment) -> None:
            (self.refund,) = tether_tools([refund_tool(env)])

        def reply(self, conversation: Sequence[Message]) -> str:
            return FinalReply("Nothing to do.")

    result = run_episode(_scenario(success=[]), 1, "default", agent=Plain)
    assert result.status == "completed" and result.answer == "Nothing to do."
