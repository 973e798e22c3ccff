"""Trigger kinds wired to their sources: signed webhooks, clock schedules and approval
decisions, each recorded with its turn in one compare-and-set append (at most once per key,
across crashes and racing processes), and bad trigger settings refused at load."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import Crash, Runtime, VirtualClock
from tether.errors import (
    SessionConflict,
    TriggerInputInvalid,
    UsageError,
    WebhookRejected,
)
from tether.events import (
    Event,
    ModelCalled,
    RunStarted,
    RunStatus,
    TriggerFired,
    TurnStarted,
    VariableSet,
)
from tether.sessions import Sessions, due, fire, fire_due, fire_webhook, on_decision
from tether.sessions.loader import AgentDefinition, definition_from_dict
from tether.sessions.state import stream_id
from tether.sessions.triggers import sign_webhook
from tether.store.base import Store
from tether.store.memory import MemoryStore
from tether.store.sqlite import SQLiteStore

from .session_helpers import BarrierStore

H = "tests.sessions.helpers_agents"
SECRET = "whsec-test-0123456789"
ENV = {"HOOK_SECRET": SECRET}
SPEC: dict[str, Any] = {
    "name": "helper",
    "instructions": "Help the customer on the {{ plan }} plan.",
    "variables": {"plan": {"type": "string", "default": "basic"},
                  "order": {"type": "string", "default": ""}},
    "model": {"provider": "scripted", "script": f"{H}:script"},
    "tools": [f"{H}:echo"],
    "triggers": {
        "user-message": {"input": {"type": "object", "properties": {"text": {"type": "string"}},
                                   "required": ["text"]},
                         "turn": "{{ input.text }}"},
        "billing": {"kind": "webhook", "webhook": {"secret_env": "HOOK_SECRET"},
                    "input": {"type": "object",
                              "properties": {"order": {"type": "string"},
                                             "status": {"type": "string"}},
                              "required": ["order", "status"]},
                    "turn": "(Order {{ input.order }} is {{ input.status }}.)",
                    "variables": {"order": "{{ input.order }}"}},
        "tick": {"kind": "schedule", "schedule": {"every_s": 60},
                 "turn": "(Check-in: slot {{ input.slot }}, {{ input.missed }} missed.)"},
        "decided": {"kind": "approval",
                    "turn": "(The {{ input.tool }} request was {{ input.decision }} by "
                            "{{ input.by }}: {{ input.note }})"},
    },
}
BODY = b'{"order": "A-17", "status": "shipped"}'


def _definition(**changes: Any) -> AgentDefinition:
    spec = copy.deepcopy(SPEC)
    spec.update(changes)
    return definition_from_dict(spec, where="<test>")


def _sessions(store: Store, definition: AgentDefinition, *, owner: str = "worker",
              clock: VirtualClock | None = None, create: bool = True) -> Sessions:
    runtime = Runtime(store, clock=clock or VirtualClock(), seed=7, owner=owner)
    sessions = Sessions(runtime, agents=[definition.build()])
    if create:
        sessions.create("s1", agent="helper", variables=definition.variables())
    return sessions


def _headers(body: bytes = BODY, *, at: float | None = None, secret: str = SECRET,
             event: str = "evt_1", target: str = "s1/billing") -> dict[str, str]:
    when = VirtualClock().now() if at is None else at
    return {"X-Tether-Signature": sign_webhook(secret, body, when, event, target=target),
            "X-Tether-Event-Id": event}


def _stream(sessions: Sessions) -> list[Event]:
    return sessions.runtime.store.read(stream_id("s1"))


def _kinds(sessions: Sessions, kind: type[Event]) -> list[Any]:
    return [e for e in _stream(sessions) if isinstance(e, kind)]


def _model_calls(store: Store, run_id: str) -> int:
    return sum(isinstance(e, ModelCalled) for e in store.read(run_id))


# -- webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["forged", "altered", "stale", "future", "unsigned",
                                  "malformed", "no-event-id", "dotted-event-id",
                                  "other-session", "other-trigger"])
def test_a_forged_or_stale_webhook_appends_nothing(case: str) -> None:
    """Every delivery whose signature does not hold (another secret, an altered body, a
    timestamp outside the tolerance either way, no or a garbled header, no event id) raises
    WebhookRejected, appends nothing and never shows the secret."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    before = sessions.session("s1").revision
    now = sessions.runtime.clock.now()
    body, headers = BODY, _headers()
    if case == "forged":
        headers = _headers(secret="guessed")
    elif case in ("other-session", "other-trigger"):
        # Signed with the right secret for another address, replayed to this one.
        headers = _headers(target="s2/billing" if case == "other-session" else "s1/refunds")
    elif case == "altered":
        body = BODY.replace(b"shipped", b"refunded")
    elif case == "stale":
        headers = _headers(at=now - 301)
    elif case == "future":
        headers = _headers(at=now + 301)
    elif case == "unsigned":
        del headers["X-Tether-Signature"]
    elif case == "malformed":
        headers["X-Tether-Signature"] = "sha256=abc"
    elif case == "dotted-event-id":
        # An id holding a dot could take the body's first bytes under the same signature.
        headers["X-Tether-Event-Id"] = "evt_1.{"
    else:
        del headers["X-Tether-Event-Id"]
    with pytest.raises(WebhookRejected) as caught:
        asyncio.run(fire_webhook(sessions, definition, "s1", "billing", body, headers,
                                 environ=ENV))
    assert SECRET not in str(caught.value)
    assert sessions.session("s1").revision == before
    assert sessions.session("s1").turns == ()


