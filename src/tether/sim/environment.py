"""The simulated environment an agent factory receives: the world, reached as in production.

A scenario names its agent as a *factory*, ``package.module:function`` (see
:mod:`tether.sim.agent_ref`), a function of one argument — the :class:`Environment` — that
returns the :class:`tether.Agent` to test. The factory builds the same agent it builds for
production (same tools, prompts, model, policy, memory); the only difference is where its tools'
clients point::

    def agent(env: tether.sim.Environment) -> tether.Agent:
        billing = env.client("payments")

        @tether.tool(effect="idempotent", key=lambda a: f"refund:{a.order}", result=Refund)
        async def issue_refund(ctx, args: RefundArgs) -> Refund:
            return await billing.create_refund(args.order, amount=args.cents,
                                               idempotency_key=ctx.idempotency_key or None)

        return tether.Agent(name="desk", model=my_model(), tools=[issue_refund], ...)

``env.client(service)`` is a client bound to one of the world's simulated services
(:data:`~tether.sim.scenario.SERVICES`). Its operations are ``async`` and answer what a JSON API
answers — dicts and lists, not the services' Python objects — and every call passes the fault
layer (timeouts before or after the service applied the write, throttling, 5xx, latency, drifted
or poisoned responses, expired credentials, crashes) under the target ``service.operation``,
exactly where a production client meets the network. Service errors arrive as a production
client raises them: a retryable one as :class:`~tether.errors.TransientError`, an expired token
as :class:`~tether.errors.AuthExpired`, the rest as
:class:`~tether.sim.services.errors.ServiceError` (a 4xx the agent should read). Each call is
recorded as a :class:`~tether.sim.calls.ServiceCall`, tied to the tool that made it, so the
suites and the invariants learn what the agent does without knowing its tools' names.

``env.model(own)`` is not needed: the harness runs the model the scenario chooses (``model:
own`` — the agent's own, the default — a scripted one, or a replay of a recorded run) in place
of the agent's, behind the model fault layer. The simulated user is ``env.user`` (also
``env.client("user").ask(question)``), the clock ``env.clock``, seeded randomness
``env.rng(name)``.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tether.clock import VirtualClock
from tether.errors import AuthExpired, TransientError, UsageError
from tether.runtime.tools import Tool, ToolContext
from tether.sim.caller import ToolCaller, attribution, calling, current_caller
from tether.sim.calls import ServiceCall
from tether.sim.faults import FaultLayer
from tether.sim.jsonable import plain
from tether.sim.persona_spec import Persona
from tether.sim.scenario import Invariant, Knobs, Scenario, check_from_dict
from tether.sim.services.errors import ServiceError, TokenExpired
from tether.sim.world import World

if TYPE_CHECKING:
    from tether.sim.wire.gateway import Gateway
    from tether.sim.wire.webhooks import Webhooks

__all__ = ["Environment", "ServiceClient", "current_caller", "instrument", "plain"]


class ServiceClient:
    """A client of one simulated service: ``await client.operation(...)``."""

    def __init__(self, env: Environment, name: str, service: Any) -> None:
        self._env, self._name, self._service = env, name, service
        # Each operation's bound call, made once (its signature is read when it is made).
        self._bound: dict[str, Callable[..., Awaitable[Any]]] = {}

    def __repr__(self) -> str:
        return f"<tether sim client {self._name}>"

    def __dir__(self) -> list[str]:
        return sorted(self.operations())

    def operations(self) -> list[str]:
        """The operations this service offers its clients (its ``OPERATIONS``)."""
        declared = getattr(type(self._service), "OPERATIONS", None)
        if declared is not None:
            return list(declared)
        return [n for n in dir(type(self._service)) if not n.startswith("_")
                and callable(getattr(self._service, n, None)) and n != "snapshot"]

    def __getattr__(self, operation: str) -> Callable[..., Awaitable[Any]]:
        made: dict[str, Callable[..., Awaitable[Any]]] = self.__dict__.get("_bound", {})
        bound = made.get(operation)
        if bound is not None:
            return bound
        if operation.startswith("_") or operation not in self.operations():
            raise AttributeError(
                f"the simulated {self._name} service has no operation {operation!r}; it offers "
                f"{', '.join(self.operations())}")
        method = getattr(self._service, operation)
        bound = self._bound[operation] = self._env._operation(self._name, operation, method,
                                                              self._service)
        return bound


class Environment:
    """The simulated world as an agent factory sees it (see the module docstring)."""

    def __init__(self, scenario: Scenario, world: World, layer: FaultLayer,
                 user: Any) -> None:
        self.scenario, self.world, self.layer, self.user = scenario, world, layer, user
        self.calls: list[ServiceCall] = []
        self.expected: list[Invariant] = []
        self._clients: dict[str, ServiceClient] = {}
        self._gateway: Gateway | None = None
        self._webhooks: Webhooks | None = None

    @property
    def clients_made(self) -> bool:
        """Whether the agent asked for any client of the simulated services (a Python client,
        or the world on the wire)."""
        return bool(self._clients) or self._gateway is not None

    # -- the world on the wire ------------------------------------------------------------

    @property
    def gateway(self) -> Gateway:
        """The world behind HTTP (:mod:`tether.sim.wire`): every service's face, with the
        scenario's faults applied at the wire."""
        if self._gateway is None:
            from tether.sim.wire.gateway import Gateway
            from tether.sim.wire.webhooks import Webhooks

            self._gateway = Gateway(self)
            self._webhooks = Webhooks.attach(self._gateway)
        return self._gateway

    @property
    def webhooks(self) -> Webhooks:
        """The payments service's webhook events and their delivery
        (:mod:`tether.sim.wire.webhooks`): ``env.webhooks.receive(url, handler)``."""
        gateway = self.gateway
        assert self._webhooks is not None and self._webhooks.gateway is gateway
        return self._webhooks

    def base_url(self, service: str) -> str:
        """The base URL of ``service`` on the wire (``http://sim.tether/payments`` in-process;
        point an SDK's base-URL setting at it together with :meth:`http_transport`)."""
        return self.gateway.base_url(service)

    def http_transport(self) -> Any:
        """An ``httpx`` transport (sync and async) that carries requests to the world
        in-process, deterministically: ``httpx.Client(transport=env.http_transport())``."""
        from tether.sim.wire.transport import InProcessTransport

        return InProcessTransport(self.gateway)

    def httpx_client(self, **options: Any) -> Any:
        """An ``httpx.Client`` on :meth:`http_transport`, its ``base_url`` the world's root."""
        from tether.sim.wire.transport import httpx_client

        return httpx_client(self.gateway, asynchronous=False, **options)

    def async_httpx_client(self, **options: Any) -> Any:
        """An ``httpx.AsyncClient`` on :meth:`http_transport`, its ``base_url`` the world's
        root."""
        from tether.sim.wire.transport import httpx_client

        return httpx_client(self.gateway, asynchronous=True, **options)

    def stripe_http_client(self, *, timeout_s: float | None = 80.0) -> Any:
        """A ``stripe.HTTPClient`` that carries the official SDK's requests to the world
        in-process, on the virtual clock: ``stripe.StripeClient(key, http_client=...,
        base_addresses={"api": env.base_url("payments")})`` (needs ``pip install stripe``).
        ``timeout_s`` is its read timeout on the virtual clock (the SDK's clients: 80 s)."""
        from tether.sim.wire.stripe_client import StripeInProcess

        return StripeInProcess(self.gateway, timeout_s=timeout_s)

    @property
    def seed(self) -> int:
        return self.world.seed

    @property
    def clock(self) -> VirtualClock:
        return self.world.clock

    @property
    def knobs(self) -> Knobs:
        return self.scenario.knobs

    @property
    def persona(self) -> Persona:
        return self.scenario.persona

    @property
    def task(self) -> str:
        return self.scenario.task

    def rng(self, name: str) -> random.Random:
        """A seeded random stream of this episode, named (see :meth:`World.rng`)."""
        return self.world.rng(f"agent:{name}")

    def service(self, name: str) -> Any:
        """The simulated service itself (its Python object), for checks and fixtures — not for
        an agent's tools, which should use :meth:`client` so faults reach them."""
        if name not in self.world.services:
            raise UsageError(f"no simulated service {name!r}; the world has "
                             f"{', '.join(sorted(self.world.services))}")
        return self.world.services[name]

    def client(self, name: str) -> ServiceClient:
        """A client bound to the simulated service ``name`` (faults apply to its calls)."""
        found = self._clients.get(name)
        if found is None:
            found = self._clients[name] = ServiceClient(self, name, self.service(name))
        return found

    def expect(self, checks: Sequence[dict[str, Any]]) -> None:
        """Declare what the task asks, as invariant mappings (``{"exactly_once": {...}}``):
        used as the episode's task checks when the scenario states no ``success:``. For
        agents that read their task from the world (as the shipped ones do)."""
        checked = [check_from_dict(check, where="env.expect", at=f"checks[{index}]")
                   for index, check in enumerate(checks)]
        self.expected.extend(checked)

    def _operation(self, service_name: str, operation: str, method: Callable[..., Any],
                   service: Any) -> Callable[..., Awaitable[Any]]:
        target = f"{service_name}.{operation}"
        signature = inspect.signature(method)
        ledger = self.world.ledger
        stale = getattr(service, "go_stale", None)

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{target}: {exc}") from None
            arguments = plain(dict(bound.arguments))
            caller = current_caller()
            caused: list[int] = []

            def run() -> Any:
                before = len(ledger)
                try:
                    value = method(*args, **kwargs)
                except TokenExpired as exc:
                    raise AuthExpired(f"{target}: {exc}", dependency=target) from exc
                except ServiceError as exc:
                    if exc.retryable:
                        raise TransientError(f"{target}: {exc}") from exc
                    raise
                finally:
                    caused.extend(e.seq for e in ledger.effects[before:])
                if inspect.isawaitable(value):
                    return _awaited(value, ledger, caused)
                return plain(value)

            def on_stale(age_s: float) -> None:
                # Reads return the state as it was age_s ago, for as long again.
                if stale is not None:
                    stale(age_s, age_s=age_s)

            record = dict(attribution(caller), target=target, args=arguments,
                          keyed=bool(kwargs.get("idempotency_key")))
            try:
                answer = await self.layer.call(
                    target, run, on_stale=on_stale if stale is not None else None)
            except BaseException as exc:
                self.calls.append(ServiceCall(**record, error=f"{type(exc).__name__}: {exc}",
                                              effects=tuple(caused)))
                raise
            self.calls.append(ServiceCall(**record, response=answer, effects=tuple(caused)))
            return answer

        call.__name__ = operation
        call.__doc__ = method.__doc__
        return call


