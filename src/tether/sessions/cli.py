"""``tether agent check`` and ``tether agent show``: an agent YAML file, validated and shown.

``check FILE`` validates the file and resolves every import path it names (scripted model,
compressor, server tools, policy file) without building tools from a factory or reaching a
network: exit 0 when it is sound, 2 with the file, key path, expected and found when it is not.

``show FILE [--var name=value ...]`` builds the agent (tool factories receive no environment)
and prints what the model will see: the rendered instructions, and every tool with its effect
class and the JSON Schemas of its arguments and result; then the model, the variables' values
and the triggers. ``--json`` prints the same as one JSON object. Exit 2 on bad input (an
undeclared or missing variable, a value of the wrong type).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tether.cli_options import JsonOpt
from tether.errors import UsageError
from tether.sessions.loader import (
    AgentDefinition,
    is_client_tool,
    load_definition,
    parse_variable,
)
from tether.terminal import fail, stdout

__all__ = ["agent_app", "describe_agent"]

agent_app = typer.Typer(no_args_is_help=True, help="Check and show declarative (YAML) agents.")

FileArg = Annotated[Path, typer.Argument(help="The agent's YAML file.")]
VarOpt = Annotated[list[str] | None, typer.Option(
    "--var", help="A variable's value, name=value (repeatable; JSON for non-string types).")]


def _fail(exc: UsageError) -> typer.Exit:
    return fail(exc)


@agent_app.command()
def check(file: FileArg, as_json: JsonOpt = False) -> None:
    """Validate an agent file without running it (exit 0 sound, 2 not).

    --json prints {"file", "ok", "agent", "tool_entries", "variables", "triggers"}."""
    try:
        definition = load_definition(file)
        definition.check()
    except UsageError as exc:
        raise _fail(exc) from exc
    spec = definition.spec
    if as_json:
        print(json.dumps({"file": str(file), "ok": True, "agent": spec.name,
                          "tool_entries": len(definition.tool_entries),
                          "variables": sorted(spec.variables),
                          "triggers": sorted(spec.triggers)}, indent=2))
        return
    stdout().print(f"ok: {escape(str(file))}: agent {escape(spec.name)}, "
                   f"{len(definition.tool_entries)} tool entries, {len(spec.variables)} "
                   f"variables, {len(spec.triggers)} triggers")


@agent_app.command()
def show(file: FileArg, var: VarOpt = None, as_json: JsonOpt = False) -> None:
    """Print what the model will see: rendered instructions, tools and their JSON Schemas."""
    try:
        definition = load_definition(file)
        shown = describe_agent(definition, _variables(definition, var or []))
    except UsageError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False))
        return
    _render(shown)


def describe_agent(definition: AgentDefinition, variables: dict[str, Any]) -> dict[str, Any]:
    """What ``show`` prints, as data: the agent built for ``variables`` and described."""
    agent = definition.build(variables)
    spec = definition.spec
    return {
        "name": agent.name,
        "model": {"provider": spec.model.provider, "name": agent.model.name,
                  "settings": agent.settings.model_dump(mode="json", exclude_defaults=True)},
        "instructions": agent.instructions,
        "variables": definition.variables(variables),
        "tools": [{"name": t.name, "description": t.description, "effect": t.effect.value,
                   "client": is_client_tool(t),
                   "arguments": t.spec().parameters, "result": t.result_schema()}
                  for t in agent.tools],
        "triggers": {name: trigger.model_dump(mode="json", exclude_defaults=True)
                     for name, trigger in spec.triggers.items()},
    }


def _variables(definition: AgentDefinition, given: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {item!r}: expected name=value")
        variable = definition.spec.variables.get(name)
        if variable is None:
            known = ", ".join(definition.spec.variables) or "none are declared"
            raise UsageError(f"--var {name}: {definition.source} declares no variable {name!r} "
                             f"(declared: {known})")
        values[name] = parse_variable(variable.type, text)
    return values


def _render(shown: dict[str, Any]) -> None:
    console = stdout()
    model = shown["model"]
    console.print(f"[bold]agent[/bold] {escape(shown['name'])}  model: "
                  f"{escape(model['provider'])} {escape(model['name'])}")
    console.print("\n[bold]instructions[/bold]")
    console.print(escape(shown["instructions"]) or "(none)")
    console.print(f"\n[bold]tools[/bold] ({len(shown['tools'])})")
    for item in shown["tools"]:
        where = "client" if item["client"] else "server"
        console.print(f"- {escape(item['name'])}  ({item['effect']}, {where})")
        if item["description"]:
            console.print(f"  {escape(item['description'])}")
        console.print(f"  arguments: {escape(json.dumps(item['arguments'], sort_keys=True))}")
        console.print(f"  result: {escape(json.dumps(item['result'], sort_keys=True))}")
    console.print("\n[bold]variables[/bold]")
    for name, value in shown["variables"].items():
        console.print(f"- {escape(name)} = {escape(json.dumps(value))}")
    if shown["triggers"]:
        console.print("\n[bold]triggers[/bold]")
        for name, trigger in shown["triggers"].items():
            console.print(f"- {escape(name)}: {escape(json.dumps(trigger, sort_keys=True))}")
