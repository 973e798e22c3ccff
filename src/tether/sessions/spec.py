"""Declarative agents: the schema of an agent YAML file, and its instruction templates.

.. code-block:: yaml

    name: support-chat
    description: Answers billing questions; refunds need a supervisor.
    instructions: |
      You help {{ customer_name }} (plan: {{ plan }}). Be brief.
    variables:                         # name -> type and default (no default: required)
      customer_name: {type: string}
      plan: {type: string, default: basic}
      vip: boolean                     # shorthand for {type: boolean}
    model:
      provider: scripted               # or openai | anthropic (name: the provider's model id)
      script: support_chat.model:script
      settings: {temperature: 0.0, max_output_tokens: 800}
    tools:
      - support_chat.tools:lookup_order            # a tether.Tool, a list of them, or a
      - server: support_chat.tools:issue_refund    #   function of the environment making them
      - client:                                    # run by the caller, not by the server
          name: confirm_in_app
          description: Ask the customer to confirm in the app.
          args: {type: object, properties: {question: {type: string}}, required: [question]}
          result: {type: object, properties: {confirmed: {type: boolean}}}
          effect: read
          timeout_s: 600
      - mcp: {url: "http://127.0.0.1:8765/mcp", effects: {create_ticket: idempotent}}
      - session: {resources: [notes], variables: [plan]}   # read/update/set in a turn
    triggers:
      user-message:
        input: {type: object, properties: {text: {type: string}}, required: [text]}
        turn: "{{ input.text }}"
      plan-changed:
        input: {type: object, properties: {plan: {type: string}}, required: [plan]}
        turn: "The customer's plan is now {{ input.plan }}."
        variables: {plan: "{{ input.plan }}"}
      billing-event:                   # a signed HTTP delivery (tether.sessions.triggers)
        kind: webhook
        webhook: {secret_env: BILLING_WEBHOOK_SECRET, tolerance_s: 300}
        input: {type: object, properties: {summary: {type: string}}, required: [summary]}
        turn: "(Billing: {{ input.summary }})"
      check-in: {kind: schedule, schedule: {every_s: 86400, catch_up: latest},
                 turn: "(Daily check-in; {{ input.missed }} missed.)"}
      decided: {kind: approval, approval: {decisions: [approved, denied]},
                turn: "(The supervisor {{ input.decision }} the {{ input.tool }} request.)"}
    budgets: {max_steps: 20, max_cost_usd: 0.5}
    retry:
      retry_budget: 10
      rules: {rate_limited: {action: backoff, max_attempts: 4}}
    policy: policies/support.yaml       # or the policy itself, inline (tether.policy.spec)
    window: {max_tokens: 8000, compress: drop_oldest}
    memory: {namespace: support, subjects: ["customer:{{ customer_name }}"]}
    environment: prod
    parallel_tool_calls: true

Every key but ``name`` and ``model`` is optional. A file that does not fit raises
:class:`~tether.errors.UsageError` naming the file, the key path (``tools[2].client.effect``),
what was expected and what was found, before anything is built; numbers are numbers (``true`` or
``"20"`` where a count is expected is refused, never read as 1 or 20).

**Templates.** ``{{ name }}`` in ``instructions`` (and in triggers and memory subjects) is
replaced by the variable's value; ``{{ input.field }}`` in a trigger reads its input. There is
no logic, no filters and no escaping: a template is text and variable references, rendered by
:func:`render` (no template engine is imported, and nothing in a value is ever evaluated). A
reference to a variable the file does not declare is refused when the file is loaded; a required
variable without a value is refused when the agent is built. Strings are inserted as they are;
numbers, booleans, lists and mappings as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tether.errors import UsageError
from tether.runtime.failures import FailureType
from tether.runtime.provenance import Trust
from tether.runtime.retry import Action
from tether.specs import StrictNumbers, describe, short_repr

__all__ = [
    "MAX_SECONDS",
    "AgentSpec",
    "ApprovalSpec",
    "ClientToolSpec",
    "McpSpec",
    "MemorySpec",
    "ModelSpec",
    "ScheduleSpec",
    "SessionToolSpec",
    "TriggerSpec",
    "VariableSpec",
    "WebhookSpec",
    "check_json_schema",
    "check_value",
    "references",
    "render",
]

#: The longest time an agent file may name (timeouts, durations): a year.
MAX_SECONDS = 366 * 86_400.0
#: The largest count an agent file may set (steps, calls, tokens, attempts).
MAX_COUNT = 10**9

VariableType = Literal["string", "integer", "number", "boolean", "object", "array"]
EffectName = Literal["read", "idempotent", "reconcilable", "unsafe"]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
_TOOL_NAME = r"[A-Za-z_][A-Za-z0-9_-]{0,63}"   # what OpenAI and Anthropic accept
_REFERENCE = re.compile(r"\{\{\s*(" + _IDENT + r"(?:\." + _IDENT + r")*)\s*\}\}")


class _Spec(StrictNumbers, BaseModel):
    # inf and nan are never a meaningful limit or timeout: refused for every float field.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _refuse(message: str) -> PydanticCustomError:
    """A validation error whose message already says what was found (explain() adds none)."""
    return PydanticCustomError("coerced", message)


# -- templates ------------------------------------------------------------------------------


def references(template: str) -> list[str]:
    """The variable paths ``template`` refers to, in order (``["plan", "input.text"]``), or a
    UsageError (without a location: the caller adds it) when a ``{{`` opens no reference."""
    found: list[str] = []
    position = 0
    while (start := template.find("{{", position)) >= 0:
        match = _REFERENCE.match(template, start)
        if match is None:
            shown = short_repr(template[start:start + 30])
            raise UsageError(f"{{{{ at character {start} opens no variable reference "
                             f"(found {shown}); write {{{{ name }}}} with a declared "
                             "variable's name")
        found.append(match.group(1))
        position = match.end()
    return found


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with every ``{{ path }}`` replaced by its value in ``values`` (a dotted path
    reads into mappings). A reference with no value is a UsageError naming it.

    >>> render("Hello {{ who }}, plan {{ plan.name }}.", {"who": "Ada", "plan": {"name": "pro"}})
    'Hello Ada, plan pro.'
    """
    references(template)  # refuses a malformed reference before anything is rendered

    def value_of(match: re.Match[str]) -> str:
        path = match.group(1)
        current: Any = values
        for part in path.split("."):
            if not isinstance(current, Mapping) or part not in current:
                raise UsageError(f"no value for {{{{ {path} }}}}; give it (--var "
                                 f"{path.split('.')[0]}=...) or declare a default")
            current = current[part]
        if isinstance(current, str):
            return current
        return json.dumps(current, sort_keys=True, ensure_ascii=False)

    return _REFERENCE.sub(value_of, template)


# -- JSON values and schemas ---------------------------------------------------------------

_JSON_TYPES = {"string", "integer", "number", "boolean", "object", "array", "null"}
_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def check_value(kind: str, value: Any) -> str | None:
    """What is wrong with ``value`` as a variable of type ``kind``, or None when it fits."""
    if _CHECKS[kind](value):
        return None
    return f"expected {'an' if kind[0] in 'aeiou' else 'a'} {kind}, found {describe(value)} " \
        f"{short_repr(value)}"


def check_json_schema(schema: Any, at: str = "") -> str | None:
    """What is wrong with ``schema`` as the JSON Schema of a tool's arguments or result (the
    parts tether and the providers read: ``type``, ``properties``, ``items``, ``required``,
    ``enum``), with the key path under ``at``; None when it is usable. Other keywords pass
    through to the model as written."""
    where = at or "(top)"
    if not isinstance(schema, dict):
        return f"{where}: expected a JSON Schema (a mapping), found {describe(schema)}"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if kind is not None and (not kinds or not all(isinstance(k, str) and k in _JSON_TYPES
                                                  for k in kinds)):
        return f"{where}.type: expected one of {', '.join(sorted(_JSON_TYPES))} (or a list " \
            f"of them), found {short_repr(kind)}"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}.properties: expected a mapping of names to schemas, found " \
            f"{describe(properties)}"
    for name, sub in properties.items():
        problem = check_json_schema(sub, f"{at}.properties.{name}" if at else
                                    f"properties.{name}")
        if problem is not None:
            return problem
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return f"{where}.required: expected a list of property names, found " \
            f"{short_repr(required)}"
    missing = [r for r in required if r not in properties]
    if missing and "properties" in schema:
        return f"{where}.required: {short_repr(missing[0])} is not one of the properties " \
            f"({', '.join(properties) or 'none'})"
    if "items" in schema:
        problem = check_json_schema(schema["items"], f"{at}.items" if at else "items")
        if problem is not None:
            return problem
    enum = schema.get("enum")
    if enum is not None and (not isinstance(enum, list) or not enum):
        return f"{where}.enum: expected a non-empty list of values, found {short_repr(enum)}"
    if not at:
        return _meta_problem(schema)
    return None


def _meta_problem(schema: dict[str, Any]) -> str | None:
    """The schema checked against its JSON Schema dialect, when jsonschema is installed (it
    is what validates arguments and results; without it, client tools cannot be built)."""
    try:
        from jsonschema import validators  # type: ignore[import-untyped]
        from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top)"
        return f"{where}: {exc.message}"
    return None


