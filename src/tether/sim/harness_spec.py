"""Harness variants as data: named changes to the ``default`` harness, kept in YAML.

A harness file sits next to the scenarios and defines variants by name. Each variant starts
from what the agent itself configures and overrides only what it names; a key left out keeps
the agent's value.

.. code-block:: yaml

    harnesses:
      patient:
        description: more attempts and a longer backoff for flaky tools
        retry:
          retry_budget: 40                      # RetryPolicy.retry_budget
          transient_tool_error:                 # any FailureType: the fields of a retry Rule
            {action: retry_tool, max_attempts: 6, base_delay_s: 2.0, max_delay_s: 30.0}
          rate_limited: {max_attempts: 8}       # the agent's rule, with more attempts
      hasty:
        description: give up early
        retry: {retry_budget: 2, transient_tool_error: {max_attempts: 1, then: fail}}
        budgets: {max_steps: 10, max_duration_s: 60.0, max_cost_usd: null}  # null: no limit
        window: {max_tokens: 4000, overflow_ratio: 0.5, compressor: drop_oldest}
        model: {temperature: 0.0, max_output_tokens: 512, timeout_s: 20.0, extra: {seed: 1}}
        policy: policies/strict.yaml            # relative to this file; or an inline policy
      unguarded:
        policy: none                            # run without the agent's policy
      plain:
        base: naive                             # the naive loop under another name

``base`` says which loop runs the variant: ``default`` (tether's harness, the default) or
``naive`` (a hand-written loop with blind retries, no keys and no journal, which has none of the
settings above, so a naive variant may not override them). The names ``default`` and ``naive``
are the built-ins (:func:`builtin`) and cannot be redefined.

What each override maps to:

* ``retry`` — :class:`~tether.runtime.retry.RetryPolicy`: ``retry_budget``, and per
  :class:`~tether.runtime.failures.FailureType` the fields of its
  :class:`~tether.runtime.retry.Rule` (``action``, ``max_attempts``, ``base_delay_s``,
  ``max_delay_s``, ``multiplier``, ``jitter``, ``then``); fields not given keep the agent's rule.
* ``budgets`` — :class:`~tether.runtime.budgets.Budgets`, bounded as a scenario's are
  (``null`` lifts an optional limit).
* ``window`` — :class:`~tether.agent.window.ContextWindow`'s ``max_tokens`` (``null``: until
  the provider reports an overflow), ``overflow_ratio``, and ``compressor: drop_oldest`` (the one
  built-in compressor that needs no function).
* ``policy`` — replaces the agent's policy (a scenario's story policy is still added to it):
  a path relative to the harness file, an inline mapping in :mod:`tether.policy.spec`'s
  format, or ``none``.
* ``model`` — :class:`~tether.models.base.ModelSettings`: ``temperature``,
  ``max_output_tokens``, ``timeout_s``, ``tool_choice`` (``null``: the provider's default),
  ``journal_input`` and ``extra`` (merged over the agent's, key by key).

A file that does not fit raises :class:`~tether.errors.UsageError` naming the file, the key
path (``harnesses.patient.retry.rate_limited.max_attempts``), what was expected and what was
found, before anything runs; policies are loaded then too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tether.agent.agent import Agent
from tether.agent.window import drop_oldest
from tether.errors import UsageError
from tether.policy.policy import Policy
from tether.runtime.failures import FailureType
from tether.runtime.retry import Action, RetryPolicy
from tether.sim.scenario import MAX_COUNT, MAX_SECONDS, MAX_STEPS
from tether.specs import StrictNumbers, describe, explain, load_yaml, short_repr

__all__ = ["BUILTINS", "BudgetsOverride", "HarnessSpec", "ModelOverride", "RetryOverride",
           "RuleOverride", "WindowOverride", "apply_harness", "builtin", "harness_from_dict",
           "load_harness_file", "resolve_harness"]

#: The built-in harnesses, by name; a harness file may not redefine them.
BUILTINS = ("naive", "default")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class _Spec(StrictNumbers, BaseModel):
    """Frozen, closed, finite; and ``null`` only where it means something (``_NULLABLE``).

    Everything here is optional because a variant overrides only what it names, so ``null``
    cannot also mean "not given": where it has no meaning of its own it is refused rather than
    silently read as "keep the agent's value"."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    _NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _no_meaningless_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls._NULLABLE:
            # The message says what was found: explain() adds no second "found".
            hint = "; write none to run without a policy" if info.field_name == "policy" else ""
            raise PydanticCustomError("coerced", "expected a value, found nothing (null); leave "
                                      f"the key out to keep the agent's value{hint}")
        return value

    def given(self) -> dict[str, Any]:
        """The fields the variant set (``null`` included where it means something)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class RuleOverride(_Spec):
    """Fields of one :class:`~tether.runtime.retry.Rule`; those left out keep the agent's."""

    action: Action | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    base_delay_s: float | None = Field(default=None, ge=0.0, le=MAX_SECONDS)
    max_delay_s: float | None = Field(default=None, ge=0.0, le=MAX_SECONDS)
    # Below 1 the backoff would shrink with each attempt; above 100 the second wait already
    # exceeds any sensible cap.
    multiplier: float | None = Field(default=None, ge=1.0, le=100.0)
    jitter: float | None = Field(default=None, ge=0.0, le=1.0)
    then: Action | None = None


