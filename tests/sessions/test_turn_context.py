"""Per-turn context of a session: instructions rendered from the session's variables as of the
turn's start (the same after a crash), and typed variables refused before anything is
appended."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

import tether
from tether import Crash, Runtime, VirtualClock
from tether.errors import UsageError
from tether.models import ModelRequest, ModelResponse, call, reply
from tether.sessions import Sessions, fire
from tether.sessions.loader import AgentDefinition, definition_from_dict
from tether.store.base import Store

HERE = "tests.sessions.test_turn_context"

#: Every model request the scripted model below was asked, in order.
SEEN: list[ModelRequest] = []
#: How many more times the `lookup` tool crashes the worker before it answers.
CRASHES: list[int] = [0]


class Query(BaseModel):
    q: str


@tether.tool(effect="read")
async def lookup(ctx: tether.ToolContext, args: Query) -> dict[str, str]:
    """Look the request up (crashing the worker while CRASHES says so)."""
    if CRASHES[0] > 0:
        CRASHES[0] -= 1
        raise Crash("the worker died during the lookup")
    return {"found": args.q}


def script(request: ModelRequest) -> ModelResponse:
    """Look the last user message up once, then answer."""
    SEEN.append(request)
    if request.messages[-1].role == "user":
        return call("lookup", {"q": request.messages[-1].content})
    return reply("done")


SPEC: dict[str, Any] = {
    "name": "planner",
    "instructions": "Help the customer on the {{ plan }} plan ({{ seats }} seats).",
    "variables": {"plan": {"type": "string", "default": "basic"},
                  "seats": {"type": "integer", "default": 1},
                  "customer": {"type": "string"}},
    "model": {"provider": "scripted", "script": f"{HERE}:script"},
    "tools": [f"{HERE}:lookup"],
    "triggers": {
        "plan-changed": {"input": {"type": "object", "properties": {"plan": {"type": "string"}},
                                   "required": ["plan"]},
                         "variables": {"plan": "{{ input.plan }}"}},
    },
}


def definition() -> AgentDefinition:
    return definition_from_dict(SPEC, where="planner.yaml")


def sessions_on(store: Store, defn: AgentDefinition) -> Sessions:
    runtime = Runtime(store, clock=VirtualClock(), seed=3, owner="worker")
    return Sessions(runtime, definitions=[defn])


def systems(requests: list[ModelRequest]) -> list[str]:
    return [m.content for r in requests for m in r.messages if m.role == "system"]


def test_a_trigger_changing_plan_reaches_the_next_turns_instructions(store_factory: Any
                                                                     ) -> None:
    """plan-changed sets plan; the next turn's model requests show the new plan, the first
    turn's the old one."""
    SEEN.clear()
    defn = definition()
    sessions = sessions_on(store_factory(), defn)
    sessions.create("s", agent="planner", variables={"customer": "Ada"})
    asyncio.run(sessions.turn("s", "hello"))
    first = list(SEEN)
    asyncio.run(fire(sessions, defn, "s", "plan-changed", {"plan": "gold"}))
    SEEN.clear()
    asyncio.run(sessions.turn("s", "again"))
    assert set(systems(first)) == {"Help the customer on the basic plan (1 seats)."}
    assert set(systems(SEEN)) == {"Help the customer on the gold plan (1 seats)."}
    assert len(SEEN) == 2


def test_a_resumed_turn_shows_the_instructions_of_its_start(store_factory: Any) -> None:
    """A worker dies mid-turn, plan changes before the turn is resumed: the resumed run's
    model request still shows the plan as of the turn's start, as the first request did."""
    SEEN.clear()
    defn = definition()
    store = store_factory()
    sessions_on(store, defn).create("s", agent="planner",
                                    variables={"customer": "Ada", "plan": "gold"})
    CRASHES[0] = 1
    with pytest.raises(Crash):
        asyncio.run(sessions_on(store, defn).turn("s", "hello"))
    before = list(SEEN)
    later = sessions_on(store, defn)
    later.set_variable("s", "plan", "platinum")
    SEEN.clear()
    done = asyncio.run(later.resume("s"))
    assert done is not None and done.run.status.value == "completed"
    assert len(before) == 1 and len(SEEN) == 1  # the first model call was not paid again
    assert systems(before) == systems(SEEN) == ["Help the customer on the gold plan (1 seats)."]
    SEEN.clear()
    asyncio.run(later.turn("s", "next"))
    assert set(systems(SEEN)) == {"Help the customer on the platinum plan (1 seats)."}


