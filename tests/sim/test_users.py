"""How a scenario's user is played: the scripted persona, a model, or recorded answers."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import ModelUnavailable, UsageError
from tether.models import ModelRequest, ModelResponse, ScriptedModel, reply
from tether.sim.episode import environment_for, run_episode
from tether.sim.persona import ModelUser as ReExportedModelUser
from tether.sim.scenario import Persona, load_scenario
from tether.sim.users import (
    ModelUser,
    ReplayDiverged,
    ReplayUser,
    User,
    UserSpec,
    build_user,
    inconclusive,
    recorded_answers,
    recorded_questions,
    replay_spec,
    user_spec_from_dict,
)
from tether.sim.world import World

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/scenarios/refund_user_changes_mind.yaml"

#: A user model that knows nothing but what its request says: it reads the persona from the
#: instructions and answers the last question in character.
CUSTOMER = textwrap.dedent('''
    import re

    from tether.models import ModelRequest, ModelResponse, ScriptedModel, reply

    SEEN: list[ModelRequest] = []


    def customer() -> ScriptedModel:
        def answer(request: ModelRequest) -> ModelResponse:
            SEEN.append(request)
            system = request.messages[0].content
            question = request.messages[-1].content.lower()
            asked = sum(1 for m in request.messages if m.role == "user")
            change = re.search(r"From your message number (\\d+) on, you want this instead: "
                               r"(.*)$", system)
            if change and asked >= int(change.group(1)):
                return reply(f"Actually, I changed my mind: {change.group(2)}")
            if "email" in question:
                return reply("It is " + re.search(r"email: ([^;.]+@[^;]+?)[;.] ",
                                                  system).group(1) + ".")
            if "item" in question:
                return reply("The " + re.search(r"item: (\\w+)", system).group(1) + ".")
            return reply("Yes, please go ahead.")

        return ScriptedModel(answer, name="customer")


    def of_persona(persona):
        return ScriptedModel(lambda request: reply(f"I am {persona.name}."), name="named")


    def two(a, b):
        return ScriptedModel(lambda request: reply("?"))


    def not_a_model():
        return "hello"


    async def later():
        return ScriptedModel(lambda request: reply("?"))
''')


def _scenario_with_user(folder: Path, user: dict[str, Any]) -> Path:
    """The shipped changing-mind scenario, in ``folder`` beside the user model file, with
    ``user`` as its user."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["user"] = user
    (folder / "customer.py").write_text(CUSTOMER)
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the user: mapping ---------------------------------------------------------------------

def test_each_form_of_user_is_read_and_stated_back() -> None:
    """Absent/empty → persona; persona, model and replay forms parse and round-trip as data."""
    assert user_spec_from_dict({}, "s.yaml") == UserSpec()
    assert user_spec_from_dict(None, "s.yaml").played_by == "persona"
    assert user_spec_from_dict({"played_by": "persona"}, "s.yaml") == UserSpec()
    model = user_spec_from_dict({"played_by": "model", "model": " pkg.users:customer "}, "s")
    assert model == UserSpec(played_by="model", model="pkg.users:customer")
    replay = user_spec_from_dict({"played_by": "replay", "answers": ["a", ""]}, "s")
    assert replay == UserSpec(played_by="replay", answers=("a", ""))
    asked = user_spec_from_dict({"played_by": "replay", "answers": ["a"], "questions": ["q"]},
                                "s")
    assert asked == UserSpec(played_by="replay", answers=("a",), questions=("q",))
    for spec in (UserSpec(), model, replay, asked):
        assert user_spec_from_dict(spec.as_data(), "s") == spec
    assert replay_spec(["x", "y"]) == {"played_by": "replay", "answers": ["x", "y"]}
    assert replay_spec(["x"], ["q"]) == {"played_by": "replay", "answers": ["x"],
                                         "questions": ["q"]}
    with pytest.raises(UsageError, match="one question per answer"):
        replay_spec(["x"], [])


