"""Faults, injected at the boundary between the agent and a service, like a proxy.

A :class:`Fault` names what goes wrong (``kind``), where (``target``: ``service.operation``,
``*`` wildcards allowed), and when: on given call numbers of that target (``on_call``), with a
probability drawn from the fault's own random stream (``probability``), inside a window of
virtual time since the episode began (``window_s``), at most ``times`` times. The
:class:`FaultLayer` wraps every service call the agent's tools make:

======================  ===================================================================
``timeout_before``      the request never reaches the service; the caller sees a timeout
``timeout_after``       the service applies the request, then the caller sees a timeout
``error``               the service answers ``status`` (503 by default; 429 with
                        ``retry_after_s``) without applying anything
``latency``             the call takes ``latency_s`` of virtual time: fixed, or drawn
                        ``uniform`` from ``latency_range_s``, or ``exponential`` (mean
                        ``latency_s``, capped at ``latency_range_s[1]`` if given)
``stale_read``          the service's replica lags: reads return state ``stale_s`` old
``schema_drift``        the response's fields are renamed (``rename``; a dotted new name
                        such as ``details.amount`` moves the field into a nested object),
                        removed (``remove``) or retyped to strings (``retype``)
``wrong_content``       the response carries wrong but valid values (``replace``)
``duplicate_delivery``  the request reaches the service twice
``auth_expiry``         the caller's credentials have expired (``AuthExpired``)
``injection``           ``text`` is appended to the response's string fields (``fields``)
``crash``               the worker dies ``before`` or ``after`` the service applied the call
``out_of_order``        (webhooks only) an event is held back and delivered after the next one
======================  ===================================================================

Webhook deliveries of the payments service are the target ``payments.webhook``
(:data:`WEBHOOK_TARGET`); only :data:`WEBHOOK_KINDS` apply there: ``duplicate_delivery`` (the
same event delivered twice) and ``out_of_order``.

Model faults (rate limits, malformed output, context overflow, latency) target ``model`` and
are applied by :class:`~tether.sim.models.FaultyModel`.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tether.errors import AuthExpired, Crash, TransientError
from tether.sim.world import World

__all__ = ["FAULT_KINDS", "SERVICE_KINDS", "WEBHOOK_KINDS", "WEBHOOK_TARGET", "CallPlan", "Fault",
           "FaultLayer", "FaultPlan", "Firing"]

T = TypeVar("T")

FAULT_KINDS = ("timeout_before", "timeout_after", "error", "latency", "stale_read",
               "schema_drift", "wrong_content", "duplicate_delivery", "auth_expiry",
               "injection", "crash", "rate_limit", "malformed_output", "context_overflow",
               "out_of_order")
#: The kinds that apply to a service call (the rest apply to the model).
SERVICE_KINDS = ("timeout_before", "timeout_after", "error", "latency", "stale_read",
                 "schema_drift", "wrong_content", "duplicate_delivery", "auth_expiry",
                 "injection", "crash")

_NO_REPLICA_KINDS = tuple(k for k in SERVICE_KINDS if k != "stale_read")
#: The payments service's webhook deliveries, a fault target of their own.
WEBHOOK_TARGET = "payments.webhook"
#: The kinds that apply to a webhook delivery. ``out_of_order`` is not a service kind: a
#: service call has no "next one" to be overtaken by, so it could never apply there.
WEBHOOK_KINDS = ("duplicate_delivery", "out_of_order")


@dataclass(frozen=True)
class Fault:
    """One fault of a plan. Only the fields its ``kind`` uses matter."""

    kind: str
    target: str
    name: str = ""
    on_call: tuple[int, ...] = ()
    probability: float | None = None
    window_s: tuple[float, float] | None = None
    times: int | None = None
    status: int = 503
    retry_after_s: float | None = None
    latency_s: float = 0.0
    latency_range_s: tuple[float, float] | None = None
    latency_distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    stale_s: float = 90.0
    rename: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    retype: tuple[str, ...] = ()
    replace: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    fields: tuple[str, ...] = ()
    point: Literal["before", "after"] = "after"

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}@{self.target}"

@dataclass(frozen=True)
class Firing:
    """A fault that fired: which, on which call, when."""

    fault: str
    kind: str
    target: str
    call: int
    at: float

@dataclass(frozen=True)
class FaultPlan:
    """The faults of an episode."""

    faults: tuple[Fault, ...] = ()

    def without(self, index: int) -> FaultPlan:
        return FaultPlan(self.faults[:index] + self.faults[index + 1:])

    def for_target(self, target: str) -> list[tuple[int, Fault]]:
        return [(i, f) for i, f in enumerate(self.faults) if fnmatch.fnmatchcase(target, f.target)]

@dataclass(frozen=True)
class CallPlan:
    """The faults that fire on one call, and what they do to it, in order: latencies, then
    :meth:`refuse_before` (stale replica, expired credentials, injected status, a request
    never delivered, a crash before), the call (twice if ``duplicate``), :meth:`refuse_after`
    (a crash after, a response lost after the write), :meth:`transform` of the answer."""

    target: str
    faults: tuple[Fault, ...]
    latencies_s: tuple[float, ...] = ()

    def of(self, kind: str) -> Fault | None:
        """The fault of ``kind`` firing on this call, if any."""
        return next((f for f in self.faults if f.kind == kind), None)

    @property
    def duplicate(self) -> bool:
        return self.of("duplicate_delivery") is not None

    def refuse_before(self, on_stale: Callable[[float], None] | None = None) -> None:
        """Apply what happens before the service sees the call; raise if it never does."""
        stale = self.of("stale_read")
        if stale is not None and on_stale is not None:
            on_stale(stale.stale_s)
        if self.of("auth_expiry") is not None:
            raise AuthExpired(f"{self.target}: access token expired", dependency=self.target)
        error = self.of("error")
        if error is not None:
            raise TransientError(f"{self.target}: HTTP {error.status}",
                                 retry_after_s=error.retry_after_s)
        if self.of("timeout_before") is not None:
            raise TimeoutError(f"{self.target}: no response (the request was not delivered)")
        crash = self.of("crash")
        if crash is not None and crash.point == "before":
            raise Crash(f"worker crashed before {self.target}")

    def refuse_after(self) -> None:
        """Raise if the caller never learns the outcome of the call the service applied."""
        if self.of("crash") is not None:
            raise Crash(f"worker crashed after {self.target} was applied")
        if self.of("timeout_after") is not None:
            raise TimeoutError(f"{self.target}: timed out waiting for the response (the "
                               "request was delivered)")

    def transform(self, result: Any) -> Any:
        """The answer as the caller receives it (drifted, wrong or poisoned)."""
        for fault in self.faults:
            result = _transform(fault, result)
        return result


class FaultLayer:
    """Decides, per call, which faults fire, and applies them around the service call."""

    def __init__(self, world: World, plan: FaultPlan) -> None:
        self.world, self.plan = world, plan
        self.started_at = world.now()
        self.calls: dict[str, int] = {}
        self.fired_count: dict[int, int] = {}
        self.firings: list[Firing] = []

    def firing(self, target: str, kinds: Sequence[str] | None = None,
               *, count: bool = True) -> list[Fault]:
        """The faults firing on this call of ``target`` (counting the call)."""
        if count:
            self.calls[target] = self.calls.get(target, 0) + 1
        number = self.calls.get(target, 0)
        elapsed = self.world.now() - self.started_at
        fired = []
        for index, fault in self.plan.for_target(target):
            if kinds is not None and fault.kind not in kinds:
                continue
            if fault.times is not None and self.fired_count.get(index, 0) >= fault.times:
                continue
            if fault.on_call and number not in fault.on_call:
                continue
            if fault.window_s is not None and not (
                    fault.window_s[0] <= elapsed < fault.window_s[1]):
                continue
            if fault.probability is not None:
                # Named by the fault, not its place in the plan: removing another fault (as
                # shrinking does) must not change this one's draws.
                draw = self.world.rng(f"fault:{fault.label}:{self._ordinal(index)}").random()
                if draw >= fault.probability:
                    continue
            self.fired_count[index] = self.fired_count.get(index, 0) + 1
            self.firings.append(Firing(fault.label, fault.kind, target, number, self.world.now()))
            fired.append(fault)
        return fired

    def _ordinal(self, index: int) -> int:
        """How many earlier faults of the plan share this one's label."""
        label = self.plan.faults[index].label
        return sum(1 for f in self.plan.faults[:index] if f.label == label)

    def decide(self, target: str, *, replica: bool = False) -> CallPlan:
        """Which faults fire on this call of ``target`` (counting it), as a plan that a
        client (:meth:`call`) or a wire gateway carries out. Without a ``replica`` a stale
        read cannot apply, and is not claimed as fired."""
        faults = self.firing(target, SERVICE_KINDS if replica else _NO_REPLICA_KINDS)
        return CallPlan(target, tuple(faults),
                        tuple(self.latency_s(f) for f in faults if f.kind == "latency"))

    async def call(self, target: str, operation: Callable[[], T], *,
                   on_stale: Callable[[float], None] | None = None) -> T:
        """Run ``operation`` (the service call) under the faults that fire for it."""
        plan = self.decide(target, replica=on_stale is not None)
        for delay_s in plan.latencies_s:
            await self.world.clock.sleep(delay_s)
        plan.refuse_before(on_stale)
        result = await _settled(operation())
        if plan.duplicate:
            result = await _settled(operation())
        plan.refuse_after()
        return plan.transform(result)  # type: ignore[no-any-return]

    def latency_s(self, fault: Fault) -> float:
        """The delay ``fault`` adds to this call, drawn from its distribution."""
        stream = self.world.rng(f"latency:{fault.label}")
        if fault.latency_distribution == "exponential":
            draw = stream.expovariate(1.0 / fault.latency_s) if fault.latency_s > 0 else 0.0
            cap = fault.latency_range_s[1] if fault.latency_range_s is not None else draw
            return min(draw, cap)
        if fault.latency_range_s is not None:
            low, high = fault.latency_range_s
            return stream.uniform(low, high)
        return fault.latency_s

async def _settled(value: Any) -> Any:
    """An operation's answer; an ``async`` operation's is awaited."""
    return await value if inspect.isawaitable(value) else value


def _transform(fault: Fault, result: Any) -> Any:
    if fault.kind not in ("schema_drift", "wrong_content", "injection"):
        return result
    if isinstance(result, list):
        return [_transform(fault, item) for item in result]
    if not isinstance(result, dict):
        return result
    data = dict(result)
    if fault.kind == "schema_drift":
        for old, new in fault.rename.items():
            if old in data:
                value = data.pop(old)
                *parents, leaf = new.split(".")
                into = data
                for part in parents:
                    nested = into.get(part)
                    into[part] = into = dict(nested) if isinstance(nested, dict) else {}
                into[leaf] = value
        for name in fault.remove:
            data.pop(name, None)
        for name in fault.retype:
            if name in data:
                data[name] = str(data[name])
    elif fault.kind == "wrong_content":
        data.update(fault.replace)
    else:
        for name in fault.fields or tuple(k for k, v in data.items() if isinstance(v, str)):
            if isinstance(data.get(name), str):
                data[name] = f"{data[name]}\n{fault.text}"
    return data
