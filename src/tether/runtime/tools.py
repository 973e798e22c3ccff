"""Typed tools with an effect class.

The effect class says what may be done when a call's outcome is unknown:

* ``read`` — no side effect: call again.
* ``idempotent`` — the provider deduplicates by idempotency key: re-issue with the same key.
* ``reconcilable`` — the write can be looked up afterwards: ``reconcile(key)`` first, re-issue
  only if it did not happen.
* ``unsafe`` — neither: never re-issue blindly; the run escalates to a human.

>>> from pydantic import BaseModel
>>> class RefundArgs(BaseModel):
...     order_id: str
...     amount_cents: int
>>> @tool(effect="idempotent", key=lambda a: f"refund:{a.order_id}")
... async def issue_refund(ctx: ToolContext, args: RefundArgs) -> dict:
...     "Refund an order."
...     return {"refund_id": "re_1"}
>>> issue_refund.name, issue_refund.effect.value
('issue_refund', 'idempotent')
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_type_hints, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from tether.errors import ToolArgsInvalid, UsageError
from tether.runtime.ambiguity import ErrorClassifier, ErrorOutcome, check_declared, outcome_of
from tether.runtime.provenance import Trust

if TYPE_CHECKING:
    from tether.models.base import ToolSpec

__all__ = ["DEFAULT_KEY_RETENTION_S", "Effect", "Tool", "ToolContext", "tool"]

#: Key retention assumed when a tool does not declare its provider's: 24 hours, what Stripe
#: documents, and the shortest window common providers give.
DEFAULT_KEY_RETENTION_S = 24 * 3600.0

A = TypeVar("A", bound=BaseModel)
R = TypeVar("R")


class Effect(StrEnum):
    """What a tool does to the world, and so how an unknown outcome is resolved."""

    READ = "read"
    IDEMPOTENT = "idempotent"
    RECONCILABLE = "reconcilable"
    UNSAFE = "unsafe"

    @property
    def writes(self) -> bool:
        return self is not Effect.READ


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a handler learns about the call it serves.

    ``idempotency_key`` is stable across attempts and resumes of the same call: pass it to the
    provider so a re-issued write is deduplicated.
    """

    run_id: str
    tool: str
    position: int
    idempotency_key: str
    attempt: int
    now: float


Handler = Callable[[ToolContext, Any], Awaitable[Any] | Any]
Reconciler = Callable[[ToolContext, str], Awaitable[Any] | Any]
Compensator = Callable[[ToolContext, Any, Any], Awaitable[Any] | Any]