class RetryOverride(_Spec):
    """``retry_budget`` and a :class:`RuleOverride` per failure type (a test pins that the
    fields are exactly :class:`~tether.runtime.failures.FailureType`'s values)."""

    retry_budget: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    rate_limited: RuleOverride | None = None
    model_unavailable: RuleOverride | None = None
    model_rejected: RuleOverride | None = None
    context_overflow: RuleOverride | None = None
    malformed_output: RuleOverride | None = None
    invalid_tool_call: RuleOverride | None = None
    transient_tool_error: RuleOverride | None = None
    ambiguous_write: RuleOverride | None = None
    permanent_tool_error: RuleOverride | None = None
    tool_result_invalid: RuleOverride | None = None
    auth_expired: RuleOverride | None = None
    policy_denied: RuleOverride | None = None
    budget_exceeded: RuleOverride | None = None
    no_progress: RuleOverride | None = None
    crash: RuleOverride | None = None


class BudgetsOverride(_Spec):
    """Fields of :class:`~tether.runtime.budgets.Budgets`, bounded as a scenario's budgets are
    (a test pins that the fields match); ``null`` lifts an optional limit."""

    _NULLABLE = frozenset({"max_model_calls", "max_tool_calls", "max_tokens", "max_cost_usd",
                           "max_duration_s", "max_retries", "repeat_limit",
                           "failure_streak_limit"})

    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    max_model_calls: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_tool_calls: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    max_tokens: int | None = Field(default=None, ge=1, le=10**12)
    max_cost_usd: float | None = Field(default=None, ge=0.0, le=10**9)
    max_duration_s: float | None = Field(default=None, ge=0.0, le=MAX_SECONDS)
    max_retries: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    repeat_limit: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    failure_streak_limit: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    on_breach: Literal["stop", "escalate"] | None = None


class WindowOverride(_Spec):
    """The settings of :class:`~tether.agent.window.ContextWindow` that are data (its
    ``count`` and custom compressors are functions, set in the agent's code)."""

    _NULLABLE = frozenset({"max_tokens"})

    max_tokens: int | None = Field(default=None, ge=1, le=10**9)
    # 0 would compress to nothing and 1 would not shrink at all.
    overflow_ratio: float | None = Field(default=None, gt=0.0, lt=1.0)
    compressor: Literal["drop_oldest"] | None = None


class ModelOverride(_Spec):
    """Fields of :class:`~tether.models.base.ModelSettings`; ``null``: the provider's default.
    ``extra`` is merged over the agent's own, key by key."""

    _NULLABLE = frozenset({"temperature", "max_output_tokens", "timeout_s", "tool_choice"})

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(default=None, ge=1, le=10**7)
    timeout_s: float | None = Field(default=None, gt=0.0, le=MAX_SECONDS)
    #: Ask the model to stream its answer (the journaled call is still the whole response).
    stream: bool | None = None
    extra: dict[str, Any] | None = None
    #: ``auto``, ``required``, ``none`` or a tool's name (``ModelSettings.tool_choice``).
    tool_choice: str | None = Field(default=None, min_length=1, max_length=200,
                                    pattern=r"^\S+$")
    #: Journal each request's messages and tools (``ModelSettings.journal_input``).
    journal_input: bool | None = None


