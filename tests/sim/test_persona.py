"""The simulated user answers from its persona, loses patience, and changes its mind."""

from __future__ import annotations

from tether.sim.persona import User
from tether.sim.scenario import Persona
from tether.sim.world import World


def test_answers_from_known_facts_then_changes_mind_then_runs_out_of_patience() -> None:
    """Facts by keyword, a change of mind at turn k, curt answers past its patience."""
    world = World(seed=1)
    user = User(world, Persona(known_facts={"email": "ada@example.com"}, patience=3,
                               changes_mind_at=2, new_request="refund the mugs"))
    assert user.answer("Can you confirm your email?") == "email: ada@example.com"
    assert user.answer("Shall I refund the kettle?") == \
        "Actually, I changed my mind: refund the mugs"
    assert user.snapshot() == {"turns": 2, "current_request": "refund the mugs"}
    patient = User(world, Persona(patience=1, style="angry"))
    patient.answer("Shall I go ahead?")
    assert patient.answer("Are you sure?") == (
        "Honestly, this is taking too long. I already told you everything. Please just do it.")
    assert [e.operation for e in world.ledger] == ["message"] * 4


def test_a_model_can_play_the_user() -> None:
    """ModelUser: the persona becomes instructions; each answer is the model's, in the ledger."""
    import asyncio

    from tether.models import ModelRequest, ModelResponse, ScriptedModel, reply
    from tether.sim.persona import ModelUser

    prompts: list[ModelRequest] = []

    def llm(request: ModelRequest) -> ModelResponse:
        prompts.append(request)
        return reply(f"answer {len(prompts)}")

    world = World(seed=2)
    user = ModelUser(world, Persona(name="Ada", goal="a refund", changes_mind_at=2,
                                    new_request="store credit"), ScriptedModel(llm))
    assert asyncio.run(user.answer_async("Which item?")) == "answer 1"
    assert asyncio.run(user.answer_async("Refund or credit?")) == "answer 2"
    system = prompts[0].messages[0].content
    assert "You are Ada" in system and "store credit" in system
    assert [m.role for m in prompts[1].messages] == ["system", "user", "assistant", "user"]
    assert [e.data["text"] for e in world.ledger] == ["answer 1", "answer 2"]