# -- the file's parts ----------------------------------------------------------------------


class VariableSpec(_Spec):
    """A session variable: its type, and a default (none: it must be given)."""

    type: VariableType = "string"
    default: Any = None
    description: str = Field(default="", max_length=2_000)

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set

    @model_validator(mode="after")
    def _default_fits(self) -> VariableSpec:
        if not self.required:
            problem = check_value(self.type, self.default)
            if problem is not None:
                raise _refuse(f"default: {problem}")
        return self


class SettingsSpec(_Spec):
    """The model settings (:class:`tether.models.ModelSettings`); ``stream: true`` streams the
    model's text as it is written (deltas to the runtime's delta listeners, e.g. ``tether
    serve``'s ``model.delta`` events)."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    timeout_s: float | None = Field(default=None, gt=0.0, le=MAX_SECONDS)
    extra: dict[str, Any] = {}
    stream: bool = False
    #: ``auto``, ``required``, ``none`` or a tool's name (see ``ModelSettings.tool_choice``).
    tool_choice: str | None = Field(default=None, min_length=1, max_length=200,
                                    pattern=r"^\S+$")
    #: Journal each request's messages and tools, so traces exported from the journal carry
    #: them (see ``ModelSettings.journal_input``: prompts land in the store).
    journal_input: bool = False


class ModelSpec(_Spec):
    """Which model: a scripted one by import path, or a provider's by name."""

    provider: Literal["scripted", "openai", "anthropic"]
    name: str | None = Field(default=None, min_length=1, max_length=200)
    script: str | None = Field(default=None, min_length=3, max_length=500)
    base_url: str | None = Field(default=None, pattern=r"^https?://\S+$", max_length=2_000)
    settings: SettingsSpec = SettingsSpec()

    @model_validator(mode="after")
    def _fits_provider(self) -> ModelSpec:
        if self.provider == "scripted":
            if self.script is None:
                raise _refuse("a scripted model needs script: package.module:function (a "
                                 "function of the model request returning the response)")
            if self.base_url is not None:
                raise _refuse("a scripted model has no base_url")
        else:
            if self.script is not None:
                raise _refuse(f"script: is for provider: scripted, not {self.provider}")
            if self.name is None:
                raise _refuse(f"provider {self.provider} needs name: the provider's model "
                                 "id (gpt-4.1, claude-sonnet-4-5 ...)")
        return self