@settings(max_examples=30, deadline=None)
@given(order=st.text(min_size=1, max_size=20), flip=st.integers(min_value=0, max_value=10_000),
       target=st.sampled_from(["body", "digest", "timestamp", "none"]))
def test_any_change_to_a_signed_delivery_is_rejected_and_the_original_accepted(
        order: str, flip: int, target: str) -> None:
    """A signed delivery with one byte of its body or digest changed, or its timestamp moved
    past the tolerance, appends nothing; the delivery as signed starts its turn."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    body = json.dumps({"order": order, "status": "shipped"}).encode()
    headers = _headers(body)
    if target == "body":
        index = flip % len(body)
        body = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1:]
    elif target == "digest":
        stamp, digest = headers["X-Tether-Signature"].split(",v1=")
        index = flip % len(digest)
        changed = "0" if digest[index] != "0" else "1"
        headers["X-Tether-Signature"] = f"{stamp},v1={digest[:index]}{changed}" \
                                        f"{digest[index + 1:]}"
    elif target == "timestamp":
        headers = _headers(body, at=sessions.runtime.clock.now() - 301 - flip)
    before = sessions.session("s1").revision
    call = fire_webhook(sessions, definition, "s1", "billing", body, headers, environ=ENV)
    if target == "none":
        assert asyncio.run(call).turn == 1
        return
    with pytest.raises(WebhookRejected):
        asyncio.run(call)
    assert sessions.session("s1").revision == before and sessions.session("s1").turns == ()


def test_a_captured_delivery_replayed_under_another_event_id_is_rejected() -> None:
    """The event id is signed with the body: a delivery replayed within the tolerance with a
    new event id (to dodge the dedupe) fails the signature and starts no second turn."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    headers = _headers()
    asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, headers,
                             environ=ENV))
    replayed = {**headers, "X-Tether-Event-Id": "evt_2"}
    with pytest.raises(WebhookRejected, match="signature"):
        asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, replayed,
                                 environ=ENV))
    assert len(sessions.session("s1").turns) == 1


