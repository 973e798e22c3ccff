"""A payments service modeled on Stripe's customers, charges and refunds.

Refunds follow Stripe's validation and idempotency semantics, because those are what an agent
meets in production: a retried refund with the same ``Idempotency-Key`` replays the first
response (``idempotent_replayed=True``, Stripe's ``Idempotent-Replayed`` header) and applies
nothing; the same key with other parameters is an ``idempotency_error``; a request while the key
is still in flight is a 409 ``idempotency_key_in_use``; keys are forgotten 24 hours (virtual)
after first use, so a reuse after that refunds again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    model_validator,
)

from tether.sim.services._idempotency import (
    DEFAULT_TTL_S,
    IdempotencyKeys,
    KeyInFlight,
    KeyReused,
    fingerprint,
)
from tether.sim.services._ids import IdCounter
from tether.sim.services.errors import PaymentsError
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["Charge", "Customer", "Payments", "Refund", "RefundReason", "RefundRequest"]

RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class Customer(StrictNumbers, BaseModel):
    """A Stripe customer (``cus_…``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    object: Literal["customer"] = "customer"
    email: str | None = None
    name: str | None = None
    created: int
    metadata: dict[str, str] = Field(default_factory=dict)


class Charge(StrictNumbers, BaseModel):
    """A Stripe charge (``ch_…``); amounts are integers in the currency's smallest unit.

    ``refunded`` is derived from ``amount_refunded`` (given as input, it is ignored).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    object: Literal["charge"] = "charge"
    amount: int = Field(gt=0)
    amount_refunded: int = Field(default=0, ge=0)
    currency: str = "usd"
    customer: str | None = None
    status: Literal["succeeded", "pending", "failed"] = "succeeded"
    disputed: bool = False
    description: str | None = None
    created: int
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _derived_fields(cls, data: Any) -> Any:
        # ``refunded`` is derived from ``amount_refunded``: a dumped charge validates back.
        if isinstance(data, Mapping) and "refunded" in data:
            data = {k: v for k, v in data.items() if k != "refunded"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def refunded(self) -> bool:
        """Whether the charge has been refunded in full."""
        return self.amount_refunded >= self.amount


class Refund(StrictNumbers, BaseModel):
    """A Stripe refund (``re_…``). ``idempotent_replayed`` is set on replayed responses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    object: Literal["refund"] = "refund"
    amount: int = Field(gt=0)
    charge: str
    currency: str = "usd"
    status: Literal["succeeded", "pending", "failed"] = "succeeded"
    reason: RefundReason | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created: int
    idempotent_replayed: bool = False


class RefundRequest(BaseModel):
    """The parameters of ``POST /v1/refunds`` (a tool can use this as its argument schema)."""

    model_config = ConfigDict(extra="forbid")

    charge: str = Field(min_length=1)
    amount: int | None = Field(default=None, gt=0)
    reason: RefundReason | None = None
    metadata: dict[str, str] | None = None


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[Customer] = Field(default_factory=list)
    charges: list[Charge] = Field(default_factory=list)
    refunds: list[Refund] = Field(default_factory=list)
    idempotency_ttl_s: float = Field(default=DEFAULT_TTL_S, gt=0)


# How Stripe words a parameter that fails validation: (code, message) by parameter.
_INVALID_PARAM: dict[str, tuple[str | None, str]] = {
    "charge": ("parameter_missing", "Missing required param: charge."),
    "amount": ("parameter_invalid_integer", "Invalid positive integer"),
    "reason": (None, "Invalid reason: must be one of duplicate, fraudulent or "
                     "requested_by_customer"),
    "metadata": (None, "Invalid metadata: keys and values must be strings"),
}


class Payments:
    """Customers, charges and refunds with Stripe's objects, errors and idempotency.

    ``seed_state`` (every list optional; ``created`` defaults to the world's start time,
    ``amount_refunded`` to the sum of the seeded refunds of the charge)::

        {
            "customers": [{"id": "cus_0001", "email": "ada@example.com", "name": "Ada"}],
            "charges": [{"id": "ch_0001", "customer": "cus_0001", "amount": 5000,
                         "currency": "usd", "description": "Order #1042"}],
            "refunds": [{"id": "re_0001", "charge": "ch_0001", "amount": 1000,
                         "reason": "requested_by_customer"}],
            "idempotency_ttl_s": 86400,
        }

    >>> payments = Payments(World(seed=1), {"charges": [{"id": "ch_1", "amount": 500}]})
    >>> refund = payments.create_refund("ch_1", idempotency_key="k1")
    >>> (refund.id, refund.amount, payments.create_refund("ch_1", idempotency_key="k1").id)
    ('re_0001', 500, 're_0001')
    """

    #: The effects this service records in the world's ledger (``operation`` → field → the
    #: types its value can have): what a scenario's invariants may name and match on.
    EFFECTS: ClassVar[dict[str, dict[str, tuple[type, ...]]]] = {
        "refund": {"charge": (str,), "refund_id": (str,), "amount": (int,), "currency": (str,),
                   "reason": (str, type(None)), "idempotency_key": (str, type(None))},
    }

    #: What its clients may call (``env.client("payments")``).
    OPERATIONS: ClassVar[tuple[str, ...]] = (
        "get_customer", "list_charges", "get_charge", "list_refunds", "create_refund")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        seed = _Seed.model_validate(_with_created(seed_state or {}, int(world.now())))
        for kind, objects in (("customer", seed.customers), ("charge", seed.charges),
                              ("refund", seed.refunds)):
            ids = [o.id for o in objects]
            if len(set(ids)) != len(ids):
                twice = sorted({i for i in ids if ids.count(i) > 1})
                raise ValueError(f"payments seed: {kind} ids must be unique; repeated: {twice}")
        self._customers = {c.id: c for c in seed.customers}
        self._charges: dict[str, Charge] = {}
        self._refunds = {r.id: r for r in seed.refunds}
        self._keys: IdempotencyKeys[Refund] = IdempotencyKeys(world.now, seed.idempotency_ttl_s)
        self._refund_ids = IdCounter("re_", self._refunds)
        raw_charges = {str(c.get("id")): c for c in (seed_state or {}).get("charges", [])}
        for charge in seed.charges:
            if charge.customer is not None and charge.customer not in self._customers:
                raise ValueError(f"payments seed: charge {charge.id} names customer "
                                 f"{charge.customer!r}, which is not among the customers")
            seeded = sum(r.amount for r in seed.refunds if r.charge == charge.id)
            refunded = charge.amount_refunded if "amount_refunded" in raw_charges[charge.id] \
                else seeded
            if not seeded <= refunded <= charge.amount:
                raise ValueError(f"payments seed: charge {charge.id} has amount_refunded "
                                 f"{refunded}, but its refunds sum to {seeded} and its amount "
                                 f"is {charge.amount}")
            self._charges[charge.id] = charge.model_copy(update={"amount_refunded": refunded})
        for refund in seed.refunds:
            if refund.charge not in self._charges:
                raise ValueError(f"payments seed: refund {refund.id} names charge "
                                 f"{refund.charge!r}, which is not among the charges")

    # -- reads ---------------------------------------------------------------------------

    def get_customer(self, id: str) -> Customer:
        """``GET /v1/customers/{id}``."""
        customer = self._customers.get(id)
        if customer is None:
            raise _missing("customer", id, "id")
        return customer

    def list_charges(self, customer: str) -> list[Charge]:
        """``GET /v1/charges?customer=…``: newest first."""
        if customer not in self._customers:
            raise _missing("customer", customer, "customer")
        charges = [c for c in self._charges.values() if c.customer == customer]
        return sorted(charges, key=lambda c: (c.created, c.id), reverse=True)

    def get_charge(self, id: str) -> Charge:
        """``GET /v1/charges/{id}``."""
        charge = self._charges.get(id)
        if charge is None:
            raise _missing("charge", id, "id")
        return charge

    def list_refunds(self, charge: str) -> list[Refund]:
        """``GET /v1/refunds?charge=…``: newest first."""
        if charge not in self._charges:
            raise _missing("charge", charge, "charge")
        refunds = [r for r in self._refunds.values() if r.charge == charge]
        return sorted(refunds, key=lambda r: (r.created, r.id), reverse=True)

    # -- the write -----------------------------------------------------------------------

    def create_refund(self, charge: str, amount: int | None = None,
                      reason: str | None = None, metadata: Mapping[str, str] | None = None,
                      idempotency_key: str | None = None) -> Refund:
        """``POST /v1/refunds``: refund ``amount`` (default: what remains) of ``charge``.

        Raises :class:`PaymentsError` shaped like Stripe's: ``resource_missing`` (404, param
        ``charge``), ``amount_too_large``, ``charge_already_refunded``, ``charge_disputed``,
        parameter errors (400), ``idempotency_error`` (400) and ``idempotency_key_in_use``
        (409, retryable).
        """
        params = {"charge": charge, "amount": amount, "reason": reason,
                  "metadata": dict(metadata) if isinstance(metadata, Mapping) else metadata}
        if idempotency_key is None:
            return self._refund(_validate(params), None)
        signature = fingerprint("create_refund", params)
        try:
            saved = self._keys.lookup(idempotency_key, signature)
        except KeyInFlight:
            raise PaymentsError(
                "invalid_request_error", "idempotency_key_in_use",
                f"There is currently another in-progress request using the idempotency key "
                f"{idempotency_key!r}. Retry later with the same key.", None, 409) from None
        except KeyReused:
            raise PaymentsError(
                "idempotency_error", None,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than {idempotency_key!r} if you "
                "meant to execute a different request.", None, 400) from None
        if saved is not None:
            return saved.replay().model_copy(update={"idempotent_replayed": True})
        request = _validate(params)  # a request failing validation is not saved (as Stripe)
        try:
            refund = self._refund(request, idempotency_key)
        except PaymentsError as exc:
            self._keys.save(idempotency_key, signature, exc)
            raise
        self._keys.save(idempotency_key, signature, refund)
        return refund

    def _refund(self, request: RefundRequest, idempotency_key: str | None) -> Refund:
        charge = self._charges.get(request.charge)
        if charge is None:
            raise _missing("charge", request.charge, "charge")
        if charge.disputed:
            raise PaymentsError("invalid_request_error", "charge_disputed",
                                f"Charge {charge.id} has been charged back; it cannot be "
                                "refunded.", "charge")
        remaining = charge.amount - charge.amount_refunded
        if remaining <= 0:
            raise PaymentsError("invalid_request_error", "charge_already_refunded",
                                f"Charge {charge.id} has already been refunded.", "charge")
        amount = remaining if request.amount is None else request.amount
        if amount > remaining:
            raise PaymentsError(
                "invalid_request_error", "amount_too_large",
                f"Refund amount ({amount} {charge.currency}) is greater than unrefunded amount "
                f"on charge ({remaining} {charge.currency}).", "amount")
        refund = Refund(id=self._refund_ids.new(), amount=amount, charge=charge.id,
                        currency=charge.currency, reason=request.reason,
                        metadata=request.metadata or {}, created=int(self.world.now()))
        self._refunds[refund.id] = refund
        self._charges[charge.id] = charge.model_copy(
            update={"amount_refunded": charge.amount_refunded + amount})
        self.world.effect("payments", "refund", key=f"refund:{charge.id}", charge=charge.id,
                          refund_id=refund.id, amount=amount, currency=charge.currency,
                          reason=request.reason, idempotency_key=idempotency_key)
        return refund

    # -- hooks for the fault layer ---------------------------------------------------------

    def begin_request(self, idempotency_key: str) -> None:
        """Hold ``idempotency_key`` as in flight: requests using it get a 409 until finished."""
        self._keys.begin(idempotency_key)

    def finish_request(self, idempotency_key: str) -> None:
        """Release ``idempotency_key`` held by :meth:`begin_request`."""
        self._keys.finish(idempotency_key)

    @contextmanager
    def in_flight(self, idempotency_key: str) -> Iterator[None]:
        """``with payments.in_flight(key):`` — the key is in flight inside the block."""
        self.begin_request(idempotency_key)
        try:
            yield
        finally:
            self.finish_request(idempotency_key)

    def snapshot(self) -> dict[str, Any]:
        """Canonical state: customers, charges and refunds by id (``charges.ch_0001.refunded``)."""
        return {
            "customers": {i: c.model_dump(mode="json") for i, c in sorted(self._customers.items())},
            "charges": {i: c.model_dump(mode="json") for i, c in sorted(self._charges.items())},
            "refunds": {i: r.model_dump(mode="json", exclude={"idempotent_replayed"})
                        for i, r in sorted(self._refunds.items())},
        }


def _validate(params: Mapping[str, Any]) -> RefundRequest:
    try:
        return RefundRequest.model_validate(params)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        param = str(loc[0]) if loc else "charge"
        code, message = _INVALID_PARAM.get(param, (None, f"Invalid {param}"))
        raise PaymentsError("invalid_request_error", code, message, param, 400) from None


def _missing(resource: str, id: str, param: str) -> PaymentsError:
    return PaymentsError("invalid_request_error", "resource_missing",
                         f"No such {resource}: {id!r}", param, 404)


def _with_created(seed: Mapping[str, Any], created: int) -> dict[str, Any]:
    """The seed with ``created`` defaulted on every object that lacks it."""
    out = dict(seed)
    for name in ("customers", "charges", "refunds"):
        if isinstance(out.get(name), list):
            out[name] = [{"created": created, **o} if isinstance(o, Mapping) else o
                         for o in out[name]]
    if isinstance(out.get("refunds"), list):
        currency = {str(c.get("id")): c.get("currency", "usd") for c in out.get("charges", [])
                    if isinstance(c, Mapping)}
        out["refunds"] = [{"currency": currency.get(str(r.get("charge")), "usd"), **r}
                          if isinstance(r, Mapping) else r for r in out["refunds"]]
    return out
