"""The framework adapters reply only what the agent said: a graph that added no message of its
own has not replied (its input is not its answer); and what a factory returns is checked before
the conversation starts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether.errors import UsageError
from tether.models.base import Message
from tether.sim import Environment, run_episode, scenario_from_dict
from tether.sim.foreign import FinalReply, langgraph_replier


def _graph(node: Any, *, checkpointed: bool = False) -> Any:
    graph_module = pytest.importorskip("langgraph.graph")
    builder = graph_module.StateGraph(graph_module.MessagesState)
    builder.add_node("agent", node)
    builder.add_edge(graph_module.START, "agent")
    builder.add_edge("agent", graph_module.END)
    if not checkpointed:
        return builder.compile()
    from langgraph.checkpoint.memory import InMemorySaver

    return builder.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize("checkpointed", [False, True])
def test_a_graph_that_added_no_reply_has_not_replied(checkpointed: bool) -> None:
    """A graph whose final state ends with the user's message (its node added nothing) is
    an error naming that, not a reply echoing the user."""
    config = {"configurable": {"thread_id": "t"}} if checkpointed else None
    agent = langgraph_replier(_graph(lambda state: {}, checkpointed=checkpointed),
                              config=config)
    with pytest.raises(UsageError, match="no reply"):
        asyncio.run(agent.reply((Message.user("Please refund ch_1. Goodbye!"),)))


def test_a_graphs_own_message_is_its_reply() -> None:
    """The AI message the graph added (an object or a dict) is the reply."""
    said = langgraph_replier(_graph(lambda state: {"messages": [
        {"role": "assistant", "content": "Which order?"}]}))
    assert asyncio.run(said.reply((Message.user("Refund please"),))) == "Which order?"


class Desk:
    """A replier class."""

    async def reply(self, conversation: Any) -> str:
        return FinalReply("Goodbye.")


def test_a_factory_returning_the_replier_class_not_an_instance_is_a_usage_error() -> None:
    """``return Desk`` instead of ``return Desk()`` is said as such before anything runs,
    not reported as the agent failing with a TypeError."""

    def factory(env: Environment) -> Any:
        env.base_url("payments")
        return Desk

    scenario = scenario_from_dict({"name": "cls", "agent": "unused:agent", "task": "t"})
    with pytest.raises(UsageError, match=r"the class Desk.*Desk\(\.\.\.\)"):
        run_episode(scenario, 1, "default", agent=factory)
    made = run_episode(scenario, 1, "default",
                       agent=lambda env: (env.base_url("payments"), Desk())[1])
    assert (made.status, made.answer) == ("completed", "Goodbye.")
