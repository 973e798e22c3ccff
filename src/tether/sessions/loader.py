"""Loading an agent YAML file into the same :class:`tether.Agent` a Python author builds.

:func:`load_definition` reads and validates a file (see :mod:`tether.sessions.spec` for the
format) into an :class:`AgentDefinition`; :meth:`AgentDefinition.build` makes the
:class:`~tether.agent.agent.Agent` for given variable values. Nothing here is a second agent
implementation: the model, tools, budgets, retry policy, policy and window are the library's own
objects, built from the file's values.

>>> definition = load_definition("examples/support_chat/agent.yaml")  # doctest: +SKIP
>>> agent = definition.build({"customer_name": "Ada"})                # doctest: +SKIP

Import paths (``package.module:attr`` or ``path/to/file.py:attr``, relative to the agent file's
folder) name a scripted model's script, a window's compressor and server tools. A server tool's
path may name a :class:`tether.Tool`, a list of them, or a *tool factory*: a function of one
argument, the environment, returning a tool or a list of tools — in a simulated episode the
:class:`~tether.sim.environment.Environment` (so the tools reach the world's services through
``env.client(...)``), elsewhere what the application passes as ``env=`` (``None`` from
``tether agent check`` and ``show``).

Every mistake is a :class:`~tether.errors.UsageError` naming the file, the key path, what was
expected and what was found (CLI exit 2).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tether import imports
from tether.agent.agent import Agent, TemplateInstructions
from tether.agent.memory_recall import MemoryRecall
from tether.agent.window import ContextWindow, drop_oldest
from tether.errors import UsageError
from tether.models.anthropic import AnthropicModel
from tether.models.base import Model, ModelSettings
from tether.models.openai import OpenAIModel
from tether.models.scripted import ScriptedModel
from tether.policy.policy import Policy, load_policy, policy_from_dict
from tether.runtime.budgets import Budgets
from tether.runtime.client_tools import ClientTool, client_tool
from tether.runtime.retry import RetryPolicy, Rule
from tether.runtime.schema_check import problems
from tether.runtime.tools import Tool
from tether.sessions.spec import (
    AgentSpec,
    ClientToolSpec,
    McpSpec,
    SessionToolSpec,
    TriggerSpec,
    check_value,
    references,
    render,
)
from tether.specs import describe, explain, load_yaml, one_of

__all__ = ["AgentDefinition", "ToolEntry", "definition_from_dict", "import_object",
           "is_client_tool", "load_agent", "load_definition", "parse_variable"]

#: One entry of ``tools:``: its key path, its kind (server, client, mcp, session) and its
#: settings.
ToolEntry = tuple[str, str, "str | ClientToolSpec | McpSpec | SessionToolSpec"]

_TOOL_KINDS = {"client": ClientToolSpec, "mcp": McpSpec, "session": SessionToolSpec}


@dataclass(frozen=True)
class AgentDefinition:
    """An agent file, validated: build it with :meth:`build` for given variables."""

    spec: AgentSpec
    source: str
    base_dir: Path | None
    tool_entries: tuple[ToolEntry, ...] = ()
    _resolved: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def variables(self, given: Mapping[str, Any] | None = None, *,
                  require: bool = True) -> dict[str, Any]:
        """The declared variables' values: ``given`` over the defaults, each checked against
        its type. An undeclared or (unless not ``require``) missing required variable is a
        UsageError."""
        given = dict(given or {})
        declared = self.spec.variables
        for name in given:
            if name not in declared:
                known = ", ".join(declared) or "none are declared"
                raise UsageError(f"{self.source}: variables: no variable {name!r} is declared "
                                 f"(declared: {known})")
        values: dict[str, Any] = {}
        for name, variable in declared.items():
            if name in given:
                problem = check_value(variable.type, given[name])
                if problem is not None:
                    raise UsageError(f"{self.source}: variables.{name}: {problem}")
                values[name] = given[name]
            elif not variable.required:
                values[name] = variable.default
        missing = [n for n, v in declared.items() if v.required and n not in given]
        if missing and require:
            raise UsageError(f"{self.source}: variables.{missing[0]}: required (no default) and "
                             f"not given; give it (--var {missing[0]}=...)")
        return values

    def instructions(self, given: Mapping[str, Any] | None = None) -> str:
        """The instructions rendered with the variables' values."""
        values = self.variables(given)
        try:
            return render(self.spec.instructions, values)
        except UsageError as exc:
            raise UsageError(f"{self.source}: instructions: {exc}") from exc

    def check(self) -> None:
        """Resolve every import path the file names (scripted model, compressor, server tools,
        policy file) without building tools from a factory or reaching a network."""
        if self.spec.model.script is not None:
            self._script()
        self._compressor()
        for at, kind, settings in self.tool_entries:
            if kind == "server":
                assert isinstance(settings, str)
                self._server_object(at, settings)
        self._policy()

    def build(self, variables: Mapping[str, Any] | None = None, *, env: Any = None,
              deferred: bool = False) -> Agent:
        """The :class:`~tether.agent.agent.Agent` this file defines; tool factories receive
        ``env``.

        Its instructions and memory subjects are rendered at the start of every run from the
        run's variables (a session's, see ``Task.variables``) over ``variables`` over the
        declared defaults, each checked against its type; as text, ``agent.instructions``
        reads as rendered with ``variables``. With ``deferred`` the values come with each run
        (a session's agent): required variables need not be given now, and while one is
        missing the text is the template as written.
        """
        spec = self.spec
        given = dict(variables or {})
        complete = self.variables(given, require=not deferred).keys() >= {
            n for n, v in spec.variables.items() if v.required}
        text = self.instructions(given) if complete else spec.instructions
        tools = self.tools(env)
        names = [t.name for t in tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"{self.source}: tools: two tools are named {duplicates[0]!r}")
        return Agent(
            name=spec.name, model=self.model(), tools=tools,
            instructions=TemplateInstructions(
                text, lambda run: self.instructions(self._run_values(given, run))),
            memory=self._memory_recall(given),
            budgets=Budgets(**spec.budgets.model_dump()), retry=self.retry_policy(),
            window=ContextWindow(max_tokens=spec.window.max_tokens,
                                 compressor=self._compressor(),
                                 overflow_ratio=spec.window.overflow_ratio),
            settings=ModelSettings(**spec.model.settings.model_dump()),
            parallel_tool_calls=spec.parallel_tool_calls, policy=self._policy(),
            environment=spec.environment)

    # -- the parts ------------------------------------------------------------------------

    def _run_values(self, given: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
        """A run's values: its variables over those the agent was built with. A name the file
        does not declare cannot appear in a template (they are checked at load), so it is
        left out rather than failing a run that started."""
        declared = self.spec.variables
        return self.variables({**given, **{k: v for k, v in run.items() if k in declared}})

    def _memory_recall(self, given: Mapping[str, Any]) -> MemoryRecall | None:
        """``memory:`` as the agent's :class:`MemoryRecall`: subjects rendered per run."""
        memory = self.spec.memory
        if memory is None:
            return None

        def subject(index: int, template: str) -> Callable[[Mapping[str, Any]], str]:
            def render_subject(run: Mapping[str, Any]) -> str:
                values = self._run_values(given, run)
                try:
                    return render(template, values)
                except UsageError as exc:
                    raise UsageError(f"{self.source}: memory.subjects[{index}]: {exc}") from exc
            return render_subject

        return MemoryRecall(namespace=memory.namespace,
                            subjects=[subject(i, t) for i, t in enumerate(memory.subjects)],
                            minimum_trust=memory.min_trust, max_facts=memory.max_facts)

    def model(self) -> Model:
        """The model the file names (provider SDKs are imported only for their provider)."""
        model = self.spec.model
        if model.provider == "scripted":
            return ScriptedModel(self._script(), name=model.name or "scripted")
        assert model.name is not None  # the spec requires it for a provider
        build = OpenAIModel if model.provider == "openai" else AnthropicModel
        try:
            return build(model.name, base_url=model.base_url)
        except UsageError as exc:
            raise UsageError(f"{self.source}: model: {exc}") from exc

    def retry_policy(self) -> RetryPolicy:
        retry = self.spec.retry
        policy = RetryPolicy.never() if retry.preset == "never" else RetryPolicy()
        for failure, rule in retry.rules.items():
            policy = policy.with_rule(failure, Rule(**rule.model_dump()))
        if retry.retry_budget is not None:
            policy = replace(policy, retry_budget=retry.retry_budget)
        return policy

    def tools(self, env: Any = None) -> list[Tool[Any, Any]]:
        """Every tool, in the file's order: server tools (factories called with ``env``),
        client tools, session tools, and the tools of each MCP server (listed from the server
        now)."""
        built: list[Tool[Any, Any]] = []
        for at, kind, settings in self.tool_entries:
            if kind == "server":
                assert isinstance(settings, str)
                built.extend(self._server_tools(at, settings, env))
            elif kind == "client":
                assert isinstance(settings, ClientToolSpec)
                built.append(self._client_tool(at, settings))
            elif kind == "session":
                assert isinstance(settings, SessionToolSpec)
                built.extend(self._session_tools(settings))
            else:
                assert isinstance(settings, McpSpec)
                built.extend(self._mcp_tools(at, settings))
        return built

    def _script(self) -> Callable[..., Any]:
        script = self.spec.model.script
        assert script is not None
        found = self._import(script, "model.script")
        if not callable(found):
            raise UsageError(f"{self.source}: model.script: {script!r} is a "
                             f"{type(found).__name__}, not a function of the model request")
        return found  # type: ignore[no-any-return]

    def _compressor(self) -> Any:
        compress = self.spec.window.compress
        if compress == "drop_oldest":
            return drop_oldest
        found = self._import(compress, "window.compress")
        if not callable(found):
            raise UsageError(f"{self.source}: window.compress: {compress!r} is not a function "
                             "(messages, target_tokens, count) -> messages")
        return found

    def _policy(self) -> Policy | None:
        policy = self.spec.policy
        if policy is None:
            return None
        if isinstance(policy, str):
            path = Path(policy).expanduser()
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            if not path.is_file():
                raise UsageError(f"{self.source}: policy: no policy file {path}")
            return load_policy(path)
        try:
            return policy_from_dict(policy, where=self.source)
        except UsageError as exc:
            # The policy's own errors name paths inside it; inline, they sit under policy.
            text, head = str(exc), f"{self.source}: "
            if text.startswith(head):
                raise UsageError(f"{head}policy.{text[len(head):]}") from exc
            raise

    def _server_object(self, at: str, path: str) -> Any:
        found = self._import(path, at)
        if isinstance(found, Tool) or _tool_list(found):
            return found
        if callable(found):
            _check_factory(found, f"{self.source}: {at}: {path!r}")
            return found
        raise UsageError(f"{self.source}: {at}: {path!r} is {describe(found)} "
                         f"({type(found).__name__}); expected a tether.Tool, a list of them, "
                         "or a function of the environment returning them")

    def _server_tools(self, at: str, path: str, env: Any) -> list[Tool[Any, Any]]:
        found = self._server_object(at, path)
        if isinstance(found, Tool):
            return [found]
        if _tool_list(found):
            return list(found)
        try:
            made = found(env)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"{self.source}: {at}: the tool factory {path!r} raised "
                             f"{type(exc).__name__}: {exc}") from exc
        if isinstance(made, Tool):
            return [made]
        if _tool_list(made):
            return list(made)
        raise UsageError(f"{self.source}: {at}: the tool factory {path!r} returned "
                         f"{type(made).__name__}; expected a tether.Tool or a list of them")

    def _client_tool(self, at: str, spec: ClientToolSpec) -> Tool[Any, Any]:
        try:
            # The MCP toolset's models: the schema as written is what the model sees, and what
            # the arguments and the caller's result are validated against.
            from tether.agent.mcp import arguments_model, schema_result_type

            made: Tool[Any, Any] = client_tool(
                spec.name, description=spec.description,
                args=arguments_model(spec.name, spec.args),
                result=schema_result_type(spec.name, spec.result or None), effect=spec.effect,
                timeout_s=spec.timeout_s)
        except ImportError as exc:
            raise UsageError(f"{self.source}: {at}: a client tool declared by JSON Schema needs "
                             "the jsonschema package (pip install 'tether[mcp]')") from exc
        except UsageError as exc:
            raise UsageError(f"{self.source}: {at}: {exc}") from exc
        return made

    def _session_tools(self, spec: SessionToolSpec) -> list[Tool[Any, Any]]:
        """``session:`` as :func:`tether.sessions.tools.session_tools` (bound to the Sessions
        that runs the agent's turns when it is added there)."""
        from tether.sessions.tools import session_tools

        declared = self.spec.variables
        return session_tools(resources=spec.resources, variables=spec.variables,
                             writable_resources=spec.writable_resources,
                             variable_types={n: declared[n].type for n in spec.variables
                                             if n in declared})

    def _mcp_tools(self, at: str, spec: McpSpec) -> list[Tool[Any, Any]]:
        from tether.agent.mcp import mcp_toolset

        try:
            return mcp_toolset(spec.url, effects=spec.effects or None, only=spec.only,
                               key_arg=spec.key_arg, trust=spec.trust, attempts=spec.attempts,
                               timeout_s=spec.timeout_s)
        except UsageError as exc:
            raise UsageError(f"{self.source}: {at}.url: {exc}") from exc

    def _import(self, path: str, at: str) -> Any:
        if path not in self._resolved:
            self._resolved[path] = import_object(path, self.base_dir,
                                                 what=f"{self.source}: {at}")
        return self._resolved[path]


