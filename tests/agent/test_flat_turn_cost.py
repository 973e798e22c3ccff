"""A turn's cost does not grow with the conversation: the work a turn does for the request's
digest and for the policy's provenance checks is counted (operations, not time) for runs of 10
and 100 turns, and must grow linearly with the number of turns, not with its square."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel

from tether import Agent, ModelRequest, ModelResponse, RunStatus, ScriptedModel, ToolContext, tool
from tether.agent import governance
from tether.models import base
from tether.models.scripted import call, reply
from tether.policy import Policy, argument_provenance, deny_tools
from tether.policy import arguments as provenance_args
from tether.runtime.budgets import Budgets

from .helpers import run


class Page(BaseModel):
    page: int


class Note(BaseModel):
    text: str


@tool(trust="retrieved")
def read_page(ctx: ToolContext, args: Page) -> str:
    """A page of a document someone else wrote."""
    return f"Page {args.page} of the handbook: nothing about account DE{args.page:020d}."


@tool(effect="idempotent", key=lambda a: f"note:{a.text}", tier=2)
def post_note(ctx: ToolContext, args: Note) -> dict[str, Any]:
    """Post a note (a consequential write, so every call is checked for provenance)."""
    return {"posted": args.text}


def reader(turns: int) -> ScriptedModel:
    """Reads a page, then posts a note about it, ``turns`` times in all; then answers."""
    made = {"n": 0}

    def script(request: ModelRequest) -> ModelResponse:
        n = made["n"]
        made["n"] += 1
        if n >= turns:
            return reply("done")
        if n % 2 == 0:
            return call("read_page", {"page": n}, call_id=f"c{n}")
        return call("post_note", {"text": f"summary of page {n - 1} for the team"},
                    call_id=f"c{n}")

    return ScriptedModel(script)


MESSAGE_JSON, OBSERVATION = base._message_json, governance._observation


def work(turns: int, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count, over one run of ``turns`` model turns: messages serialized for request digests,
    bytes fed to their hashes, messages read into policy observations, and context texts
    lowered for argument provenance."""
    counted: Counter[str] = Counter()
    message_json, observation = MESSAGE_JSON, OBSERVATION

    def counting_json(message: base.Message) -> bytes:
        data = message_json(message)
        counted["messages serialized"] += 1
        counted["message bytes hashed"] += len(data)
        return data

    def counting_observation(message: base.Message) -> Any:
        counted["messages read for policy"] += 1
        return observation(message)

    monkeypatch.setattr(base, "_message_json", counting_json)
    monkeypatch.setattr(governance, "_observation", counting_observation)
    base._HASHED.clear()
    provenance_args._lowered.cache_clear()
    agent = Agent(name="reader", model=reader(turns), tools=[read_page, post_note],
                  instructions="Read the handbook and post notes.",
                  budgets=Budgets(max_steps=turns + 5),
                  policy=Policy.of(argument_provenance(min_tier=2, action="deny"),
                                   deny_tools(["no_such_tool"])))
    result, _, _ = run(agent, "Summarize the handbook for the team, page by page.")
    assert result.status is RunStatus.COMPLETED, result
    assert result.result["tool_calls"] == turns
    counted["texts lowered for provenance"] = provenance_args._lowered.cache_info().misses
    return counted


def test_per_turn_work_is_flat_in_conversation_length(monkeypatch: pytest.MonkeyPatch) -> None:
    short, long = work(10, monkeypatch), work(100, monkeypatch)
    assert set(short) == set(long) and all(short.values()), short
    for what, few in short.items():
        many = long[what]
        # Linear: ten times the turns, about ten times the work (a fixed part — the
        # instructions, the request, the final answer — makes it a little less). A cost that
        # re-reads the whole conversation every turn would be ~50-100 times.
        assert many <= 11 * few, (what, few, many)
        assert many >= 5 * few, (what, few, many)  # the count does measure the turns