class HarnessSpec(_Spec):
    """A named harness: a loop (``base``) and the overrides it applies to the agent.

    >>> spec = HarnessSpec(name="patient", retry={"retry_budget": 40})
    >>> spec.base, spec.retry.retry_budget if spec.retry else None
    ('default', 40)
    """

    name: str = Field(pattern=_NAME.pattern, max_length=64)
    base: Literal["default", "naive"] = "default"
    description: str = Field(default="", max_length=2_000)
    retry: RetryOverride | None = None
    budgets: BudgetsOverride | None = None
    window: WindowOverride | None = None
    #: A path (made absolute when read from a file), an inline policy, or ``"none"``.
    policy: str | dict[str, Any] | None = Field(default=None)
    model: ModelOverride | None = None
    #: The file the variant was read from (empty for built-ins and variants made in code).
    source: str = ""

    @model_validator(mode="after")
    def _naive_has_no_settings(self) -> HarnessSpec:
        if self.base == "naive":
            named = [k for k in ("retry", "budgets", "window", "policy", "model")
                     if getattr(self, k) is not None]
            if named:
                raise PydanticCustomError("coerced",
                    f"base naive runs the agent's model and tools in a hand-written loop that "
                    f"has no retry rules, budgets, window, policy or model settings, so "
                    f"{', '.join(named)} would change nothing; remove "
                    f"{'it' if len(named) == 1 else 'them'} or use base: default")
        return self


#: The keys a variant in a file may set.
_KEYS = tuple(k for k in HarnessSpec.model_fields if k not in ("name", "source"))

_DEFAULT = HarnessSpec(name="default", description=(
    "tether's harness with the agent's own retry policy, budgets, window, policy and model "
    "settings"))
_NAIVE = HarnessSpec(name="naive", base="naive", description=(
    "what agent code does without tether: blind retries, no idempotency keys, no journal, "
    "no policy"))


def builtin(name: str) -> HarnessSpec:
    """The built-in harness ``naive`` or ``default``.

    >>> builtin("naive").base
    'naive'
    """
    if name == "default":
        return _DEFAULT
    if name == "naive":
        return _NAIVE
    raise UsageError(f"unknown built-in harness {short_repr(name)}; expected one of "
                     f"{', '.join(BUILTINS)}")


def load_harness_file(path: str | Path) -> dict[str, HarnessSpec]:
    """Read and validate a harness file (see the module docstring): its variants by name, in
    the file's order. Relative policy paths are resolved against the file's folder."""
    data = load_yaml(path, "harness file")
    return harness_from_dict(data, where=str(path), base_dir=Path(path).resolve().parent)


