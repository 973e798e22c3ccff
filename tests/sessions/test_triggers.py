"""Triggers of a declarative agent: input validated against the trigger's schema before
anything is appended or run, variables set with the trigger as provenance (typed when the
template is one input field), and the rendered turn run in the session."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tether import Runtime
from tether.errors import TriggerInputInvalid, UsageError
from tether.sessions import Sessions, fire
from tether.sessions.loader import definition_from_dict

H = "tests.sessions.helpers_agents"
SPEC: dict[str, Any] = {
    "name": "helper",
    "instructions": "Help the customer on the {{ plan }} plan.",
    "variables": {"plan": {"type": "string", "default": "basic"},
                  "seats": {"type": "integer", "default": 1}},
    "model": {"provider": "scripted", "script": f"{H}:script"},
    "tools": [f"{H}:echo"],
    "triggers": {
        "user-message": {"input": {"type": "object", "properties": {"text": {"type": "string"}},
                                   "required": ["text"]},
                         "turn": "{{ input.text }}"},
        "plan-changed": {"input": {"type": "object",
                                   "properties": {"plan": {"type": "string"},
                                                  "seats": {"type": "integer"}},
                                   "required": ["plan", "seats"]},
                         "variables": {"plan": "{{ input.plan }}",
                                       "seats": "{{ input.seats }}"}},
    },
}


def _setup() -> tuple[Sessions, Any]:
    definition = definition_from_dict(SPEC, where="<test>")
    agent = definition.build()
    sessions = Sessions(Runtime(), agents=[agent])
    sessions.create("s1", agent=agent, variables=definition.variables())
    return sessions, definition


def test_a_user_message_trigger_runs_the_rendered_turn() -> None:
    """The input's text becomes the user turn; the turn's run answers."""
    sessions, definition = _setup()
    result = asyncio.run(fire(sessions, definition, "s1", "user-message", {"text": "hello"}))
    history = sessions.session("s1").history()
    assert history[0].content == "hello"
    assert "got" in str(result)


def test_a_variables_only_trigger_sets_typed_values_with_provenance() -> None:
    """plan-changed sets plan (text) and seats (an integer, kept as one), journaled as set by
    the trigger; no turn runs."""
    sessions, definition = _setup()
    asyncio.run(fire(sessions, definition, "s1", "plan-changed", {"plan": "gold", "seats": 3}))
    session = sessions.session("s1")
    assert session.state.variables["plan"] == "gold"
    assert session.state.variables["seats"] == 3
    assert session.turns == ()


@pytest.mark.parametrize("payload", [{}, {"text": 3}, {"plan": "gold"}])
def test_invalid_input_is_refused_before_anything_is_appended(payload: dict[str, Any]) -> None:
    """Input that breaks the schema: TriggerInputInvalid, and the session's revision is
    unchanged (nothing appended, no run)."""
    sessions, definition = _setup()
    before = sessions.session("s1").revision
    name = "plan-changed" if "plan" in payload else "user-message"
    with pytest.raises(TriggerInputInvalid):
        asyncio.run(fire(sessions, definition, "s1", name, payload))
    assert sessions.session("s1").revision == before
    assert sessions.session("s1").turns == ()


def test_an_unknown_trigger_names_the_declared_ones(tmp_path: Path) -> None:
    """A trigger the agent does not declare: a UsageError listing those it does."""
    sessions, definition = _setup()
    with pytest.raises(UsageError, match="plan-changed"):
        asyncio.run(fire(sessions, definition, "s1", "webhook", {}))