@pytest.mark.parametrize(("data", "says"), [
    ("model", ["s.yaml: user:", "expected a mapping", "found a string"]),
    (["persona"], ["s.yaml: user:", "found a list"]),
    ({"played_by": "robot"}, ["s.yaml: user.played_by:", "persona, model, replay", "'robot'"]),
    ({"played_by": 3}, ["user.played_by:", "found 3"]),
    ({"played_by": "persona", "mood": "sad"}, ["user.mood:", "played_by: persona takes"]),
    ({"played_by": "persona", "answers": ["a"]},
     ["user.answers:", "not a setting of played_by: persona", "belongs with played_by: replay"]),
    ({"model": "pkg.m:f"}, ["user.model:", "belongs with played_by: model"]),
    ({"played_by": "model"}, ["s.yaml: user.model:", "package.module:function", "found nothing"]),
    ({"played_by": "model", "model": "pkg.users"}, ["user.model:", "found 'pkg.users'"]),
    ({"played_by": "model", "model": "pkg.users:"}, ["user.model:", "found 'pkg.users:'"]),
    ({"played_by": "model", "model": 7}, ["user.model:", "found 7"]),
    ({"played_by": "replay"}, ["s.yaml: user.answers:", "list of strings", "found nothing"]),
    ({"played_by": "replay", "answers": "yes"}, ["user.answers:", "found a string"]),
    ({"played_by": "replay", "answers": ["yes", 42]},
     ["s.yaml: user.answers[1]:", "expected a string", "found a number 42"]),
    ({"played_by": "replay", "answers": ["a"], "questions": "q"},
     ["s.yaml: user.questions:", "found a string"]),
    ({"played_by": "replay", "answers": ["a"], "questions": [None]},
     ["s.yaml: user.questions[0]:", "found nothing"]),
    ({"played_by": "replay", "answers": ["a"], "questions": ["q", "r"]},
     ["s.yaml: user.questions:", "one question per answer (1), found 2"]),
    ({"played_by": "model", "model": "m:f", "questions": []},
     ["user.questions:", "belongs with played_by: replay"]),
])
def test_a_bad_user_mapping_names_file_key_expectation_and_finding(data: Any,
                                                                   says: list[str]) -> None:
    """Every class of bad ``user:`` is a UsageError naming the file, key path, what was
    expected and what was found."""
    with pytest.raises(UsageError) as raised:
        user_spec_from_dict(data, "s.yaml")
    for part in says:
        assert part in str(raised.value)


_YAMLISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["persona", "model", "replay", "played_by", "answers", "m:f"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["played_by", "model", "answers", "x"]) | st.text(
        max_size=4), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(_YAMLISH)
def test_any_user_mapping_parses_or_is_a_usage_error(data: Any) -> None:
    """Whatever YAML puts under ``user:``, the answer is a UserSpec or a UsageError."""
    try:
        spec = user_spec_from_dict(data, "s.yaml")
    except UsageError as exc:
        assert str(exc).startswith("s.yaml: user")
    else:
        assert user_spec_from_dict(spec.as_data(), "s.yaml") == spec


def test_a_bad_user_model_function_is_a_usage_error(tmp_path: Path) -> None:
    """A missing module or function, two parameters, an async function, or something other
    than a model returned: each a UsageError naming user.model and the spec."""
    (tmp_path / "customer.py").write_text(CUSTOMER)
    world, persona = World(seed=1), Persona()
    for spec, says in [("nowhere_at_all_xyz:f", "nowhere_at_all_xyz"),
                       ("customer.py:absent", "no function 'absent'"),
                       ("customer.py:two", "takes 2 arguments"),
                       ("customer.py:later", "is async"),
                       ("customer.py:not_a_model", "returned str")]:
        with pytest.raises(UsageError) as raised:
            build_user(UserSpec(played_by="model", model=spec), world, persona, tmp_path)
        assert "user.model" in str(raised.value) and says in str(raised.value), spec


def test_the_user_model_function_may_take_the_persona(tmp_path: Path) -> None:
    """A function of one argument is given the persona; of none, called as it is."""
    (tmp_path / "customer.py").write_text(CUSTOMER)
    world = World(seed=1)
    named = build_user(UserSpec(played_by="model", model="customer.py:of_persona"), world,
                       Persona(name="Grace"), tmp_path)
    assert isinstance(named, ModelUser)
    assert asyncio.run(named.ask("Who are you?")) == "I am Grace."
    plain = build_user(UserSpec(played_by="model", model="customer.py:customer"), world,
                       Persona(), tmp_path)
    assert isinstance(plain, ModelUser) and plain.model.name == "customer"
    assert isinstance(build_user(UserSpec(), world, Persona(), None), User)
    assert isinstance(build_user(UserSpec(played_by="replay", answers=("a",)), world,
                                 Persona(), None), ReplayUser)