def test_a_valid_webhook_runs_a_turn_with_its_input_as_the_definition_says() -> None:
    """A signed delivery (header names in any case) sets the variable from the body, records
    the firing and runs the rendered turn, all in one append before the run."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    headers = {k.lower(): v for k, v in _headers().items()}
    done = asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, headers,
                                    environ=ENV))
    assert done.turn == 1 and not done.duplicate
    assert done.result is not None and done.result.run.status is RunStatus.COMPLETED
    session = sessions.session("s1")
    assert session.turns[0].input == "(Order A-17 is shipped.)"
    assert session.turns[0].trigger == "billing" and session.turns[0].status == "completed"
    assert session.variables["order"] == "A-17"
    variable = _kinds(sessions, VariableSet)[0]
    assert variable.by == "trigger" and variable.provenance["key"] == "webhook:billing:evt_1"
    fired = _kinds(sessions, TriggerFired)
    assert [f.key for f in fired] == ["webhook:billing:evt_1"]
    started = _kinds(sessions, TurnStarted)[0]
    assert variable.seq < fired[0].seq < started.seq == fired[0].seq + 1


def test_a_webhook_body_that_breaks_the_schema_or_is_not_json_appends_nothing() -> None:
    """Signed but invalid input (a field missing, a JSON array, bytes that are not JSON, a
    NaN constant) raises TriggerInputInvalid and appends nothing."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    before = sessions.session("s1").revision
    for body in (b'{"order": "A-17"}', b"[1, 2]", b"\xff\xfe", b'{"order": NaN}'):
        with pytest.raises(TriggerInputInvalid):
            asyncio.run(fire_webhook(sessions, definition, "s1", "billing", body,
                                     _headers(body), environ=ENV))
    assert sessions.session("s1").revision == before


def test_an_input_without_a_field_its_templates_read_is_invalid_input() -> None:
    """A schema-valid input missing an optional field the turn or a variable reads is
    TriggerInputInvalid naming the template, and nothing is appended."""
    spec = copy.deepcopy(SPEC["triggers"])
    spec["billing"]["input"]["required"] = ["status"]
    definition = _definition(triggers=spec)
    sessions = _sessions(MemoryStore(), definition)
    before = sessions.session("s1").revision
    body = b'{"status": "shipped"}'
    with pytest.raises(TriggerInputInvalid, match=r"'billing'.*input\.order"):
        asyncio.run(fire_webhook(sessions, definition, "s1", "billing", body, _headers(body),
                                 environ=ENV))
    assert sessions.session("s1").revision == before


def test_a_webhook_without_its_secret_in_the_environment_says_which_variable() -> None:
    """No secret configured: a UsageError naming the variable and the key; nothing appended."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    with pytest.raises(UsageError, match=r"triggers\.billing\.webhook\.secret_env.*HOOK_SECRET"):
        asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, _headers(),
                                 environ={}))
    assert sessions.session("s1").turns == ()


def test_the_same_event_id_twice_starts_one_turn() -> None:
    """A repeated delivery (re-signed later, as senders retry) is a duplicate: no second
    record, no second turn, and it reports the first turn."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    first = asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, _headers(),
                                     environ=ENV))
    sessions.runtime.clock.advance(30)  # type: ignore[attr-defined]
    again = asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY,
                                     _headers(at=sessions.runtime.clock.now()), environ=ENV))
    assert again.duplicate and again.turn == first.turn == 1
    assert again.result is not None and again.result.run.status is RunStatus.COMPLETED
    assert len(sessions.session("s1").turns) == 1
    assert len(_kinds(sessions, TriggerFired)) == 1


def test_the_same_event_id_from_two_processes_on_one_store_starts_one_turn(
        store_factory: Any) -> None:
    """Two Sessions objects (own store handles, runtimes, workers) on one store (SQLite file,
    PostgreSQL schema): the second delivery finds the first's record and starts nothing."""
    definition = _definition()
    store = store_factory()
    first = _sessions(store, definition, owner="a")
    second = _sessions(store_factory.peer(store), definition, owner="b", create=False)
    asyncio.run(fire_webhook(first, definition, "s1", "billing", BODY, _headers(),
                             environ=ENV))
    again = asyncio.run(fire_webhook(second, definition, "s1", "billing", BODY, _headers(),
                                     environ=ENV))
    assert again.duplicate
    assert len(second.session("s1").turns) == 1
    assert _model_calls(second.runtime.store, "session:s1:turn:1") == 2