def test_create_fills_defaults_and_refuses_wrong_types_and_undeclared_names(
        store_factory: Any) -> None:
    """create: defaults filled; a wrong type, an undeclared name or a missing required
    variable is a UsageError naming the session and variable, and nothing is appended."""
    store = store_factory()
    sessions = sessions_on(store, definition())
    bad: list[tuple[dict[str, Any], list[str]]] = [
        ({"customer": "Ada", "seats": "two"}, ["'s'", "seats", "an integer", "'two'"]),
        ({"customer": "Ada", "tier": "vip"}, ["'s'", "'tier'", "plan, seats, customer"]),
        ({"plan": "gold"}, ["'s'", "customer", "required"]),
    ]
    for variables, words in bad:
        with pytest.raises(UsageError) as caught:
            sessions.create("s", agent="planner", variables=variables)
        assert all(w in str(caught.value) for w in words), str(caught.value)
        assert store.get_run("session:s") is None
    made = sessions.create("s", agent="planner", variables={"customer": "Ada"})
    assert made.variables == {"plan": "basic", "seats": 1, "customer": "Ada"}


def test_set_variable_refuses_wrong_types_and_undeclared_names(store_factory: Any) -> None:
    """set_variable: a wrong type or an undeclared variable is a UsageError naming the
    session, the variable, what was expected and found; the revision does not move."""
    store = store_factory()
    sessions = sessions_on(store, definition())
    sessions.create("s", agent="planner", variables={"customer": "Ada"})
    revision = sessions.session("s").revision
    with pytest.raises(UsageError) as caught:
        sessions.set_variable("s", "seats", 2.5)
    assert all(w in str(caught.value) for w in ["'s'", "'seats'", "an integer", "2.5"])
    with pytest.raises(UsageError) as caught:
        sessions.set_variable("s", "seats", True)
    assert "a boolean" in str(caught.value)
    with pytest.raises(UsageError) as caught:
        sessions.set_variable("s", "tier", "vip")
    assert all(w in str(caught.value) for w in ["'s'", "'tier'", "not declared"])
    assert sessions.session("s").revision == revision
    assert sessions.set_variable("s", "seats", 3).variables["seats"] == 3


def test_an_untyped_agents_sessions_take_any_variables() -> None:
    """Without a definition, variables are free-form (as before), and still reach the turn."""
    SEEN.clear()
    agent = definition().build({"customer": "Ada"})
    sessions = Sessions(Runtime(clock=VirtualClock()), agents=[agent])
    sessions.create("s", agent="planner", variables={"plan": "gold", "anything": [1, 2]})
    asyncio.run(sessions.turn("s", "hello"))
    assert set(systems(SEEN)) == {"Help the customer on the gold plan (1 seats)."}


def test_the_instructions_text_is_the_build_rendering() -> None:
    """agent.instructions still reads as text rendered with the build's variables (what
    `tether agent show` prints); a deferred build shows the template until values come."""
    defn = definition()
    built = defn.build({"customer": "Ada", "plan": "gold"})
    assert built.instructions == "Help the customer on the gold plan (1 seats)."
    assert built.instructions_for({"seats": 4}) == \
        "Help the customer on the gold plan (4 seats)."
    deferred = defn.build(deferred=True)
    assert deferred.instructions == SPEC["instructions"]
    with pytest.raises(UsageError, match="customer"):
        deferred.instructions_for({})


def test_instructions_as_a_function_are_rendered_by_the_loop_and_the_naive_harness() -> None:
    """A Python agent's instructions function gets the task's variables, in the durable loop
    and in the simulator's naive harness alike (never the function itself as text)."""
    from tether.agent.agent import Agent, Task
    from tether.models.scripted import ScriptedModel
    from tether.sim.harness import run_naive
    from tether.sim.world import World

    asked: list[ModelRequest] = []

    def answer(request: ModelRequest) -> ModelResponse:
        asked.append(request)
        return reply("ok")

    agent = Agent(name="fn", model=ScriptedModel(answer),
                  instructions=lambda v: f"Speak {v.get('language', 'English')}.")
    task = Task(text="hi", variables={"language": "French"})
    asyncio.run(Runtime(clock=VirtualClock()).start(agent, task.model_dump(mode="json")))
    asyncio.run(run_naive(World(seed=0), agent, task))
    assert len(asked) == 2
    assert [m.content for m in asked[0].messages if m.role == "system"] == ["Speak French."]
    assert "Speak French." in json.dumps(asked[1].model_dump(mode="json"))