# --- one interface ------------------------------------------------------------------------

def test_every_user_answers_ask_and_records_its_answers_in_the_ledger() -> None:
    """Scripted, model-played and replayed users: ``await ask(q)``, each answer a
    ``user.message`` effect (turn, text, question), ``snapshot()`` with the turns."""
    persona = Persona(known_facts={"email": "ada@example.com"})
    for make in (lambda w: User(w, persona),
                 lambda w: ModelUser(w, persona, ScriptedModel(lambda r: reply("  mine  "))),
                 lambda w: ReplayUser(w, persona, ["first", "second"])):
        world = World(seed=3)
        user = make(world)
        first = asyncio.run(user.ask("Your email?"))
        asyncio.run(user.ask("Go ahead?"))
        assert world.ledger.effects[0].as_data()["data"] == {
            "turn": 1, "text": first, "question": "Your email?"}
        assert [e.key for e in world.ledger] == ["user:1", "user:2"]
        assert user.snapshot()["turns"] == 2
        assert user.OPERATIONS == ("ask",)
    assert ReExportedModelUser is ModelUser


def test_the_scripted_user_answers_alike_sync_and_async() -> None:
    """``answer`` (for older callers) and ``await ask`` give the same replies."""
    persona = Persona(known_facts={"email": "ada@example.com"}, patience=2)
    sync, async_ = User(World(seed=1), persona), User(World(seed=1), persona)
    questions = ["Your email?", "Shall I?", "Sure?"]
    assert [sync.answer(q) for q in questions] == \
        [asyncio.run(async_.ask(q)) for q in questions]


def test_the_user_is_reached_through_the_environment_client(tmp_path: Path) -> None:
    """``env.client("user").ask(q)`` reaches the scenario's user under target ``user.ask``
    and records the call."""
    scenario = load_scenario(_scenario_with_user(
        tmp_path, {"played_by": "replay", "answers": ["It is the mugs."]}))
    env = environment_for(scenario, seed=5)
    assert isinstance(env.user, ReplayUser)

    async def ask() -> Any:
        return await env.client("user").ask("Which item?")

    assert asyncio.run(ask()) == "It is the mugs."
    assert [c.target for c in env.calls] == ["user.ask"]
    assert [e.operation for e in env.world.ledger] == ["message"]


