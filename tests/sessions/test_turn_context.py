"""Per-turn context of a session: instructions rendered from the session's variables as of the
turn's start (the same after a crash), and typed variables refused before anything is
appended."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import tether
from tether import Crash, Runtime, VirtualClock
from tether.errors import UsageError
from tether.models import ModelRequest, ModelResponse, call, reply
from tether.sessions import Sessions, fire
from tether.sessions.loader import AgentDefinition, definition_from_dict
from tether.store.base import Store
from tether.store.memory import MemoryStore

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


PLANS = st.text(alphabet="abcdefgh ", min_size=1, max_size=8)


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.one_of(st.tuples(st.just("set"), PLANS),
                              st.tuples(st.just("fire"), PLANS),
                              st.tuples(st.just("turn"), st.just(""))), max_size=8))
def test_every_turn_shows_the_plan_as_of_its_start(ops: list[tuple[str, str]]) -> None:
    """Whatever interleaving of client sets, trigger firings and turns, each turn's model
    requests show the instructions rendered with the plan as of that turn's start."""
    defn = definition()
    sessions = sessions_on(MemoryStore(), defn)
    sessions.create("s", agent="planner", variables={"customer": "Ada"})
    plan = "basic"
    for op, value in [*ops, ("turn", "")]:
        if op == "set":
            sessions.set_variable("s", "plan", value)
            plan = value
        elif op == "fire":
            asyncio.run(fire(sessions, defn, "s", "plan-changed", {"plan": value}))
            plan = value
        else:
            SEEN.clear()
            asyncio.run(sessions.turn("s", "hello"))
            assert systems(SEEN) == [f"Help the customer on the {plan} plan (1 seats)."] * 2


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6)

#: Which Python values each declared type takes (JSON's types; a boolean is not a number).
FITS: dict[str, Any] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
}


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(FITS)), value=JSON_VALUES)
def test_set_variable_takes_exactly_the_values_of_the_declared_type(kind: str,
                                                                     value: Any) -> None:
    """For every declared type and JSON value: accepted (and read back equal) iff the value is
    of that type; refused with the revision unchanged otherwise."""
    spec = {**SPEC, "variables": {**SPEC["variables"], "v": {"type": kind}}}
    defn = definition_from_dict(spec, where="typed.yaml")
    store = MemoryStore()
    sessions = sessions_on(store, defn)
    example = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "object": {},
               "array": []}[kind]
    sessions.create("s", agent="planner", variables={"customer": "Ada", "v": example})
    before = store.read("session:s")
    if FITS[kind](value):
        assert sessions.set_variable("s", "v", value).variables["v"] == value
    else:
        with pytest.raises(UsageError, match=f"expected an? {kind}"):
            sessions.set_variable("s", "v", value)
        assert store.read("session:s") == before


def test_restoring_a_lost_session_types_its_variables_and_definitions_are_registered_once(
        ) -> None:
    """restore of a lost session checks its variables like create; registering the same
    definition again is a no-op, another one with the same name is refused."""
    defn = definition()
    store = MemoryStore()
    sessions = sessions_on(store, defn)
    assert sessions.add_definition(defn) is sessions.add_definition(defn)
    with pytest.raises(UsageError, match="two different agent definitions"):
        sessions.add_definition(definition())
    with pytest.raises(UsageError, match="seats"):
        sessions.restore("lost", [{"role": "user", "content": "hi"}], agent="planner",
                         variables={"customer": "Ada", "seats": "many"})
    assert store.get_run("session:lost") is None
    made = sessions.restore("lost", [{"role": "user", "content": "hi"}], agent="planner",
                            variables={"customer": "Ada"})
    assert made.variables == {"plan": "basic", "seats": 1, "customer": "Ada"}
