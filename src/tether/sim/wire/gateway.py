"""One simulated world behind HTTP: faces by path prefix, faults at the wire, calls recorded.

A :class:`Gateway` belongs to one :class:`~tether.sim.environment.Environment` (``env.gateway``)
and answers :class:`~tether.sim.wire.messages.WireRequest` s for every service of its world.
Each service speaks through a :class:`Face` — the Stripe-compatible API for ``payments``, a
JSON API for the others, an OAuth2 token endpoint for ``identity`` — mounted under the
service's name (``/payments/v1/refunds``). A face *routes* a request to one of its service's
operations (or answers it itself), and *shapes* the outcome in the service's own wire format;
the gateway, in between, carries out the faults that fire on the call's target
``service.operation`` — the same :class:`~tether.sim.faults.FaultLayer`, plan and counters as
``env.client`` — calls the service, and records a :class:`~tether.sim.calls.ServiceCall`
attributed to the agent's running tool.

At the wire a fault becomes what a production client meets: latency is time passing on the
world's clock; an expired credential is the face's 401; an injected error its 5xx or 429
(with ``Retry-After``); a timeout is a connection dropped before the request reached the
service or after it applied the write (:class:`~tether.sim.wire.messages.ConnectionDropped`);
drift, wrong content and injected text change the JSON the face sends.

``handle`` is synchronous (the in-process transports of synchronous clients call it inside the
agent's task: latency advances the virtual clock); ``handle_async`` waits on the clock, so
concurrent requests interleave (a request arriving while another holds its idempotency key in
flight meets the service's 409).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import AuthExpired, TransientError
from tether.sim.caller import attribution, current_caller
from tether.sim.calls import ServiceCall
from tether.sim.faults import CallPlan
from tether.sim.jsonable import plain
from tether.sim.services.errors import ServiceError
from tether.sim.wire.messages import (
    BadRequestBody,
    ConnectionDropped,
    CredentialsExpired,
    InjectedStatus,
    WireRequest,
    WireResponse,
)

if TYPE_CHECKING:
    from tether.sim.environment import Environment

__all__ = ["DEFAULT_FACES", "IN_PROCESS_ROOT", "Face", "Gateway", "Route"]

#: The root URL of the world in-process (a service's base URL is ``{root}/{service}``).
IN_PROCESS_ROOT = "http://sim.tether"

#: What an idempotency key drawn at random looks like (a UUID, as the stripe SDK and most
#: agents make them).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NAMED = "uuid_"

#: The face each service speaks through, as ``module:Class`` (built as ``Class(service)``).
DEFAULT_FACES: dict[str, str] = {
    "payments": "tether.sim.wire.stripe_face:StripeFace",
    "identity": "tether.sim.wire.oauth:OAuthFace",
    "crm": "tether.sim.wire.json_face:JsonFace",
    "email": "tether.sim.wire.json_face:JsonFace",
    "calendar": "tether.sim.wire.json_face:JsonFace",
    "kb": "tether.sim.wire.json_face:JsonFace",
}


@dataclass(frozen=True)
class Route:
    """A request routed to one operation of the face's service."""

    #: The service operation (one of its ``OPERATIONS``): the fault target's second half.
    operation: str
    #: Its keyword arguments (``idempotency_key`` among them when the request carried one).
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Whatever the face needs to shape the answer (the list URL, the requested page …).
    extra: Mapping[str, Any] = field(default_factory=dict)


class Face(Protocol):
    """How one service speaks HTTP."""

    service: str

    def route(self, request: WireRequest, gateway: Gateway) -> Route | WireResponse:
        """The operation ``request`` asks for, or the face's own answer (a 404, a 401, a
        token): a request that does not reach an operation is not a fault target."""
        ...

    def success(self, route: Route, result: Any) -> WireResponse:
        """The answer to a call that returned ``result`` (plain JSON, after any fault)."""
        ...

    def failure(self, route: Route, error: ServiceError) -> WireResponse:
        """The answer to a call the service refused."""
        ...

    def injected(self, route: Route, status: int, retry_after_s: float | None) -> WireResponse:
        """The answer of an injected error status (a 429 carries ``Retry-After``)."""
        ...

    def expired(self, route: Route) -> WireResponse:
        """The 401 of expired credentials, in the service's own shape."""
        ...