def harness_from_dict(data: Any, *, where: str = "<harnesses>",
                      base_dir: Path | None = None) -> dict[str, HarnessSpec]:
    """Validate parsed harness-file data (``{harnesses: {name: {...}}}``); relative policy
    paths are resolved against ``base_dir`` (the working directory when ``None``)."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping at the top with the key harnesses, "
                         f"found {describe(data)}")
    unknown = sorted(k for k in data if k != "harnesses")
    if unknown:
        raise UsageError(f"{where}: {unknown[0]}: unknown key; expected harnesses")
    if "harnesses" not in data:
        raise UsageError(f"{where}: harnesses: field required (the key is missing)")
    entries = data["harnesses"]
    if not isinstance(entries, dict) or not entries:
        found = "an empty mapping" if isinstance(entries, dict) else describe(entries)
        raise UsageError(f"{where}: harnesses: expected a mapping of harness names to their "
                         f"settings, with at least one, found {found}")
    specs: dict[str, HarnessSpec] = {}
    for name, entry in entries.items():
        specs[name] = _entry(name, entry, where, base_dir)
    return specs


def _entry(name: str, entry: Any, where: str, base_dir: Path | None) -> HarnessSpec:
    at = f"harnesses.{name}"
    if name in BUILTINS:
        raise UsageError(f"{where}: {at}: {name} is a built-in harness and cannot be "
                         f"redefined; choose another name (base: {name} starts from it)")
    if not _NAME.fullmatch(name):
        raise UsageError(f"{where}: harnesses: {short_repr(name)} is not a harness name; "
                         "expected letters, digits, '_', '-' and '.' (at most 64, starting "
                         "with a letter or digit)")
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: {at}: expected a mapping of settings, found "
                         f"{describe(entry)} {short_repr(entry)}")
    unknown = [key for key in entry if key not in _KEYS]
    if unknown:
        # Checked here, not by the schema: its name and source are set by the loader, and an
        # error listing them as keys to write would mislead.
        why = " (a variant's name is its key)" if unknown[0] == "name" else ""
        raise UsageError(f"{where}: {at}.{unknown[0]}: unknown key{why}; expected one of "
                         f"{', '.join(_KEYS)}")
    try:
        spec = HarnessSpec.model_validate({**entry, "name": name, "source": where})
    except ValidationError as exc:
        raise explain(where, at, exc, HarnessSpec) from exc
    policy = spec.policy
    if isinstance(policy, str) and policy != "none":
        path = Path(policy).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        spec = spec.model_copy(update={"policy": str(path.resolve())})
    _load_policy(spec, f"{where}: {at}.policy")  # a policy that does not load fails here
    return spec


def resolve_harness(name: str, files: Sequence[str | Path] = ()) -> HarnessSpec:
    """The harness called ``name``: a built-in, or a variant defined in one of ``files``.
    A name defined in two files, or in none, is a :class:`UsageError` listing what is known."""
    if name in BUILTINS:
        return builtin(name)
    found: dict[str, HarnessSpec] = {}
    known: list[str] = list(BUILTINS)
    for file in files:
        variants = load_harness_file(file)
        if name in variants:
            if name in found:
                raise UsageError(f"harness {name} is defined in both {found[name].source} and "
                                 f"{file}; rename one of them")
            found[name] = variants[name]
        known += [n for n in variants if n not in known]
    if name in found:
        return found[name]
    hint = "" if files else " (variants are defined in a harness file: --harnesses FILE)"
    raise UsageError(f"unknown harness {short_repr(name)}; known harnesses: "
                     f"{', '.join(known)}{hint}")


def apply_harness(agent: Agent, spec: HarnessSpec) -> Agent:
    """A copy of ``agent`` with ``spec``'s overrides on top of the agent's own settings (a
    field the variant does not set keeps the agent's value). ``spec.base`` says which loop
    runs it; that is the caller's to read.

    >>> from tether.models.scripted import ScriptedModel, reply
    >>> agent = Agent(name="a", model=ScriptedModel(lambda request: reply("hi")))
    >>> apply_harness(agent, HarnessSpec(name="short", budgets={"max_steps": 5})).budgets.max_steps
    5
    """
    changes: dict[str, Any] = {}
    if spec.retry is not None:
        changes["retry"] = _retry(agent.retry, spec.retry)
        attempts = _tool_attempts(spec.retry)
        if attempts is not None:
            # The tool layer retries a transient failure (and re-issues an ambiguous write)
            # up to each tool's own ``attempts``: the variant's bound must reach it there.
            changes["tools"] = [replace(t, attempts=attempts) for t in agent.tools]
    if spec.budgets is not None:
        changes["budgets"] = replace(agent.budgets, **spec.budgets.given())
    if spec.window is not None:
        window = spec.window.given()
        if "compressor" in window:
            window["compressor"] = drop_oldest
        changes["window"] = replace(agent.window, **window)
    if spec.model is not None:
        settings = spec.model.given()
        if "extra" in settings:
            settings["extra"] = {**agent.settings.extra, **settings["extra"]}
        changes["settings"] = agent.settings.model_copy(update=settings)
    if spec.policy is not None:
        changes["policy"] = _load_policy(spec, f"harness {spec.name}: policy")
    return replace(agent, **changes) if changes else agent


def _tool_attempts(override: RetryOverride) -> int | None:
    """The attempts a variant gives each tool call (``transient_tool_error.max_attempts``)."""
    rule = override.given().get(FailureType.TRANSIENT_TOOL_ERROR.value)
    if not isinstance(rule, RuleOverride):
        return None
    attempts = rule.given().get("max_attempts")
    return attempts if isinstance(attempts, int) else None


def _retry(policy: RetryPolicy, override: RetryOverride) -> RetryPolicy:
    given = override.given()
    budget = given.pop("retry_budget", None)
    for failure, rule in given.items():
        assert isinstance(rule, RuleOverride)
        fields = rule.given()
        kind = FailureType(failure)
        policy = policy.with_rule(kind, replace(policy.rule(kind), **fields))
    return policy if budget is None else replace(policy, retry_budget=budget)


def _load_policy(spec: HarnessSpec, where: str) -> Policy | None:
    """The policy ``spec`` sets (``None`` for ``none`` or when it sets none)."""
    from tether.policy.policy import load_policy, policy_from_dict

    given = spec.policy
    if given is None or given == "none":
        return None
    if isinstance(given, Mapping):
        return policy_from_dict(dict(given), where=where)
    path = Path(given).expanduser()
    if not path.is_file():
        raise UsageError(f"{where}: no policy file {path}; a relative path is relative to the "
                         "harness file's folder, or write none to run without a policy")
    return load_policy(path)