class ClientToolSpec(_Spec):
    """A tool the caller runs: its name, schemas and effect class; no server handler."""

    name: str = Field(pattern=f"^{_TOOL_NAME}$")
    description: str = Field(default="", max_length=10_000)
    args: dict[str, Any] = {"type": "object", "properties": {}}
    result: dict[str, Any] = {}
    effect: EffectName
    timeout_s: float | None = Field(default=None, gt=0.0, le=MAX_SECONDS)

    @field_validator("args", "result")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = check_json_schema(value)
        if problem is not None:
            raise _refuse(f"not a usable JSON Schema: {problem}")
        return value

    @field_validator("args")
    @classmethod
    def _object(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise _refuse("a tool's arguments are one JSON object: type must be object "
                             f"(found {short_repr(value.get('type'))})")
        return value


class SessionToolSpec(_Spec):
    """The session tools (:func:`tether.sessions.tools.session_tools`): which of the session's
    resources the turn may read (and, of those, update: ``writable_resources``, default all)
    and which variables it may set."""

    resources: list[str] = Field(default=[], max_length=1_000)
    variables: list[str] = Field(default=[], max_length=1_000)
    writable_resources: list[str] | None = Field(default=None, max_length=1_000)

    @field_validator("resources", "variables", "writable_resources")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not re.fullmatch(_NAME, name):
                raise _refuse(f"expected names of letters, digits, _, - or . (notes, "
                              f"order.summary ...), found {short_repr(name)}")
        if value is not None and len(set(value)) != len(value):
            raise _refuse(f"a name is listed twice in {short_repr(value)}")
        return value

    @model_validator(mode="after")
    def _sound(self) -> SessionToolSpec:
        if not self.resources and not self.variables:
            raise _refuse("a session tool entry names no resources and no variables, so it "
                          "makes no tool; give resources: [...] or variables: [...]")
        stray = [n for n in self.writable_resources or () if n not in self.resources]
        if stray:
            raise _refuse(f"writable_resources: {short_repr(stray[0])} is not one of resources "
                          f"({', '.join(self.resources) or 'none'}); list it there too")
        return self


class McpSpec(_Spec):
    """The tools of an MCP server (:func:`tether.agent.mcp.mcp_toolset`)."""

    url: str = Field(pattern=r"^https?://\S+$", max_length=2_000)
    effects: dict[str, EffectName] = {}
    only: list[str] | None = None
    key_arg: str | dict[str, str] | None = None
    trust: Trust | dict[str, Trust] = Trust.SYSTEM
    attempts: int = Field(default=3, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0.0, le=MAX_SECONDS)


class WebhookSpec(_Spec):
    """How a webhook delivery is authenticated: an HMAC-SHA256 signature of the raw body under
    a secret read from the environment variable ``secret_env`` (never from the file), carried
    in ``header`` as ``t=<unix seconds>,v1=<hex digest of "<t>.<event id>.<len>:<target>." +
    body>`` (target: ``<session>/<trigger>``, see ``tether.sessions.triggers.sign_webhook``); a
    timestamp more than ``tolerance_s`` away from the runtime's clock is refused (a replay).
    ``id_header`` carries the sender's event id (signed with the body): a delivery repeated
    with the same id starts one turn."""

    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    header: str = Field(default="X-Tether-Signature", pattern=r"^[A-Za-z0-9-]{1,100}$")
    id_header: str = Field(default="X-Tether-Event-Id", pattern=r"^[A-Za-z0-9-]{1,100}$")
    tolerance_s: float = Field(default=300.0, gt=0.0, le=MAX_SECONDS)


class ScheduleSpec(_Spec):
    """Slots every ``every_s`` seconds of the runtime's clock, the first at ``start_at_s``
    (clock time; default: one period after the session was created). ``catch_up`` says what
    happens to slots that elapsed unfired: ``latest`` fires only the latest and reports the
    others as skipped; ``all`` fires each, oldest first."""

    every_s: float = Field(gt=0.0, le=MAX_SECONDS)
    start_at_s: float | None = Field(default=None, ge=0.0, le=10**12)
    catch_up: Literal["latest", "all"] = "latest"


class ApprovalSpec(_Spec):
    """Which decisions on an approval requested by one of the session's turns fire it."""

    decisions: list[Literal["approved", "denied"]] = Field(
        default=["approved", "denied"], min_length=1, max_length=2)


TriggerKind = Literal["message", "webhook", "schedule", "approval"]
_ONE_INPUT = re.compile(r"\s*\{\{\s*input\.(" + _IDENT + r")\s*\}\}\s*")

#: The input a trigger kind generates itself, as its default input schema (so templates may
#: read ``input.slot`` or ``input.decision`` without declaring them).
GENERATED_INPUT: dict[str, dict[str, Any]] = {
    "schedule": {"type": "object",
                 "properties": {"slot": {"type": "integer"}, "scheduled_at": {"type": "number"},
                                "missed": {"type": "integer"}},
                 "required": ["slot", "scheduled_at", "missed"]},
    "approval": {"type": "object",
                 "properties": {"decision": {"type": "string", "enum": ["approved", "denied"]},
                                "by": {"type": "string"},
                                "role": {"type": ["string", "null"]},
                                "note": {"type": "string"}, "tool": {"type": "string"}},
                 "required": ["decision", "by", "role", "note", "tool"]},
}


class TriggerSpec(_Spec):
    """A named entry point: its kind, input schema, and how the input becomes the user turn
    and variables (templates over ``input.*`` and the session's variables).

    ``kind`` is ``message`` (the default: the caller gives the input), ``webhook`` (a signed
    HTTP delivery; settings under ``webhook:``), ``schedule`` (slots of the clock; settings
    under ``schedule:``) or ``approval`` (a decision on one of the session's approvals;
    settings under ``approval:``, optional)."""

    description: str = Field(default="", max_length=2_000)
    kind: TriggerKind = "message"
    input: dict[str, Any] = {"type": "object", "properties": {}}
    turn: str | None = Field(default=None, max_length=100_000)
    variables: dict[str, str] = {}
    webhook: WebhookSpec | None = None
    schedule: ScheduleSpec | None = None
    approval: ApprovalSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _generated_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and "input" not in data and \
                data.get("kind") in GENERATED_INPUT:
            return {**data, "input": GENERATED_INPUT[data["kind"]]}
        return data

    @field_validator("input")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = check_json_schema(value)
        if problem is not None:
            raise _refuse(f"not a usable JSON Schema: {problem}")
        return value

    @staticmethod
    def input_field(template: str) -> str | None:
        """The input field a variable's template is exactly (``"{{ input.seats }}"`` ->
        ``"seats"``): such a variable takes the field's JSON value as it came, not as text."""
        whole = _ONE_INPUT.fullmatch(template)
        return None if whole is None else whole.group(1)

    @model_validator(mode="after")
    def _settings_fit_kind(self) -> TriggerSpec:
        for other in ("webhook", "schedule", "approval"):
            if other != self.kind and getattr(self, other) is not None:
                raise _refuse(f"{other}: settings are for kind: {other}, and this trigger is "
                              f"kind: {self.kind}; set kind: {other} or remove {other}:")
        if self.kind == "webhook" and self.webhook is None:
            raise _refuse("kind: webhook needs webhook: {secret_env: NAME_OF_ENV_VARIABLE} "
                          "(the variable holding the HMAC secret)")
        if self.kind == "schedule" and self.schedule is None:
            raise _refuse("kind: schedule needs schedule: {every_s: seconds}")
        return self


class BudgetsSpec(_Spec):
    """:class:`tether.runtime.budgets.Budgets`, bounded."""

    max_steps: int | None = Field(default=50, ge=1, le=MAX_COUNT)
    max_model_calls: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_tool_calls: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    max_tokens: int | None = Field(default=None, ge=1, le=10**15)
    max_cost_usd: float | None = Field(default=None, ge=0.0, le=10**9)
    max_duration_s: float | None = Field(default=None, gt=0.0, le=MAX_SECONDS)
    max_retries: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    repeat_limit: int | None = Field(default=3, ge=1, le=MAX_COUNT)
    failure_streak_limit: int | None = Field(default=5, ge=1, le=MAX_COUNT)
    on_breach: Literal["stop", "escalate"] = "stop"


class RuleSpec(_Spec):
    """:class:`tether.runtime.retry.Rule`, bounded."""

    action: Action
    max_attempts: int = Field(default=3, ge=1, le=1_000_000)
    base_delay_s: float = Field(default=1.0, ge=0.0, le=MAX_SECONDS)
    max_delay_s: float = Field(default=60.0, ge=0.0, le=MAX_SECONDS)
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0)
    jitter: float = Field(default=0.5, ge=0.0, le=1.0)
    then: Action = Action.FAIL