class Gateway:
    """The world of one environment behind HTTP (see the module docstring)."""

    def __init__(self, env: Environment, *, root: str = IN_PROCESS_ROOT,
                 faces: Mapping[str, str] | None = None) -> None:
        self.env = env
        self.root = root.rstrip("/")
        self.faces: dict[str, Face] = {}
        self._after: list[Callable[[], None]] = []
        self._uuid_keys: dict[str, str] = {}
        for service, where in (DEFAULT_FACES if faces is None else faces).items():
            face = _load_face(where, service) if service in env.world.services else None
            if face is not None:
                self.mount(face)

    def mount(self, face: Face) -> None:
        """Serve ``face`` under ``/{face.service}``."""
        self.faces[face.service] = face

    def after(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every operation the gateway ran (webhook delivery)."""
        self._after.append(hook)

    def key_name(self, key: str) -> str:
        """The name an idempotency key that came over the wire (HTTP or MCP) is passed to the
        service under. A UUID-shaped key — drawn at random by an SDK or the agent, so different
        in every run — is named ``uuid_0001``, ``uuid_0002`` … in the order first seen, so the
        ledger and the recorded calls stay byte-for-byte reproducible; a key that begins with
        ``uuid_`` gets a second ``uuid_`` in front; every other key is kept as sent. The naming
        is one-to-one over every key and shared by every face, so one key sent over two
        channels is one key to the service."""
        if _UUID.fullmatch(key):
            named = self._uuid_keys.get(key)
            if named is None:
                named = self._uuid_keys[key] = f"{_NAMED}{len(self._uuid_keys) + 1:04d}"
            return named
        return _NAMED + key if key.startswith(_NAMED) else key

    def base_url(self, service: str) -> str:
        """Where ``service`` is reached: ``{root}/{service}``."""
        if service not in self.faces:
            raise KeyError(f"no service {service!r} on the wire; it serves "
                           f"{', '.join(sorted(self.faces))}")
        return f"{self.root}/{service}"

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, request: WireRequest, *, timeout_s: float | None = None) -> WireResponse:
        """Answer ``request``; latency advances the world's clock. Raises
        :class:`ConnectionDropped` (and a simulated crash) where no response comes back —
        among them a response slower than the client's read timeout ``timeout_s``."""
        routed = self._route(request)
        if isinstance(routed, WireResponse):
            return routed
        face, route = routed
        try:
            return face.success(route, self.invoke(request.service, route.operation,
                                                   route.kwargs, timeout_s=timeout_s))
        except ServiceError as exc:
            return face.failure(route, exc)
        except InjectedStatus as exc:
            return face.injected(route, exc.status, exc.retry_after_s)
        except CredentialsExpired:
            return face.expired(route)

    async def handle_async(self, request: WireRequest, *,
                           timeout_s: float | None = None) -> WireResponse:
        """:meth:`handle`, waiting on the world's clock (concurrent requests interleave)."""
        routed = self._route(request)
        if isinstance(routed, WireResponse):
            return routed
        face, route = routed
        try:
            result = await self.invoke_async(request.service, route.operation, route.kwargs,
                                             timeout_s=timeout_s)
            return face.success(route, result)
        except ServiceError as exc:
            return face.failure(route, exc)
        except InjectedStatus as exc:
            return face.injected(route, exc.status, exc.retry_after_s)
        except CredentialsExpired:
            return face.expired(route)

    def _route(self, request: WireRequest) -> tuple[Face, Route] | WireResponse:
        face = self.faces.get(request.service)
        if face is None:
            named = sorted(self.faces)
            example = "payments" if "payments" in self.faces else (named or ["SERVICE"])[0]
            return WireResponse.of_json(404, {"error": {
                "type": "not_found",
                "message": f"no simulated service {request.service!r} at this address; "
                           f"services: {', '.join(named)}; a client's base URL is the "
                           f"service's, e.g. {self.root}/{example}"}})
        try:
            routed = face.route(request, self)
        except BadRequestBody as exc:
            return WireResponse.of_json(400, {"error": {"type": "invalid_request",
                                                        "message": str(exc)}})
        return routed if isinstance(routed, WireResponse) else (face, routed)

    # -- operations --------------------------------------------------------------------------

    def invoke(self, service: str, operation: str, kwargs: Mapping[str, Any], *,
               timeout_s: float | None = None) -> Any:
        """Run one operation under the wire's faults (latency advances the clock) and return
        its plain JSON answer; see :mod:`~tether.sim.wire.messages` for what it raises.
        ``timeout_s`` is the client's read timeout: a call delayed longer is given up by the
        client after that long, before the service saw it."""
        method, plan = self._plan(service, operation, kwargs)
        delay_s = sum(plan.latencies_s)
        if timeout_s is not None and delay_s > timeout_s:
            self.env.clock.advance(timeout_s)
            self._gave_up(plan, kwargs, timeout_s)
        for each_s in plan.latencies_s:
            self.env.clock.advance(each_s)
        return self._run(service, operation, method, plan, kwargs)

    async def invoke_async(self, service: str, operation: str,
                           kwargs: Mapping[str, Any], *, timeout_s: float | None = None) -> Any:
        """:meth:`invoke`, waiting on the clock; an idempotency key is held in flight while
        the call is delayed, as a server holds it while it works."""
        method, plan = self._plan(service, operation, kwargs)
        if plan.latencies_s:
            delay_s = sum(plan.latencies_s)
            late = timeout_s is not None and delay_s > timeout_s
            key = kwargs.get("idempotency_key")
            holder = self.env.world.services[service]
            hold = getattr(holder, "in_flight", None) if key else None
            with hold(key) if hold is not None else contextlib.nullcontext():
                if late:
                    await self.env.clock.sleep(timeout_s or 0.0)
                else:
                    for each_s in plan.latencies_s:
                        await self.env.clock.sleep(each_s)
            if late:
                self._gave_up(plan, kwargs, timeout_s or 0.0)
        return self._run(service, operation, method, plan, kwargs)

    def _gave_up(self, plan: CallPlan, kwargs: Mapping[str, Any], timeout_s: float) -> None:
        """The client's read timeout passed before the delayed call reached the service: the
        client gives up (it cannot know the call was never applied), nothing is applied."""
        message = (f"{plan.target}: no response within the client's {timeout_s:g} s read "
                   "timeout")
        self.env.calls.append(ServiceCall(
            **attribution(current_caller()), target=plan.target, args=plain(dict(kwargs)),
            keyed=bool(kwargs.get("idempotency_key")), error=f"ConnectionDropped: {message}"))
        raise ConnectionDropped(message, delivered=False, read_timeout=True)

    def _plan(self, service: str, operation: str,
              kwargs: Mapping[str, Any]) -> tuple[Callable[..., Any], CallPlan]:
        holder = self.env.world.services.get(service)
        offered = getattr(type(holder), "OPERATIONS", ())
        if holder is None or operation not in offered:
            raise BadRequestBody(f"the simulated {service} service has no operation "
                                 f"{operation!r}")
        method = getattr(holder, operation)
        try:
            inspect.signature(method).bind(**kwargs)
        except TypeError as exc:
            raise BadRequestBody(f"{service}.{operation}: {exc}") from None
        plan = self.env.layer.decide(f"{service}.{operation}",
                                     replica=hasattr(holder, "go_stale"))
        return method, plan

    def _run(self, service: str, operation: str, method: Callable[..., Any], plan: CallPlan,
             kwargs: Mapping[str, Any]) -> Any:
        ledger = self.env.world.ledger
        before = len(ledger)
        holder = self.env.world.services[service]
        stale = getattr(holder, "go_stale", None)
        record: dict[str, Any] = dict(
            attribution(current_caller()), target=plan.target, args=plain(dict(kwargs)),
            keyed=bool(kwargs.get("idempotency_key")))

        def on_stale(age_s: float) -> None:
            if stale is not None:
                stale(age_s, age_s=age_s)

        try:
            try:
                plan.refuse_before(on_stale if stale is not None else None)
            except AuthExpired:
                raise CredentialsExpired(f"{plan.target}: credentials expired") from None
            except TransientError as exc:
                error = plan.of("error")
                raise InjectedStatus(str(exc), status=error.status if error else 503,
                                     retry_after_s=exc.retry_after_s) from None
            except TimeoutError as exc:
                raise ConnectionDropped(str(exc), delivered=False) from None
            result = plain(method(**kwargs))
            if plan.duplicate:
                result = plain(method(**kwargs))
            try:
                plan.refuse_after()
            except TimeoutError as exc:
                raise ConnectionDropped(str(exc), delivered=True) from None
            answer = plan.transform(result)
        except BaseException as exc:
            self.env.calls.append(ServiceCall(
                **record, error=f"{type(exc).__name__}: {exc}",
                effects=tuple(e.seq for e in ledger.effects[before:])))
            self._ran()
            raise
        self.env.calls.append(ServiceCall(
            **record, response=answer, effects=tuple(e.seq for e in ledger.effects[before:])))
        self._ran()
        return answer

    def _ran(self) -> None:
        for hook in self._after:
            hook()


def _load_face(where: str, service: str) -> Face | None:
    module, _, name = where.partition(":")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None  # a face this installation does not ship: the service is not on the wire
    face: Face = getattr(loaded, name)(service)
    return face
