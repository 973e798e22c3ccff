"""``tool_choice`` in an agent file's ``model.settings`` reaches the agent's ModelSettings."""

from __future__ import annotations

from typing import Any

import pytest

from tether.errors import UsageError
from tether.sessions.loader import definition_from_dict


def agent_file(settings: dict[str, Any]) -> dict[str, Any]:
    return {"name": "local", "instructions": "Help.",
            "model": {"provider": "openai", "name": "smollm2",
                      "base_url": "http://127.0.0.1:8080/v1", "settings": settings}}


def test_tool_choice_from_yaml() -> None:
    """``tool_choice: auto`` in the file is the built agent's setting."""
    agent = definition_from_dict(agent_file({"tool_choice": "auto"})).build({})
    assert agent.settings.tool_choice == "auto"


@pytest.mark.parametrize("value", ["", "two words", 3])
def test_a_bad_tool_choice_names_the_key(value: object) -> None:
    """An empty, spaced or non-text tool_choice is refused naming the key."""
    with pytest.raises(UsageError, match=r"model\.settings\.tool_choice"):
        definition_from_dict(agent_file({"tool_choice": value})).build({})