def _tool_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and \
        all(isinstance(t, Tool) for t in value)


def _check_factory(fn: Callable[..., Any], what: str) -> None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return  # a builtin: it will say so itself when called
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 1 or not (positional or any(p.kind == p.VAR_POSITIONAL for p in params)):
        shown = ", ".join(p.name for p in params)
        raise UsageError(f"{what}: the tool factory takes ({shown}); it must take one argument, "
                         "the environment: def tools(env) -> list[tether.Tool]")


def is_client_tool(tool: Tool[Any, Any]) -> bool:
    """Whether ``tool`` is run by the caller (a :func:`tether.client_tool`)."""
    return isinstance(tool, ClientTool)


# -- reading a file ----------------------------------------------------------------------


def load_definition(path: str | Path) -> AgentDefinition:
    """Read and validate an agent file (nothing is imported or built yet)."""
    data = load_yaml(path, "agent")
    return definition_from_dict(data, where=str(path), base_dir=Path(path).resolve().parent)


def load_agent(path: str | Path, variables: Mapping[str, Any] | None = None, *,
               env: Any = None) -> Agent:
    """The agent an agent file defines, built for ``variables`` (see :meth:`AgentDefinition.
    build`)."""
    return load_definition(path).build(variables, env=env)


def definition_from_dict(data: Any, *, where: str = "<agent>",
                         base_dir: Path | None = None) -> AgentDefinition:
    """Validate parsed YAML/JSON data as an agent file (see :mod:`tether.sessions.spec`)."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping at the top (name, model, instructions "
                         f"...), found {describe(data)}")
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise explain(where, "", exc, AgentSpec) from exc
    entries = tuple(_tool_entry(item, index, where) for index, item in enumerate(spec.tools))
    _check_templates(spec, where)
    _check_triggers(spec, where)
    _check_tool_names(entries, where)
    _check_session_entries(spec, entries, where)
    return AgentDefinition(spec=spec, source=where, base_dir=base_dir, tool_entries=entries)


def _tool_entry(item: Any, index: int, where: str) -> ToolEntry:
    at = f"tools[{index}]"
    if isinstance(item, str):
        return at, "server", _import_path(item, where, at)
    if isinstance(item, dict) and set(item) == {"server"}:
        path = item["server"]
        if not isinstance(path, str):
            raise UsageError(f"{where}: {at}.server: expected package.module:attr, found "
                             f"{describe(path)}")
        return f"{at}.server", "server", _import_path(path, where, f"{at}.server")
    # server: is read above; it is listed for the message of a mapping that is none of these.
    kinds: dict[str, Any] = {"server": ClientToolSpec, **_TOOL_KINDS}
    kind, settings = one_of(item, kinds, where=where, at=at, noun="tool kind")
    return f"{at}.{kind}", kind, settings


def _import_path(text: str, where: str, at: str) -> str:
    imports.split_spec(text, what=f"{where}: {at}",
                       hint="a tether.Tool, a list of them or a tool factory")
    return text.strip()


def _check_templates(spec: AgentSpec, where: str) -> None:
    for at, text, roots in spec.templates():
        try:
            found = references(text)
        except UsageError as exc:
            raise UsageError(f"{where}: {at}: {exc}") from exc
        for reference in found:
            root = reference.split(".")[0]
            if root not in roots:
                known = ", ".join(sorted(roots)) or "none are declared"
                raise UsageError(f"{where}: {at}: {{{{ {reference} }}}} names no declared "
                                 f"variable (declared: {known}); declare it under variables:")
            if root == "input" or "." not in reference:
                continue
            if spec.variables[root].type != "object":
                raise UsageError(f"{where}: {at}: {{{{ {reference} }}}} reads into {root!r}, a "
                                 f"{spec.variables[root].type}, not an object")


def _check_triggers(spec: AgentSpec, where: str) -> None:
    for name, trigger in spec.triggers.items():
        for variable in trigger.variables:
            if variable not in spec.variables:
                known = ", ".join(spec.variables) or "none are declared"
                raise UsageError(f"{where}: triggers.{name}.variables.{variable}: no such "
                                 f"variable (declared: {known})")
        properties = trigger.input.get("properties", {})
        texts = [trigger.turn or "", *trigger.variables.values()]
        for text in texts:
            for reference in references(text):
                parts = reference.split(".")
                if parts[0] == "input" and len(parts) > 1 and "properties" in trigger.input \
                        and parts[1] not in properties:
                    raise UsageError(
                        f"{where}: triggers.{name}: {{{{ {reference} }}}} reads an input field "
                        f"the input schema does not declare ({', '.join(properties) or 'none'})")
        for variable, template in trigger.variables.items():
            field_name = TriggerSpec.input_field(template)
            kinds = properties.get(field_name, {}).get("type") if field_name else None
            kinds = [kinds] if isinstance(kinds, str) else kinds or []
            wanted = spec.variables[variable].type
            if kinds and not any(k == wanted or (wanted, k) == ("number", "integer")
                                 for k in kinds):
                raise UsageError(
                    f"{where}: triggers.{name}.variables.{variable}: takes input.{field_name} "
                    f"as it comes, declared {' or '.join(kinds)}, but variable {variable!r} "
                    f"is declared {wanted}; render it as text inside other words, or declare "
                    "the same type")
        if trigger.kind != "message" and trigger.turn is None and not trigger.variables:
            raise UsageError(f"{where}: triggers.{name}: a {trigger.kind} trigger with neither "
                             "turn: nor variables: would do nothing; give it a turn: template")
        sample = _GENERATED_SAMPLE.get(trigger.kind)
        broken = [] if sample is None else problems(trigger.input, sample)
        if broken:
            raise UsageError(f"{where}: triggers.{name}.input: a {trigger.kind} trigger's input "
                             f"is generated as {json.dumps(sample)}, which this schema refuses "
                             f"({broken[0]}); leave input: out to use the generated one")


#: What schedule and approval triggers give as input (tether.sessions.triggers), checked
#: against a declared input schema when the file is loaded, not when the trigger fires.
_GENERATED_SAMPLE: dict[str, dict[str, Any]] = {
    "schedule": {"slot": 0, "scheduled_at": 0.0, "missed": 0},
    "approval": {"decision": "approved", "by": "supervisor", "role": None, "note": "",
                 "tool": "tool"},
}


def _check_tool_names(entries: Sequence[ToolEntry], where: str) -> None:
    seen: dict[str, str] = {}
    for at, _, settings in entries:
        if isinstance(settings, ClientToolSpec):
            if settings.name in seen:
                raise UsageError(f"{where}: {at}.name: {settings.name!r} is already the name of "
                                 f"{seen[settings.name]}; tool names are unique")
            seen[settings.name] = at


def _check_session_entries(spec: AgentSpec, entries: Sequence[ToolEntry], where: str) -> None:
    """A session tool may set only declared variables (a session of this file's agent refuses
    any other), and two ``session:`` entries would make two tools of each name."""
    sessions = [(at, s) for at, _, s in entries if isinstance(s, SessionToolSpec)]
    if len(sessions) > 1:
        raise UsageError(f"{where}: {sessions[1][0]}: a second session: entry; list every "
                         f"resource and variable in the first ({sessions[0][0]})")
    for at, settings in sessions:
        for index, name in enumerate(settings.variables):
            if name not in spec.variables:
                known = ", ".join(spec.variables) or "none are declared"
                raise UsageError(f"{where}: {at}.variables[{index}]: no variable {name!r} is "
                                 f"declared (declared: {known}); declare it under variables:")


def parse_variable(kind: str, text: str) -> Any:
    """A ``--var name=text`` value as its declared type: strings as written, other types as
    JSON (``--var vip=true``, ``--var limits='{"refund": 5000}'``)."""
    if kind == "string":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # the type check then says what was expected and found


# -- import paths --------------------------------------------------------------------------


def import_object(spec: str, base_dir: Path | None, *, what: str) -> Any:
    """The object ``spec`` names: ``package.module:attr`` or ``path/to/file.py:attr``
    (relative to ``base_dir``), resolved by :func:`tether.imports.import_object`. ``what``
    (the file and key) starts every error message, followed by the spec."""
    return imports.import_object(spec, base_dir, what=f"{what}: {spec.strip()!r}")

