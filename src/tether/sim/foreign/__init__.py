"""Agents of other frameworks in an episode: a one-method adapter, and tether's tools for them.

An agent built with Pydantic AI, LangGraph, the OpenAI Agents SDK or served behind an HTTP
endpoint takes part in an episode through one method — given the conversation so far, return
the agent's next reply::

    class Replier(Protocol):
        async def reply(self, conversation: Sequence[tether.Message]) -> str: ...

A scenario's ``agent:`` factory may return a :class:`Replier` instead of a
:class:`tether.Agent`. The episode then drives the conversation: the task is the user's first
message, the agent replies, the simulated user (:mod:`tether.sim.users`) answers, and so on
until one of them ends it:

* the agent: a reply that is a :class:`FinalReply` (adapters take ``done=``, a predicate on
  the framework's output, to return one);
* the user: a replayed user whose recording is used up, or a persona (scripted or played by a
  model) past its patience — it answers ``persona.patience`` questions and one last "please
  just do it", then leaves;
* the turn limit: ``budgets.max_steps`` of the scenario counts the agent's replies here
  (default 20); reaching it ends the episode as ``failed``. The episode's ``model_calls``
  count the replies too: the framework's own model calls are not seen.

The agent's tools reach the world as they would reach production, through what the factory
takes from the :class:`~tether.sim.environment.Environment`: ``env.http_transport()`` /
``env.base_url(service)`` for ``httpx``, ``env.stripe_http_client()`` for the ``stripe`` SDK,
MCP, or ``env.client(service)``. The ledger, the invariants and the success checks judge the
episode exactly as they judge a tether agent's.

**Harnesses.** tether cannot reach inside another framework's loop, so the framework's agent
*is* the naive baseline. What tether can put in its hands are its tools:
:func:`tether_tools` turns :class:`tether.Tool` s into plain async functions any framework
registers. Under the ``default`` harness each call of one is a durable tether run on the
episode's runtime: journaled, keyed (the tool's business key, else one per call), retried by
the retry policy, an ambiguous write re-issued under its key, reconciled, or escalated by its
effect class, a crashed worker's call recovered, and none started or waited out past the
scenario's ``budgets.max_duration_s``. Under ``naive`` the same functions call the handlers
directly, with no key and no journal, and the framework's own retries are all there is. What
does not transfer: policy, approvals and the other budgets are applied by tether's agent loop
to the calls a model asks for; a foreign loop decides its calls itself, so a scenario's
``policy:`` makes such an episode inconclusive. A call is known by its business key, else by
its tool and arguments: the framework's retry of a call tether escalated is refused without a
request, and the agent rebuilt after a crash that makes a call again which recovery settled
gets the settled result. A tool without a business key gets a new key per call, so a
framework that repeats a call tether *completed* makes a new request.

Adapters: :func:`replier` (a plain function), :func:`openai_chat_replier` (an HTTP endpoint
that speaks OpenAI chat completions), :func:`pydantic_ai_replier` (keeps the agent's message
history across turns) and :func:`langgraph_replier` (a compiled graph over a ``messages``
state). Any other framework is a function away; the OpenAI Agents SDK, for one::

    async def reply(conversation):
        items = [{"role": m.role, "content": m.content} for m in conversation]
        return (await agents.Runner.run(desk, items)).final_output

    def agent(env):  # the scenario's factory
        return replier(reply)

Scenario settings only tether's own agent loop can honour — ``model:`` other than ``own``,
``recorded:``, a harness variant's overrides — are refused for a foreign agent; faults aimed at
its model or at the user (``model``, ``user.ask``) cannot reach it, and when they do not fire
the episode is inconclusive.
"""

from tether.sim.foreign.conversation import (
    DEFAULT_MAX_TURNS,
    build_participant,
    converse,
    run_replier,
)
from tether.sim.foreign.replier import (
    FinalReply,
    Replier,
    langgraph_replier,
    openai_chat_replier,
    pydantic_ai_replier,
    replier,
)
from tether.sim.foreign.tools import tether_tools

__all__ = [
    "DEFAULT_MAX_TURNS",
    "FinalReply",
    "Replier",
    "build_participant",
    "converse",
    "langgraph_replier",
    "openai_chat_replier",
    "pydantic_ai_replier",
    "replier",
    "run_replier",
    "tether_tools",
]