@dataclass(eq=False)
class Tool(Generic[A, R]):
    """A typed operation an agent or workflow may call through :meth:`RunContext.call_tool`."""

    name: str
    description: str
    effect: Effect
    handler: Handler
    args_type: type[A]
    result_type: Any = Any
    key: Callable[[A], str] | None = None
    reconcile: Reconciler | None = None
    compensate: Compensator | None = None
    attempts: int = 3
    retry_delay_s: float | None = None
    #: A bound on each call, on the run's clock (and never past the run's deadline). It can
    #: only interrupt an ``async`` handler: a blocking (synchronous) handler runs to its end
    #: before anything else can, so make a slow one ``async`` (or ``asyncio.to_thread`` it).
    #: See :mod:`tether.runtime.timeouts`.
    timeout_s: float | None = None
    trust: Trust = Trust.SYSTEM
    tier: int | None = None
    #: How long the provider remembers an idempotency key (Stripe: 24 h). ``None`` means the
    #: default for the effect class (see :data:`DEFAULT_KEY_RETENTION_S`); ``math.inf`` a
    #: provider that never forgets.
    key_retention_s: float | None = None
    #: Exceptions (types, or dotted names such as ``"stripe.APIConnectionError"``) that mean
    #: "the request may have been applied", in addition to the defaults.
    ambiguous_on: tuple[type[BaseException] | str, ...] = ()
    #: Exceptions that mean "the request certainly did not take effect; try again later", in
    #: addition to the defaults.
    transient_on: tuple[type[BaseException] | str, ...] = ()
    #: Asked first about any exception the handler raises: ``"ambiguous"``, ``"transient"``,
    #: ``"permanent"``, or ``None`` for no opinion (see :mod:`tether.runtime.ambiguity`).
    classify_error: ErrorClassifier | None = None
    _result_adapter: TypeAdapter[Any] = field(init=False, repr=False)
    _args_schema: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UsageError(f"tool {self.name!r}: attempts must be at least 1")
        if self.key_retention_s is not None and not self.key_retention_s > 0:
            raise UsageError(f"tool {self.name!r}: key_retention_s must be positive "
                             f"(found {self.key_retention_s!r})")
        self.trust = Trust(self.trust)
        check_declared(f"tool {self.name!r}", (*self.ambiguous_on, *self.transient_on))
        self._result_adapter = _adapter(self.result_type)

    @property
    def consequence_tier(self) -> int:
        """How consequential a call is, for policy: the declared ``tier``, else 0 for a read
        and 1 for a write. Give money movement or deletion a higher tier."""
        if self.tier is not None:
            return self.tier
        return 1 if self.effect.writes else 0

    def spec(self) -> ToolSpec:
        """The tool as a model sees it (built once per name, description and argument model,
        so tools rebuilt per episode share it). Treat it as read-only."""
        return _spec(self.name, self.description, self.args_type)

    def args_schema(self) -> dict[str, Any]:
        """JSON Schema of the arguments, as shown to a model (built once; a copy each call)."""
        if self._args_schema is None:
            self._args_schema = _schema(self.args_type)
        return copy.deepcopy(self._args_schema)

    def result_schema(self) -> dict[str, Any]:
        """JSON Schema of the result."""
        return self._result_adapter.json_schema()

    @property
    def key_lifetime_s(self) -> float:
        """How long a re-issue under this tool's key is deduplicated by the provider: the
        declared ``key_retention_s``, else :data:`DEFAULT_KEY_RETENTION_S`."""
        if self.key_retention_s is not None:
            return self.key_retention_s
        return DEFAULT_KEY_RETENTION_S

    def outcome_of(self, exc: BaseException) -> ErrorOutcome:
        """What ``exc``, raised by this tool's handler, says about the request: ambiguous (it
        may have been applied), transient (it was not; retry) or permanent."""
        return outcome_of(exc, ambiguous_on=self.ambiguous_on, transient_on=self.transient_on,
                          classify_error=self.classify_error)

    def validate_args(self, args: A | dict[str, Any]) -> A:
        """Arguments as the tool's model, or :class:`ToolArgsInvalid` naming what is wrong."""
        if isinstance(args, self.args_type):
            return args
        try:
            data = args.model_dump() if isinstance(args, BaseModel) else args
            return self.args_type.model_validate(data)
        except ValidationError as exc:
            raise ToolArgsInvalid(f"arguments for tool {self.name!r} are invalid: {exc}") from exc

    def validate_result(self, value: Any) -> Any:
        """The handler's result as the declared type; raises ``ValidationError`` on drift."""
        return self._result_adapter.validate_python(value)

    def idempotency_key(self, args: A, default: str) -> str:
        """The business key declared by the tool, else ``default`` (run and position)."""
        if self.key is None:
            return default
        value = self.key(args)
        if not isinstance(value, str) or not value:
            raise UsageError(f"tool {self.name!r}: key function must return a non-empty str")
        return value

    def reconciler(self, fn: Reconciler) -> Reconciler:
        """Decorator: set ``reconcile(ctx, key) -> result | None``."""
        self.reconcile = fn
        return fn

    def compensator(self, fn: Compensator) -> Compensator:
        """Decorator: set ``compensate(ctx, args, result)``, the saga undo of this write."""
        self.compensate = fn
        return fn


@functools.lru_cache(maxsize=4096)
def _spec(name: str, description: str, args_type: type[BaseModel]) -> ToolSpec:
    # imported here: a worker that only recovers runs never shows a tool to a model, and the
    # model types' import (their pydantic models built at once) was a tenth of its start-up
    from tether.models.base import ToolSpec

    return ToolSpec(name=name, description=description, parameters=_schema(args_type))