class RetrySpec(_Spec):
    """A retry policy: a preset (``default`` or ``never``) with rules and a budget over it."""

    preset: Literal["default", "never"] = "default"
    retry_budget: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    rules: dict[FailureType, RuleSpec] = {}


class WindowSpec(_Spec):
    """The context window: a token bound and how to compress past it."""

    max_tokens: int | None = Field(default=None, ge=1, le=10**9)
    compress: str = Field(default="drop_oldest", min_length=1, max_length=500)
    overflow_ratio: float = Field(default=0.5, gt=0.0, lt=1.0)

    @field_validator("compress")
    @classmethod
    def _compressor(cls, value: str) -> str:
        if value != "drop_oldest" and ":" not in value:
            raise _refuse("expected drop_oldest or package.module:function (a compressor "
                             f"of tether.agent.window), found {short_repr(value)}")
        return value


class MemorySpec(_Spec):
    """Durable memory recalled into a turn: the namespace and which subjects (templates)."""

    namespace: str = Field(default="default", pattern=f"^{_NAME}$")
    subjects: list[str] = []
    min_trust: Trust | None = None
    max_facts: int = Field(default=50, ge=0, le=10_000)


class AgentSpec(_Spec):
    """An agent file, validated (see the module docstring)."""

    name: str = Field(pattern=f"^{_NAME}$")
    description: str = Field(default="", max_length=10_000)
    instructions: str = Field(default="", max_length=1_000_000)
    variables: dict[str, VariableSpec] = {}
    model: ModelSpec
    tools: list[Any] = []
    triggers: dict[str, TriggerSpec] = {}
    budgets: BudgetsSpec = BudgetsSpec()
    retry: RetrySpec = RetrySpec()
    policy: str | dict[str, Any] | None = None
    window: WindowSpec = WindowSpec()
    memory: MemorySpec | None = None
    environment: str = Field(default="prod", pattern=f"^{_NAME}$")
    parallel_tool_calls: bool = True

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_kind(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | dict):
            raise _refuse("expected a policy file's path or the policy itself (a mapping), "
                          f"found {describe(value)} {short_repr(value)}")
        return value

    @field_validator("variables", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # ``plan: string`` is ``plan: {type: string}``.
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("variables")
    @classmethod
    def _variable_names(cls, value: dict[str, VariableSpec]) -> dict[str, VariableSpec]:
        for name in value:
            if not re.fullmatch(_IDENT, name) or name == "input":
                raise _refuse(f"variable name {short_repr(name)}: expected an identifier "
                                 "(letters, digits, _; not 'input', which triggers use)")
        return value

    @field_validator("triggers")
    @classmethod
    def _trigger_names(cls, value: dict[str, TriggerSpec]) -> dict[str, TriggerSpec]:
        for name in value:
            if not re.fullmatch(_NAME, name):
                raise _refuse(f"trigger name {short_repr(name)}: expected letters, digits, "
                                 "_, - or . (user-message, webhook.refund ...)")
        return value

    def templates(self) -> Iterator[tuple[str, str, frozenset[str]]]:
        """Every template in the file: (key path, text, the roots it may refer to)."""
        declared = frozenset(self.variables)
        yield "instructions", self.instructions, declared
        for name, trigger in self.triggers.items():
            if trigger.turn is not None:
                yield f"triggers.{name}.turn", trigger.turn, declared | {"input"}
            for variable, text in trigger.variables.items():
                yield f"triggers.{name}.variables.{variable}", text, declared | {"input"}
        if self.memory is not None:
            for index, text in enumerate(self.memory.subjects):
                yield f"memory.subjects[{index}]", text, declared