def test_the_same_event_id_racing_from_two_processes_starts_one_turn(
        store_factory: Any) -> None:
    """Two deliveries of one event read the same revision and append at once: one append
    wins, the other re-reads, finds the key and records nothing; one turn, paid once."""
    definition = _definition()
    store = store_factory()
    _sessions(store, definition)
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def worker(name: str) -> None:
        handle = BarrierStore(store_factory.peer(store), barrier, "trigger_fired")
        sessions = _sessions(handle, definition, owner=name, create=False)
        outcomes.append(asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY,
                                                 _headers(), environ=ENV)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.duplicate for o in outcomes) == [False, True]
    check = _sessions(store_factory.peer(store), definition, create=False)
    asyncio.run(check.resume("s1"))
    assert [t.status for t in check.session("s1").turns] == ["completed"]
    assert len(_kinds(check, TriggerFired)) == 1
    assert _model_calls(check.runtime.store, "session:s1:turn:1") == 2


def test_a_webhook_into_a_session_of_a_registered_definition_is_typed_and_rendered() -> None:
    """Sessions given the definition itself (typed variables, per-turn instructions): the
    delivery's variable is set and the turn's task carries it."""
    definition = _definition()
    sessions = Sessions(Runtime(MemoryStore(), clock=VirtualClock(), seed=7),
                        definitions=[definition])
    sessions.create("s1", agent="helper")
    done = asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, _headers(),
                                    environ=ENV))
    assert done.result is not None and done.result.run.status is RunStatus.COMPLETED
    started = sessions.runtime.store.read("session:s1:turn:1")[0]
    assert isinstance(started, RunStarted)
    assert started.input["variables"]["order"] == "A-17"


def test_a_keyed_message_fires_once() -> None:
    """fire() with an idempotency key: the second call with the same key starts no turn and
    returns the first turn's result; another key starts another turn."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    first = asyncio.run(fire(sessions, definition, "s1", "user-message", {"text": "hi"},
                             key="m-1"))
    again = asyncio.run(fire(sessions, definition, "s1", "user-message", {"text": "hi"},
                             key="m-1"))
    assert again.turn == first.turn == 1  # type: ignore[union-attr]
    asyncio.run(fire(sessions, definition, "s1", "user-message", {"text": "hi"}, key="m-2"))
    assert len(sessions.session("s1").turns) == 2


def test_a_trigger_of_another_agent_file_is_refused_on_the_session() -> None:
    """Firing a definition's trigger on a session that talks to another agent: a UsageError
    naming both agents, nothing appended."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    other = _definition(name="other")
    before = sessions.session("s1").revision
    with pytest.raises(UsageError, match=r"agent 'helper', not 'other'"):
        asyncio.run(fire(sessions, other, "s1", "user-message", {"text": "hi"}))
    with pytest.raises(UsageError, match="other"):
        due(sessions, other, "s1")
    with pytest.raises(UsageError, match="other"):
        asyncio.run(fire_due(sessions, other, "s1"))
    with pytest.raises(UsageError, match="other"):
        asyncio.run(on_decision(sessions, other, "s1"))
    assert sessions.session("s1").revision == before