def test_a_model_played_user_answers_in_character_from_the_persona_alone() -> None:
    """The user's model is told the persona and shown only the questions and its own
    answers; a script reading just that answers as Ada would."""
    seen: list[ModelRequest] = []

    def llm(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        system = request.messages[0].content
        fact = next(part for part in system.split("You know: ")[1].split("; "))
        return reply(f"{fact.split('.')[0]}." if "item" in request.messages[-1].content
                     else "Yes.")

    world = World(seed=4)
    user = ModelUser(world, Persona(name="Ada", goal="a refund",
                                    known_facts={"item": "kettle"}), ScriptedModel(llm))
    assert asyncio.run(user.ask("Which item arrived damaged?")) == "item: kettle."
    assert asyncio.run(user.ask("Shall I refund it?")) == "Yes."
    last = seen[-1]
    assert [(m.role, m.content) for m in last.messages[1:]] == [
        ("user", "Which item arrived damaged?"), ("assistant", "item: kettle."),
        ("user", "Shall I refund it?")]
    assert last.tools == () and last.settings.model_dump() == type(last.settings)().model_dump()
    assert "You are Ada" in last.messages[0].content and "a refund" in last.messages[0].content


# --- recording and replay -----------------------------------------------------------------

def test_a_model_played_episode_is_byte_identical_on_two_runs(tmp_path: Path) -> None:
    """A ScriptedModel as the user's model: the same seed gives the same ledger and journal,
    and the user's answers are the model's, in character (she changes her mind at turn 3)."""
    scenario = load_scenario(_scenario_with_user(
        tmp_path, {"played_by": "model", "model": "customer.py:customer"}))
    first, second = run_episode(scenario, seed=11), run_episode(scenario, seed=11)
    assert first.ledger == second.ledger
    assert (first.ledger_digest, first.journal_digest) == \
        (second.ledger_digest, second.journal_digest)
    answers = recorded_answers(first.ledger)
    assert answers == ["It is ada@example.com.", "The kettle.",
                       "Actually, I changed my mind: please refund the mugs instead, the "
                       "kettle works after all."]
    assert first.ok, [v for v in first.verdicts if not v.holds]


def test_replaying_recorded_answers_reproduces_the_episode_without_the_model(
        tmp_path: Path) -> None:
    """The answers read back from a model-played episode, replayed as ``user: {played_by:
    replay}``, give the identical ledger effects and journal."""
    played = run_episode(load_scenario(_scenario_with_user(
        tmp_path, {"played_by": "model", "model": "customer.py:customer"})), seed=12)
    folder = tmp_path / "replay"
    folder.mkdir()
    spec = replay_spec(recorded_answers(played.ledger), recorded_questions(played.ledger))
    assert len(spec["questions"]) == 3
    replay = load_scenario(_scenario_with_user(folder, spec))
    replayed = run_episode(replay, seed=12)
    assert replayed.ledger == played.ledger
    assert replayed.journal_digest == played.journal_digest
    assert recorded_answers(replayed.ledger) == spec["answers"]
    assert replayed.ok and replayed.status == played.status == "completed"


def test_a_question_beyond_the_recording_is_a_divergence_error() -> None:
    """The replayed user refuses a question it has no answer for, says the episode diverged
    from the recording, and keeps that in its final state and in replay_divergence."""
    world = World(seed=1)
    user = world.add("user", ReplayUser(world, Persona(), ["only one"]))
    assert asyncio.run(user.ask("First?")) == "only one"
    assert inconclusive(world) == []
    with pytest.raises(ReplayDiverged, match=r"question 2 .*1 answer\(s\).*diverged"):
        asyncio.run(user.ask("Second?"))
    assert "inconclusive" in user.snapshot()["unsettled"][0]
    assert inconclusive(world) == user.unsettled and len(user.unsettled) == 1
    assert user.snapshot()["turns"] == 1
    assert inconclusive(World(seed=1)) == []


def test_another_question_than_recorded_is_a_divergence_error() -> None:
    """With the recorded questions, the n-th question must be the n-th recorded one."""
    world = World(seed=1)
    user = world.add("user", ReplayUser(world, Persona(), ["a", "b"], ["Which?", "Sure?"]))
    assert asyncio.run(user.ask("Which?")) == "a"
    with pytest.raises(ReplayDiverged, match=r"question 2 was 'Really\?', the recorded "):
        asyncio.run(user.ask("Really?"))
    assert len(inconclusive(world)) == 1 and [e.data["text"] for e in world.ledger] == ["a"]
    with pytest.raises(UsageError, match="one recorded question per answer"):
        ReplayUser(world, Persona(), ["a"], [])


def test_a_failing_user_model_makes_the_episode_inconclusive() -> None:
    """The user's model raising (a server down): the error reaches the caller, the user keeps
    why, and a retried question is asked afresh, not twice in the model's history."""
    calls: list[ModelRequest] = []

    def flaky(request: ModelRequest) -> ModelResponse:
        calls.append(request)
        if len(calls) == 1:
            raise ModelUnavailable("HTTP 503", model="local", status=503)
        return reply("Fine.")

    world = World(seed=1)
    user = world.add("user", ModelUser(world, Persona(), ScriptedModel(flaky, name="local")))
    with pytest.raises(ModelUnavailable):
        asyncio.run(user.ask("Which?"))
    assert user.turn == 0 and len(world.ledger) == 0
    assert "the user's model (local) failed on question 1" in inconclusive(world)[0]
    assert asyncio.run(user.ask("Which?")) == "Fine."
    assert [m.role for m in calls[1].messages] == ["system", "user"]
    assert len(world.ledger) == 1
    assert isinstance(ReplayDiverged("x"), UsageError)


def test_recorded_answers_reads_only_user_messages() -> None:
    """Other effects are skipped; a user message without its text is an error."""
    ledger = [{"seq": 1, "service": "payments", "operation": "refund", "data": {"text": "no"}},
              {"seq": 2, "service": "user", "operation": "message",
               "data": {"turn": 1, "text": "yes", "question": "q"}}]
    assert recorded_answers(ledger) == ["yes"]
    assert recorded_questions(ledger) == ["q"]
    with pytest.raises(UsageError, match="ledger effect 3"):
        recorded_answers([{"seq": 3, "service": "user", "operation": "message", "data": {}}])
