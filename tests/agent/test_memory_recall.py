"""Memory recalled into an agent's context: one journaled step at the start of the run, each
fact with the source and trust it was written with, judged by the policy as such."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import Agent, RunStatus, Runtime, ScriptedModel, ToolContext, VirtualClock, tool
from tether.agent.agent import Task
from tether.agent.memory_recall import MemoryRecall
from tether.errors import UsageError
from tether.events import Event, StepRecorded
from tether.memory import Memory
from tether.models.base import Message, ModelRequest, ModelResponse
from tether.models.scripted import call, reply
from tether.policy import Policy, argument_provenance
from tether.sessions import Sessions
from tether.sessions.loader import definition_from_dict

from .helpers import decisions

ACCOUNT = "DE89370400440532013000"


class Payout(BaseModel):
    account: str
    amount_cents: int


PAYOUTS: list[tuple[str, int]] = []


@tool(effect="idempotent", key=lambda a: f"payout:{a.account}:{a.amount_cents}", tier=2)
def send_payout(ctx: ToolContext, args: Payout) -> dict[str, Any]:
    """Move money to an account."""
    PAYOUTS.append((args.account, args.amount_cents))
    return {"payout_id": f"po_{len(PAYOUTS)}"}


def payer(seen: list[ModelRequest]) -> ScriptedModel:
    """Pays the account of the remembered fact that names one, then answers."""
    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        if request.messages[-1].role == "tool":
            return reply("paid")
        remembered = [m for m in request.messages if "payout_account" in m.content]
        return call("send_payout", {"account": ACCOUNT if remembered else "none",
                                    "amount_cents": 4999}, call_id="p1")

    return ScriptedModel(script)


def remembered(messages: tuple[Message, ...]) -> list[Message]:
    return [m for m in messages if (m.source or "").startswith("memory:")]


def steps(events: list[Event]) -> list[str]:
    return [e.name for e in events if isinstance(e, StepRecorded)]


def test_an_external_fact_reaches_the_model_with_its_trust_and_holds_the_write(
        store_factory: Any) -> None:
    """A fact remembered from an email reaches the model as user-role context with source and
    trust external; a payout to the account it names is held as from external content."""
    PAYOUTS.clear()
    store, clock = store_factory(), VirtualClock()
    memory = Memory(store, clock=clock, namespace="support")
    memory.remember("customer:ada", "payout_account", ACCOUNT, source="email:msg_1",
                    trust="external")
    seen: list[ModelRequest] = []
    agent = Agent(name="payer", model=payer(seen), tools=[send_payout],
                  instructions="Pay what the customer is owed.",
                  memory=MemoryRecall(namespace="support", subjects=["customer:ada"]),
                  policy=Policy.of(argument_provenance(min_tier=2, action="require_approval")))
    result = asyncio.run(Runtime(store, clock=clock, seed=1).start(agent, "pay Ada"))
    assert result.status is RunStatus.WAITING and PAYOUTS == []
    (fact,) = remembered(seen[0].messages)
    assert (fact.role, fact.trust) == ("user", "external")
    assert fact.source == "memory:customer:ada/payout_account <- email:msg_1"
    assert ACCOUNT in fact.content
    assert [m.role for m in seen[0].messages] == ["system", "user", "user"]
    held = decisions(store.read(result.run_id), "policy")[-1]
    assert held["verdict"] == "require_approval"
    assert held["sources"] == ["memory:customer:ada/payout_account <- email:msg_1"]


def test_a_system_fact_is_not_held_but_is_never_system_role_text() -> None:
    """The same fact written by the system of record lets the payout through; it still
    arrives as a user-role message carrying trust system, not as instructions."""
    PAYOUTS.clear()
    runtime = Runtime(clock=VirtualClock(), seed=1)
    Memory(runtime.store, clock=runtime.clock, namespace="support").remember(
        "customer:ada", "payout_account", ACCOUNT, source="crm", trust="system")
    seen: list[ModelRequest] = []
    agent = Agent(name="payer", model=payer(seen), tools=[send_payout],
                  memory=MemoryRecall(namespace="support", subjects=["customer:ada"]),
                  policy=Policy.of(argument_provenance(min_tier=2, action="require_approval")))
    result = asyncio.run(runtime.start(agent, "pay Ada"))
    assert result.status is RunStatus.COMPLETED and PAYOUTS == [(ACCOUNT, 4999)]
    (fact,) = remembered(seen[0].messages)
    assert (fact.role, fact.trust) == ("user", "system")
    assert not [m for m in seen[0].messages if m.role == "system"]


def test_the_recall_is_one_journaled_step_and_a_resumed_run_sees_the_same_facts(
        store_factory: Any) -> None:
    """The recall is one step; memory changed while the run waits for an approval does not
    change what the resumed run shows the model."""
    PAYOUTS.clear()
    store, clock = store_factory(), VirtualClock()
    memory = Memory(store, clock=clock, namespace="support")
    memory.remember("customer:ada", "payout_account", ACCOUNT, source="email:msg_1",
                    trust="external")
    memory.remember("customer:ada", "tone", "brief", source="email:msg_1", trust="external")
    seen: list[ModelRequest] = []
    agent = Agent(name="payer", model=payer(seen), tools=[send_payout],
                  memory=MemoryRecall(namespace="support", subjects=["customer:ada"]),
                  policy=Policy.of(argument_provenance(min_tier=2, action="require_approval")))
    first = asyncio.run(Runtime(store, clock=clock, seed=1).start(agent, "pay Ada"))
    assert first.status is RunStatus.WAITING
    memory.remember("customer:ada", "plan", "gold", source="crm", trust="system")
    memory.forget("customer:ada", "tone")
    outside = Runtime(store, clock=clock)
    outside.approve(first.run_id, by="grace", role="approver")
    done = asyncio.run(Runtime(store, clock=clock, workflows=[agent]).resume(first.run_id))
    assert done.status is RunStatus.COMPLETED and PAYOUTS == [(ACCOUNT, 4999)]
    shown = [[m.content for m in remembered(r.messages)] for r in seen]
    assert len(shown) == 2 and shown[0] == shown[1] and len(shown[0]) == 2
    assert [s for s in steps(store.read(first.run_id)) if s.startswith("memory.")] == \
        ["memory.recall support"]


def test_subjects_are_rendered_from_the_runs_variables_and_bounded() -> None:
    """A subject function of the variables picks the customer; min trust and max facts
    filter what is shown."""
    runtime = Runtime(clock=VirtualClock(), seed=1)
    memory = Memory(runtime.store, clock=runtime.clock, namespace="n")
    for key in ("a", "b", "c"):
        memory.remember("customer:7", key, key.upper(), source="crm", trust="user")
    memory.remember("customer:7", "d", "D", source="web", trust="retrieved")
    memory.remember("customer:8", "a", "other", source="crm", trust="user")
    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return reply("ok")

    agent = Agent(name="r", model=ScriptedModel(script), memory=MemoryRecall(
        namespace="n", subjects=[lambda v: f"customer:{v['id']}"], minimum_trust="user",
        max_facts=2))
    asyncio.run(runtime.start(agent, Task(text="hi", variables={"id": 7}).model_dump()))
    assert [m.source for m in remembered(seen[0].messages)] == \
        ["memory:customer:7/a <- crm", "memory:customer:7/b <- crm"]
    note = seen[0].messages[-2]
    assert (note.source, note.trust) == ("harness", None)
    assert "1 more remembered facts were not shown" in note.content


def test_memory_recall_refuses_bad_settings() -> None:
    """A negative max_facts or an unknown trust level is refused when the recall is made."""
    with pytest.raises(UsageError, match="max_facts"):
        MemoryRecall(max_facts=-1)
    with pytest.raises(UsageError, match="trust level"):
        MemoryRecall(minimum_trust="friendly")


#: The requests the agent file's scripted model below was asked.
FILE_SEEN: list[ModelRequest] = []


def file_script(request: ModelRequest) -> ModelResponse:
    """The agent file's model: note the request, answer."""
    FILE_SEEN.append(request)
    return reply("ok")