def test_a_schedule_asked_about_a_non_finite_time_says_so() -> None:
    """due(now=nan or inf) is a UsageError, not an arithmetic error or a slot count."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    for now in (float("nan"), float("inf")):
        with pytest.raises(UsageError, match="finite"):
            due(sessions, definition, "s1", now)


def test_fire_refuses_a_webhook_trigger_so_its_signature_cannot_be_skipped() -> None:
    """A webhook trigger fired through fire() (no signature) is a UsageError naming the entry
    point it must go through; nothing appended."""
    definition = _definition()
    sessions = _sessions(MemoryStore(), definition)
    with pytest.raises(UsageError, match="fire_webhook"):
        asyncio.run(fire(sessions, definition, "s1", "billing",
                         {"order": "A-1", "status": "x"}))
    assert sessions.session("s1").turns == ()


# -- schedule --------------------------------------------------------------------------------


def test_three_elapsed_slots_fire_the_latest_and_say_two_were_missed() -> None:
    """catch_up latest: after 3 periods only slot 2 fires, its input and record say slots 0-1
    were missed; calling again fires nothing; one more period fires slot 3."""
    definition = _definition()
    clock = VirtualClock()
    sessions = _sessions(MemoryStore(), definition, clock=clock)
    assert due(sessions, definition, "s1") == []
    clock.advance(3 * 60)
    fired = asyncio.run(fire_due(sessions, definition, "s1"))
    assert [(f.key, f.turn, f.detail) for f in fired] == [
        ("schedule:tick:2", 1, {"missed": 2, "missed_slots": [0, 1]})]
    assert sessions.session("s1").turns[0].input == "(Check-in: slot 2, 2 missed.)"
    assert asyncio.run(fire_due(sessions, definition, "s1")) == []
    clock.advance(60)
    assert [f.key for f in asyncio.run(fire_due(sessions, definition, "s1"))] == [
        "schedule:tick:3"]
    assert [t.status for t in sessions.session("s1").turns] == ["completed", "completed"]


def test_catch_up_all_fires_every_elapsed_slot_oldest_first() -> None:
    """catch_up all: three elapsed slots fire three turns, slots 0, 1, 2 in order."""
    spec = copy.deepcopy(SPEC["triggers"])
    spec["tick"]["schedule"]["catch_up"] = "all"
    definition = _definition(triggers=spec)
    clock = VirtualClock()
    sessions = _sessions(MemoryStore(), definition, clock=clock)
    clock.advance(3 * 60)
    fired = asyncio.run(fire_due(sessions, definition, "s1"))
    assert [f.key for f in fired] == [f"schedule:tick:{k}" for k in range(3)]
    assert [t.input for t in sessions.session("s1").turns] == [
        f"(Check-in: slot {k}, 0 missed.)" for k in range(3)]


class _CrashAfter:
    """A store handle that raises Crash once, right after storing the append holding
    ``kind``."""

    def __init__(self, inner: Store, kind: str) -> None:
        self.inner, self.kind, self.crashed = inner, kind, False

    def append(self, run_id: str, events: Sequence[Event], **kwargs: Any) -> None:
        self.inner.append(run_id, events, **kwargs)
        if not self.crashed and any(e.kind == self.kind for e in events):
            self.crashed = True
            raise Crash(f"crash after the append holding {self.kind}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_crash_after_the_slot_is_recorded_resumes_that_turn() -> None:
    """The worker dies right after recording slot 0 with its turn: the next scheduler resumes
    that turn (reported as a duplicate) and neither skips nor doubles it."""
    definition = _definition()
    store, clock = MemoryStore(), VirtualClock()
    crashing = _CrashAfter(store, "trigger_fired")
    dying = _sessions(crashing, definition, clock=clock)
    clock.advance(60)
    with pytest.raises(Crash):
        asyncio.run(fire_due(dying, definition, "s1"))
    fresh = _sessions(store, definition, clock=clock, create=False)
    assert due(fresh, definition, "s1") == []
    resumed = asyncio.run(fire_due(fresh, definition, "s1"))
    assert [(f.key, f.turn, f.duplicate) for f in resumed] == [("schedule:tick:0", 1, True)]
    assert [t.status for t in fresh.session("s1").turns] == ["completed"]
    assert asyncio.run(fire_due(fresh, definition, "s1")) == []
    assert len(_kinds(fresh, TriggerFired)) == 1
    assert _model_calls(store, "session:s1:turn:1") == 2


def test_two_schedulers_racing_fire_a_slot_once(store_factory: Any) -> None:
    """Two schedulers on one store see slot 0 due and append at once: one records it, the
    other finds it; one turn, paid once."""
    definition = _definition()
    store = store_factory()
    clock = VirtualClock()
    _sessions(store, definition, clock=clock)
    clock.advance(60)
    barrier = threading.Barrier(2)
    outcomes: list[list[Any]] = []

    def scheduler(name: str) -> None:
        handle = BarrierStore(store_factory.peer(store), barrier, "trigger_fired")
        sessions = _sessions(handle, definition, owner=name, clock=VirtualClock(clock.now()),
                             create=False)
        outcomes.append(asyncio.run(fire_due(sessions, definition, "s1")))

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [f for fired in outcomes for f in fired]
    assert sorted(f.duplicate for f in flat) == [False, True]
    check = _sessions(store_factory.peer(store), definition, clock=clock, create=False)
    asyncio.run(check.resume("s1"))
    assert [t.status for t in check.session("s1").turns] == ["completed"]
    assert [f.key for f in _kinds(check, TriggerFired)] == ["schedule:tick:0"]
    assert _model_calls(check.runtime.store, "session:s1:turn:1") == 2


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=6),
       every=st.sampled_from([0.1, 7.0, 60.0]))
def test_slots_fire_at_most_once_in_increasing_order(steps: list[int], every: float) -> None:
    """Any sequence of clock advances and scheduler calls: every slot key fires at most once,
    slots fire in increasing order, and no elapsed slot is ever reported due again."""
    spec = copy.deepcopy(SPEC["triggers"])
    spec["tick"]["schedule"]["every_s"] = every
    spec["tick"]["turn"] = None
    spec["tick"]["variables"] = {"order": "slot {{ input.slot }}"}
    definition = _definition(triggers=spec)
    clock = VirtualClock()
    sessions = _sessions(MemoryStore(), definition, clock=clock)
    for step in steps:
        clock.advance(step * every / 3)
        asyncio.run(fire_due(sessions, definition, "s1"))
        assert due(sessions, definition, "s1") == []
    slots = [int(f.key.rsplit(":", 1)[1]) for f in _kinds(sessions, TriggerFired)]
    assert slots == sorted(set(slots))


# -- approval --------------------------------------------------------------------------------


def _approval_setup() -> tuple[Sessions, AgentDefinition]:
    definition = _definition(
        model={"provider": "scripted", "script": "tests.sessions.trigger_agents:script"},
        tools=["tests.sessions.trigger_agents:refund"],
        policy={"default": "allow", "rules": [{"argument_limit": {
            "tool": "refund", "argument": "amount_cents", "max": 100, "role": "supervisor"}}]})
    sessions = _sessions(MemoryStore(), definition)
    waiting = asyncio.run(fire(sessions, definition, "s1", "user-message", {"text": "refund"}))
    assert waiting.run.status is RunStatus.WAITING  # type: ignore[union-attr]
    return sessions, definition


def test_an_approval_decision_fires_exactly_one_follow_up_turn_with_the_decision() -> None:
    """approve() then on_decision: the waiting turn finishes with the approved call, then one
    turn starts whose input carries decision, by, tool and note; calling on_decision again
    fires nothing more."""
    sessions, definition = _approval_setup()
    sessions.runtime.approve("session:s1:turn:1", by="sam", role="supervisor", note="ok")
    fired = asyncio.run(on_decision(sessions, definition, "s1"))
    assert [(f.trigger, f.turn, f.duplicate) for f in fired] == [("decided", 2, False)]
    turns = sessions.session("s1").turns
    assert [t.status for t in turns] == ["completed", "completed"]
    assert turns[1].input == "(The refund request was approved by sam: ok)"
    record = _kinds(sessions, TriggerFired)[0]
    assert record.input == {"decision": "approved", "by": "sam", "role": "supervisor",
                            "note": "ok", "tool": "refund"}
    assert asyncio.run(on_decision(sessions, definition, "s1")) == []
    assert len(sessions.session("s1").turns) == 2


def test_a_denial_fires_only_a_trigger_that_lists_it() -> None:
    """A trigger declared for approved decisions only does not fire on a denial; the waiting
    turn still goes on (told of the refusal)."""
    sessions, definition = _approval_setup()
    spec = copy.deepcopy(SPEC["triggers"])
    spec["decided"]["approval"] = {"decisions": ["approved"]}
    only_approved = _definition(triggers=spec)
    sessions.runtime.deny("session:s1:turn:1", by="sam", note="too much")
    assert asyncio.run(on_decision(sessions, only_approved, "s1")) == []
    assert [t.status for t in sessions.session("s1").turns] == ["completed"]
    fired = asyncio.run(on_decision(sessions, definition, "s1"))
    assert sessions.session("s1").turns[1].input == \
        "(The refund request was denied by sam: too much)"
    assert [f.turn for f in fired] == [2]


def test_a_crash_after_the_decision_fired_resumes_its_turn_and_fires_no_other() -> None:
    """The worker dies right after recording the decision's firing: the next on_decision
    resumes that turn and starts no second one."""
    sessions, definition = _approval_setup()
    store = sessions.runtime.store
    sessions.runtime.approve("session:s1:turn:1", by="sam", role="supervisor")
    crashing = _CrashAfter(store, "trigger_fired")
    dying = _sessions(crashing, definition, create=False)
    with pytest.raises(Crash):
        asyncio.run(on_decision(dying, definition, "s1"))
    fresh = _sessions(store, definition, create=False)
    asyncio.run(on_decision(fresh, definition, "s1"))
    assert [t.status for t in fresh.session("s1").turns] == ["completed", "completed"]
    assert len(_kinds(fresh, TriggerFired)) == 1
    assert _model_calls(store, "session:s1:turn:2") == 1


def test_a_decision_waits_while_the_session_turn_still_waits() -> None:
    """on_decision before any decision: the turn still waits, nothing fires and nothing is
    recorded."""
    sessions, definition = _approval_setup()
    before = sessions.session("s1").revision
    assert asyncio.run(on_decision(sessions, definition, "s1")) == []
    assert sessions.session("s1").revision == before


def test_a_trigger_fired_while_a_turn_waits_records_nothing() -> None:
    """A webhook arriving while a turn waits for approval: SessionConflict, nothing recorded,
    and the same delivery fires once the wait is resolved."""
    sessions, definition = _approval_setup()
    before = sessions.session("s1").revision
    with pytest.raises(SessionConflict, match="waiting"):
        asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, _headers(),
                                 environ=ENV))
    assert sessions.session("s1").revision == before
    sessions.runtime.approve("session:s1:turn:1", by="sam", role="supervisor")
    done = asyncio.run(fire_webhook(sessions, definition, "s1", "billing", BODY, _headers(),
                                    environ=ENV))
    assert done.turn == 2 and [t.status for t in sessions.session("s1").turns] == [
        "completed", "completed"]


def test_a_trigger_arriving_while_another_worker_runs_the_turn_records_nothing() -> None:
    """A delivery while another live worker holds the open turn's run: SessionConflict naming
    the turn (not the store's RunOwned), nothing recorded; once that turn is done, the same
    delivery fires."""
    definition = _definition()
    store, clock = MemoryStore(), VirtualClock()
    _sessions(store, definition, clock=clock)
    dying = _sessions(_CrashAfter(store, "run_started"), definition, clock=clock, owner="a",
                      create=False)
    with pytest.raises(Crash):  # its lease on turn 1's run stays live
        asyncio.run(fire(dying, definition, "s1", "user-message", {"text": "hi"}))
    other = _sessions(store, definition, clock=clock, owner="b", create=False)
    before = other.session("s1").revision
    with pytest.raises(SessionConflict, match="turn 1"):
        asyncio.run(fire_webhook(other, definition, "s1", "billing", BODY,
                                 _headers(at=clock.now()), environ=ENV))
    assert other.session("s1").revision == before
    clock.advance(other.runtime.lease_ttl_s + 1)
    done = asyncio.run(fire_webhook(other, definition, "s1", "billing", BODY,
                                    _headers(at=clock.now()), environ=ENV))
    assert done.turn == 2
    assert [t.status for t in other.session("s1").turns] == ["completed", "completed"]


# -- the definition --------------------------------------------------------------------------


@pytest.mark.parametrize(("trigger", "where"), [
    ({"kind": "schedule", "turn": "x"}, "triggers.t: kind: schedule needs schedule"),
    ({"kind": "schedule", "schedule": {"every_s": 0}, "turn": "x"},
     "triggers.t.schedule.every_s"),
    ({"kind": "schedule", "schedule": {"every_s": "60"}, "turn": "x"},
     "triggers.t.schedule.every_s"),
    ({"kind": "schedule", "schedule": {"every_s": 5, "catch_up": "some"}, "turn": "x"},
     "triggers.t.schedule.catch_up"),
    ({"kind": "schedule", "schedule": {"every_s": 5, "start_at_s": -1}, "turn": "x"},
     "triggers.t.schedule.start_at_s"),
    ({"kind": "webhook", "turn": "x"}, "triggers.t: kind: webhook needs webhook"),
    ({"kind": "webhook", "webhook": {"secret_env": "not a name"}, "turn": "x"},
     "triggers.t.webhook.secret_env"),
    ({"kind": "webhook", "webhook": {"secret_env": "S", "tolerance_s": 0}, "turn": "x"},
     "triggers.t.webhook.tolerance_s"),
    ({"kind": "webhook", "webhook": {"secret_env": "S", "secret": "x"}, "turn": "x"},
     "triggers.t.webhook.secret"),
    ({"kind": "approval", "approval": {"decisions": ["maybe"]}, "turn": "x"},
     "triggers.t.approval.decisions[0]"),
    ({"kind": "approval", "approval": {"decisions": []}, "turn": "x"},
     "triggers.t.approval.decisions"),
    ({"kind": "cron", "turn": "x"}, "triggers.t.kind"),
    ({"schedule": {"every_s": 5}, "turn": "x"}, "triggers.t: schedule: settings are for kind"),
    ({"kind": "schedule", "schedule": {"every_s": 5}}, "triggers.t: a schedule trigger with"),
    ({"kind": "approval", "turn": "{{ input.amount }}"}, "triggers.t: {{ input.amount }}"),
    ({"kind": "approval", "turn": "x", "input": {"type": "object", "required": ["amount"],
                                                  "properties": {"amount": {"type": "number"}}}},
     "triggers.t.input: a approval trigger's input is generated"),
    ({"input": {"type": "object", "properties": {"n": {"type": "integer"}}},
      "variables": {"plan": "{{ input.n }}"}},
     "triggers.t.variables.plan: takes input.n as it comes, declared integer"),
])
def test_bad_trigger_settings_are_refused_naming_file_and_key(trigger: dict[str, Any],
                                                              where: str) -> None:
    """Each wrong trigger setting is a UsageError naming the file and the key path."""
    spec = copy.deepcopy(SPEC)
    spec["triggers"] = {"t": trigger}
    with pytest.raises(UsageError) as caught:
        definition_from_dict(spec, where="agent.yaml")
    assert str(caught.value).startswith(f"agent.yaml: {where}"), str(caught.value)


# -- real processes, SIGKILLed ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _worker(store: Path, command: str, kill_at: int | None = None) -> int:
    argv = [sys.executable, "-m", "tests.sessions.trigger_worker", str(store), command]
    if kill_at is not None:
        argv += ["--kill-at", str(kill_at)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60, check=False).returncode


@pytest.mark.parametrize("command", ["schedule", "webhook"])
@pytest.mark.parametrize("kill_at", range(1, 9))
def test_a_worker_killed_at_any_append_of_a_firing_loses_and_doubles_nothing(
        tmp_path: Path, command: str, kill_at: int) -> None:
    """A real worker process SIGKILLed right after its k-th append (the firing's record, the
    run's start, each model call and tool result, the run's and the turn's end), then run
    again: one firing, one turn, finished, with each model call paid once."""
    store = tmp_path / "store.db"
    assert _worker(store, "create") == 0
    assert _worker(store, command, kill_at) in (0, -signal.SIGKILL)
    assert _worker(store, command) == 0
    check = SQLiteStore(store)
    try:
        kinds = [e.kind for e in check.read("session:s1")]
        firing = ["variable_set"] if command == "webhook" else []
        assert kinds[3:] == [*firing, "trigger_fired", "turn_started", "turn_finished"]
        assert _model_calls(check, "session:s1:turn:1") == 2
        assert check.get_run("session:s1:turn:2") is None
    finally:
        check.close()