async def _awaited(value: Awaitable[Any], ledger: Any, caused: list[int]) -> Any:
    """An ``async`` operation's answer (the model-played user), with the effects it caused."""
    before = len(ledger)
    try:
        return plain(await value)
    finally:
        caused.extend(e.seq for e in ledger.effects[before:])


def instrument(tools: Sequence[Tool[Any, Any]], ran: list[str] | None = None,
               returned: list[str] | None = None) -> list[Tool[Any, Any]]:
    """The agent's tools, each attributing the service calls it makes (handler, reconciler,
    compensator) to itself; behaviour otherwise unchanged. The name of each tool whose handler
    was called is appended to ``ran``, and of each whose handler returned to ``returned``."""
    return [_instrumented(t, ran if ran is not None else [],
                          returned if returned is not None else []) for t in tools]


def _instrumented(original: Tool[Any, Any], ran: list[str],
                  returned: list[str]) -> Tool[Any, Any]:
    effect, trust = str(original.effect.value), str(original.trust.value)

    def attributed(fn: Callable[..., Any], lookup: bool) -> Callable[..., Any]:
        caller = ToolCaller(original.name, effect, trust, lookup)

        async def wrapped(*args: Any) -> Any:
            with calling(caller):
                value = fn(*args)
                if inspect.isawaitable(value):
                    value = await value
                return value

        wrapped.__name__ = getattr(fn, "__name__", original.name)
        wrapped.__doc__ = getattr(fn, "__doc__", None)
        return wrapped

    run = attributed(original.handler, False)

    async def handler(ctx: ToolContext, args: Any) -> Any:
        ran.append(original.name)
        value = await run(ctx, args)
        returned.append(original.name)
        return value

    handler.__doc__ = original.handler.__doc__
    return replace(
        original, handler=handler,
        reconcile=attributed(original.reconcile, True) if original.reconcile else None,
        compensate=attributed(original.compensate, True) if original.compensate else None)
