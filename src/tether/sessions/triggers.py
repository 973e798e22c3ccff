"""Triggers: the named, typed entry points of a declarative agent that start a turn.

An agent file declares each trigger's input schema and how its input becomes the user turn
and variables (``triggers:`` in :mod:`tether.sessions.spec`)::

    triggers:
      user-message: {input: {type: object, properties: {text: {type: string}},
                             required: [text]},
                     turn: "{{ input.text }}"}
      plan-changed: {input: {...}, turn: "(The plan changed to {{ input.plan }}.)",
                     variables: {plan: "{{ input.plan }}"}}

:func:`fire` validates the input against the schema first — an invalid input is refused
before anything is appended or run — then sets the trigger's variables (each journaled with
``by="trigger"`` and the trigger's name as provenance; a template that is exactly one
``{{ input.field }}`` keeps the field's JSON type, any other is rendered as text and checked
against the variable's declared type), then, if the trigger has a ``turn``, runs the turn with
the rendered text. A trigger without ``turn`` only changes variables.

Variables and the turn are separate appends: a crash between them leaves the variables set and
no turn started, and firing again sets the same values and starts the turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tether.errors import TriggerInputInvalid, UsageError
from tether.runtime.schema_check import problems
from tether.sessions.spec import check_value, render

if TYPE_CHECKING:
    from tether.sessions.loader import AgentDefinition
    from tether.sessions.session import Session, Sessions, TurnResult

__all__ = ["fire"]

_ONE_INPUT = re.compile(r"\s*\{\{\s*input\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*")


async def fire(sessions: Sessions, definition: AgentDefinition, session_id: str,
               trigger: str, payload: Mapping[str, Any]) -> TurnResult | Session:
    """Fire ``trigger`` of ``definition`` on session ``session_id`` with ``payload``: the
    turn's result, or the session when the trigger only sets variables."""
    spec = definition.spec.triggers.get(trigger)
    if spec is None:
        known = ", ".join(sorted(definition.spec.triggers)) or "none are declared"
        raise UsageError(f"{definition.source}: agent {definition.name!r} has no trigger "
                         f"{trigger!r} (triggers: {known})")
    found = problems(spec.input, dict(payload))
    if found:
        raise TriggerInputInvalid(f"trigger {trigger!r}: the input does not fit its schema: "
                                  + "; ".join(found))
    session = sessions.session(session_id)
    values: dict[str, Any] = {**session.state.variables, "input": dict(payload)}
    for name, template in spec.variables.items():
        value = _value(template, values)
        declared = definition.spec.variables.get(name)
        if declared is not None:
            problem = check_value(declared.type, value)
            if problem is not None:
                raise TriggerInputInvalid(f"trigger {trigger!r}: variables.{name}: {problem}")
        values[name] = value
    for name in spec.variables:
        session = sessions.set_variable(session_id, name, values[name], by="trigger",
                                        provenance={"trigger": trigger})
    if spec.turn is None:
        return session
    return await sessions.turn(session_id, render(spec.turn, values), trigger=trigger)


def _value(template: str, values: Mapping[str, Any]) -> Any:
    """A variable's new value: one input field as it came (its JSON type), else the text."""
    whole = _ONE_INPUT.fullmatch(template)
    if whole is not None and whole.group(1) in values["input"]:
        return values["input"][whole.group(1)]
    return render(template, values)