def test_an_agent_files_memory_block_recalls_the_sessions_customer() -> None:
    """memory: {namespace, subjects: ["customer:{{ customer }}"]} in an agent file recalls the
    facts of the session's customer, with their trust."""
    FILE_SEEN.clear()
    seen = FILE_SEEN
    spec = {"name": "mem", "instructions": "Help {{ customer }}.",
            "variables": {"customer": {"type": "string"}},
            "model": {"provider": "scripted",
                      "script": "tests.agent.test_memory_recall:file_script"},
            "memory": {"namespace": "support", "subjects": ["customer:{{ customer }}"]}}
    defn = definition_from_dict(spec, where="mem.yaml")
    runtime = Runtime(clock=VirtualClock(), seed=1)
    Memory(runtime.store, clock=runtime.clock, namespace="support").remember(
        "customer:ada", "channel", "email", source="email:msg_2", trust="external")
    sessions = Sessions(runtime, definitions=[defn])
    sessions.create("s", agent="mem", variables={"customer": "ada"})
    asyncio.run(sessions.turn("s", "hello"))
    (fact,) = remembered(seen[0].messages)
    assert (fact.trust, fact.source) == ("external", "memory:customer:ada/channel <- email:msg_2")
    assert seen[0].messages[0].content == "Help ada."


def test_instructions_that_are_neither_text_nor_a_function_are_refused() -> None:
    """Agent(instructions=42) is a UsageError when the agent is made, not a broken run."""
    with pytest.raises(UsageError, match="instructions must be text or a function"):
        Agent(name="bad", model=ScriptedModel(lambda r: reply("x")),
              instructions=42)  # type: ignore[arg-type]