@functools.lru_cache(maxsize=1024)
def _schema(args_type: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema, built once per model class (tools made per episode share it)."""
    return args_type.model_json_schema()


def _adapter(result_type: Any) -> TypeAdapter[Any]:
    try:
        return _cached_adapter(result_type)
    except TypeError:  # an unhashable annotation: build it every time
        return TypeAdapter(result_type)


@functools.lru_cache(maxsize=1024)
def _cached_adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)


@overload
def tool(fn: Handler, /) -> Tool[Any, Any]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect | str = Effect.READ,
    key: Callable[[Any], str] | None = None,
    reconcile: Reconciler | None = None,
    compensate: Compensator | None = None,
    attempts: int = 3,
    retry_delay_s: float | None = None,
    timeout_s: float | None = None,
    trust: Trust | str = Trust.SYSTEM,
    tier: int | None = None,
    key_retention_s: float | None = None,
    ambiguous_on: Sequence[type[BaseException] | str] = (),
    transient_on: Sequence[type[BaseException] | str] = (),
    classify_error: ErrorClassifier | None = None,
    args: type[BaseModel] | None = None,
    result: Any = None,
) -> Callable[[Handler], Tool[Any, Any]]: ...


def tool(
    fn: Handler | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect | str = Effect.READ,
    key: Callable[[Any], str] | None = None,
    reconcile: Reconciler | None = None,
    compensate: Compensator | None = None,
    attempts: int = 3,
    retry_delay_s: float | None = None,
    timeout_s: float | None = None,
    trust: Trust | str = Trust.SYSTEM,
    tier: int | None = None,
    key_retention_s: float | None = None,
    ambiguous_on: Sequence[type[BaseException] | str] = (),
    transient_on: Sequence[type[BaseException] | str] = (),
    classify_error: ErrorClassifier | None = None,
    args: type[BaseModel] | None = None,
    result: Any = None,
) -> Tool[Any, Any] | Callable[[Handler], Tool[Any, Any]]:
    """Declare a tool from a handler ``(ctx: ToolContext, args: SomeModel) -> Result``.

    The argument model comes from the second parameter's annotation, the result type from the
    return annotation, the description from the docstring, unless given as ``args``,
    ``result`` and ``description``. Pass ``args``/``result`` when the annotations cannot be
    resolved (a handler defined inside a function in a module using postponed annotations).
    """

    def build(handler: Handler) -> Tool[Any, Any]:
        params = list(inspect.signature(handler).parameters)
        if len(params) != 2:
            raise UsageError(f"tool handler {handler.__qualname__} must take (ctx, args)")
        try:
            hints = {} if args is not None and result is not None else get_type_hints(handler)
        except NameError as exc:
            if args is None or result is None:
                raise UsageError(
                    f"tool handler {handler.__qualname__}: its annotations cannot be resolved "
                    f"({exc}); define the models at module level or pass args= and result= to "
                    "tool()"
                ) from exc
            hints = {}
        args_type = args if args is not None else hints.get(params[1])
        if not (isinstance(args_type, type) and issubclass(args_type, BaseModel)):
            raise UsageError(
                f"tool handler {handler.__qualname__}: annotate its args parameter with a "
                "pydantic model (or pass args=)"
            )
        return Tool(
            name=name or handler.__name__,
            description=description or inspect.getdoc(handler) or "",
            effect=Effect(effect),
            handler=handler,
            args_type=args_type,
            result_type=result if result is not None else hints.get("return", Any),
            key=key,
            reconcile=reconcile,
            compensate=compensate,
            attempts=attempts,
            retry_delay_s=retry_delay_s,
            timeout_s=timeout_s,
            trust=Trust(trust),
            tier=tier,
            key_retention_s=key_retention_s,
            ambiguous_on=tuple(ambiguous_on),
            transient_on=tuple(transient_on),
            classify_error=classify_error,
        )

    return build(fn) if fn is not None else build