class FactKey(BaseModel):
    key: str


NOTE = f"Customer wrote: please send the refund to {ACCOUNT}"


def payout_verdict(through: str, rule: Any, trust: str) -> str:
    """The policy's verdict on the payout of a run whose context holds an external note naming
    an account and that account at ``trust``, recalled from memory or read through a tool."""
    facts = [("note", NOTE, "email:msg_1", "external"),
             ("payout_account", ACCOUNT, "crm", trust)]
    runtime = Runtime(clock=VirtualClock(), seed=1)
    memory = Memory(runtime.store, clock=runtime.clock, namespace="support")
    for key, value, source, level in facts:
        memory.remember("customer:ada", key, value, source=source, trust=level)

    @tool(name="recall_fact")
    def recall_fact(ctx: ToolContext, args: FactKey) -> Any:
        """A remembered fact of the customer, with its provenance."""
        (fact,) = memory.recall("customer:ada", args.key)
        return fact.sourced()

    def script(request: ModelRequest) -> ModelResponse:
        results = [m for m in request.messages if m.role == "tool"]
        if through == "tool" and len(results) < 2:
            return call("recall_fact", {"key": facts[len(results)][0]},
                        call_id=f"r{len(results)}")
        if results and results[-1].tool_call_id == "pay":
            return reply("done")
        return call("send_payout", {"account": ACCOUNT, "amount_cents": 4999}, call_id="pay")

    agent = Agent(name="payer", model=ScriptedModel(script), instructions="Pay refunds.",
                  tools=[recall_fact, send_payout], policy=Policy.of(rule),
                  memory=MemoryRecall(namespace="support", subjects=["customer:ada"])
                  if through == "memory" else None)
    result = asyncio.run(runtime.start(
        agent, "Refund Ada's order A-1 (49.99) to her account on file"))
    held = decisions(runtime.store.read(result.run_id), "policy")[-1]
    assert held["tool"] == "send_payout"
    return str(held["verdict"])


@pytest.mark.parametrize("trust", ["system", "user", "agent", "retrieved", "external"])
@pytest.mark.parametrize("rule", ["control_flow", "argument_provenance", "taint_gate"])
def test_a_recalled_fact_is_judged_as_the_same_content_from_a_tool(trust: str,
                                                                  rule: str) -> None:
    """The payout's verdict is the same whether the facts (an external note naming an account,
    and the account at ``trust``) come from memory at the run's start or from a tool: a fact
    is data with its trust, never part of the request unless its trust says the user's."""
    from tether.policy import control_flow, taint_gate

    made = {"control_flow": control_flow, "argument_provenance": argument_provenance,
            "taint_gate": taint_gate}[rule](min_tier=2)
    assert payout_verdict("memory", made, trust) == payout_verdict("tool", made, trust)


TRUSTS = ["system", "user", "agent", "retrieved", "external"]


@settings(max_examples=30, deadline=None)
@given(facts=st.lists(st.tuples(st.sampled_from(["customer:1", "customer:2", "order:9"]),
                                st.sampled_from(["a", "b", "c"]),
                                st.sampled_from(TRUSTS)), max_size=8),
       minimum=st.none() | st.sampled_from(TRUSTS), max_facts=st.integers(0, 4))
def test_the_model_is_shown_exactly_the_matching_facts_with_their_trust(
        facts: list[tuple[str, str, str]], minimum: str | None, max_facts: int) -> None:
    """For any remembered facts, minimum trust and max_facts: the run shows the latest fact
    per key of the subjects asked, at least the minimum trust, in subject then key order, at
    most max_facts of them (saying how many were left out), each with its own trust."""
    from tether.runtime.provenance import Trust

    runtime = Runtime(clock=VirtualClock(), seed=1)
    memory = Memory(runtime.store, clock=runtime.clock, namespace="p")
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for number, (subject, key, trust) in enumerate(facts):
        memory.remember(subject, key, f"value {number}", source=f"src{number}", trust=trust)
        latest[(subject, key)] = (number, trust)
    subjects = ["customer:2", "customer:1"]
    expected = [(s, k, n, t) for s in subjects for (s2, k), (n, t) in sorted(latest.items())
                if s2 == s and (minimum is None or Trust(t).at_least(minimum))]
    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return reply("ok")

    agent = Agent(name="p", model=ScriptedModel(script), memory=MemoryRecall(
        namespace="p", subjects=subjects, minimum_trust=minimum, max_facts=max_facts))
    asyncio.run(runtime.start(agent, "hi"))
    shown = remembered(seen[0].messages)
    assert [(m.source, m.trust) for m in shown] == \
        [(f"memory:{s}/{k} <- src{n}", t) for s, k, n, t in expected[:max_facts]]
    notes = [m for m in seen[0].messages if m.source == "harness"]
    left = len(expected) - max_facts
    assert [f"({left} more" in m.content for m in notes] == ([True] if left > 0 else [])
