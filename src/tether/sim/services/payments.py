"""A payments service modeled on Stripe's customers, charges, refunds and payouts.

Every write follows Stripe's validation and idempotency semantics, because those are what an
agent meets in production: a retried request with the same ``Idempotency-Key`` replays the
first response (``idempotent_replayed=True``, Stripe's ``Idempotent-Replayed`` header) and
applies nothing; the same key with other parameters is an ``idempotency_error``; a request
while the key is still in flight is a 409 ``idempotency_key_in_use``; keys are forgotten 24
hours (virtual) after first use, so a reuse after that applies again. One key store serves
every write, as one Stripe account does: a key first used for a charge cannot create a refund.

Payouts draw on the available balance: the opening ``balance`` of the seed plus succeeded
charges, less what was refunded of them and what was paid out, per currency. A refund may
take it below zero (Stripe then debits the account); a payout never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.sim.services._idempotency import (
    DEFAULT_TTL_S,
    IdempotencyKeys,
    KeyInFlight,
    KeyReused,
    fingerprint,
)
from tether.sim.services._ids import IdCounter
from tether.sim.services.errors import PaymentsError
from tether.sim.services.payments_objects import (
    Balance,
    BalanceAmount,
    Charge,
    ChargeRequest,
    Customer,
    CustomerRequest,
    Payout,
    PayoutRequest,
    Refund,
    RefundReason,
    RefundRequest,
)
from tether.sim.world import World
from tether.specs import StrictNumbers

__all__ = ["Balance", "Charge", "Customer", "Payments", "Payout", "Refund", "RefundReason",
           "RefundRequest"]

_Request = TypeVar("_Request", bound=BaseModel)
_Object = TypeVar("_Object", bound=BaseModel)


class _Seed(StrictNumbers, BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[Customer] = Field(default_factory=list)
    charges: list[Charge] = Field(default_factory=list)
    refunds: list[Refund] = Field(default_factory=list)
    payouts: list[Payout] = Field(default_factory=list)
    balance: dict[str, int] = Field(default_factory=dict)
    api_keys: list[str] | None = None
    idempotency_ttl_s: float = Field(default=DEFAULT_TTL_S, gt=0)


# How Stripe words a parameter that fails validation: (code, message) by parameter.
_INVALID_PARAM: dict[str, tuple[str | None, str]] = {
    "charge": ("parameter_missing", "Missing required param: charge."),
    "amount": ("parameter_invalid_integer", "Invalid positive integer"),
    "reason": (None, "Invalid reason: must be one of duplicate, fraudulent or "
                     "requested_by_customer"),
    "metadata": (None, "Invalid metadata: keys and values must be strings"),
    "currency": (None, "Invalid currency: must be a three-letter ISO code, such as usd"),
}

# Stripe's test tokens for declined cards: (code, message) of the 402 card_error.
_DECLINED: dict[str, tuple[str, str]] = {
    "tok_chargeDeclined": ("card_declined", "Your card was declined."),
    "tok_chargeDeclinedInsufficientFunds": ("card_declined",
                                            "Your card has insufficient funds."),
    "tok_chargeDeclinedExpiredCard": ("expired_card", "Your card has expired."),
    "tok_chargeDeclinedIncorrectCvc": ("incorrect_cvc",
                                       "Your card's security code is incorrect."),
}


class Payments:
    """Customers, charges, refunds and payouts with Stripe's objects, errors and idempotency.

    ``seed_state`` (every entry optional; ``created`` defaults to the world's start time,
    ``amount_refunded`` to the sum of the seeded refunds of the charge; ``balance`` is an
    opening available balance per currency; ``api_keys`` restricts the secret keys the HTTP
    face accepts, which is otherwise any ``sk_test_…``)::

        {
            "customers": [{"id": "cus_0001", "email": "ada@example.com", "name": "Ada"}],
            "charges": [{"id": "ch_0001", "customer": "cus_0001", "amount": 5000,
                         "currency": "usd", "description": "Order #1042"}],
            "refunds": [{"id": "re_0001", "charge": "ch_0001", "amount": 1000,
                         "reason": "requested_by_customer"}],
            "payouts": [{"id": "po_0001", "amount": 1000, "arrival_date": 1767225600}],
            "balance": {"usd": 100000},
            "api_keys": ["sk_test_tether"],
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
        "customer": {"customer_id": (str,), "email": (str, type(None)),
                     "name": (str, type(None)), "idempotency_key": (str, type(None))},
        "charge": {"charge_id": (str,), "amount": (int,), "currency": (str,),
                   "customer": (str, type(None)), "idempotency_key": (str, type(None))},
        "payout": {"payout_id": (str,), "amount": (int,), "currency": (str,),
                   "idempotency_key": (str, type(None))},
    }

    #: What its clients may call (``env.client("payments")``, the HTTP face, MCP).
    OPERATIONS: ClassVar[tuple[str, ...]] = (
        "get_customer", "list_charges", "get_charge", "list_refunds", "create_refund",
        "create_customer", "list_customers", "create_charge", "get_refund",
        "create_payout", "get_payout", "list_payouts", "get_balance")

    def __init__(self, world: World, seed_state: Mapping[str, Any] | None = None) -> None:
        self.world = world
        seed = _Seed.model_validate(_with_created(seed_state or {}, int(world.now())))
        for kind, objects in (("customer", seed.customers), ("charge", seed.charges),
                              ("refund", seed.refunds), ("payout", seed.payouts)):
            ids = [o.id for o in objects]
            if len(set(ids)) != len(ids):
                twice = sorted({i for i in ids if ids.count(i) > 1})
                raise ValueError(f"payments seed: {kind} ids must be unique; repeated: {twice}")
        #: The secret keys the HTTP face accepts (``None``: any ``sk_test_…``).
        self.api_keys: tuple[str, ...] | None = (
            None if seed.api_keys is None else tuple(seed.api_keys))
        self._opening = dict(seed.balance)
        self._customers = {c.id: c for c in seed.customers}
        self._charges: dict[str, Charge] = {}
        self._refunds = {r.id: r for r in seed.refunds}
        self._payouts = {p.id: p for p in seed.payouts}
        self._keys: IdempotencyKeys[Any] = IdempotencyKeys(world.now, seed.idempotency_ttl_s)
        self._refund_ids = IdCounter("re_", self._refunds)
        self._customer_ids = IdCounter("cus_", self._customers)
        self._charge_ids = IdCounter("ch_", (c.id for c in seed.charges))
        self._payout_ids = IdCounter("po_", self._payouts)
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

    def list_customers(self, email: str | None = None) -> list[Customer]:
        """``GET /v1/customers`` (optionally ``?email=…``, matched exactly): newest first."""
        customers = [c for c in self._customers.values() if email is None or c.email == email]
        return sorted(customers, key=lambda c: (c.created, c.id), reverse=True)

    def list_charges(self, customer: str | None = None) -> list[Charge]:
        """``GET /v1/charges`` (optionally ``?customer=…``): newest first."""
        if customer is not None and customer not in self._customers:
            raise _missing("customer", customer, "customer")
        charges = [c for c in self._charges.values() if customer is None or c.customer == customer]
        return sorted(charges, key=lambda c: (c.created, c.id), reverse=True)

    def get_charge(self, id: str) -> Charge:
        """``GET /v1/charges/{id}``."""
        charge = self._charges.get(id)
        if charge is None:
            raise _missing("charge", id, "id")
        return charge

    def list_refunds(self, charge: str | None = None) -> list[Refund]:
        """``GET /v1/refunds`` (optionally ``?charge=…``): newest first."""
        if charge is not None and charge not in self._charges:
            raise _missing("charge", charge, "charge")
        refunds = [r for r in self._refunds.values() if charge is None or r.charge == charge]
        return sorted(refunds, key=lambda r: (r.created, r.id), reverse=True)

    def get_refund(self, id: str) -> Refund:
        """``GET /v1/refunds/{id}``."""
        refund = self._refunds.get(id)
        if refund is None:
            raise _missing("refund", id, "id")
        return refund

    def list_payouts(self) -> list[Payout]:
        """``GET /v1/payouts``: newest first."""
        return sorted(self._payouts.values(), key=lambda p: (p.created, p.id), reverse=True)

    def get_payout(self, id: str) -> Payout:
        """``GET /v1/payouts/{id}``."""
        payout = self._payouts.get(id)
        if payout is None:
            raise _missing("payout", id, "id")
        return payout

    def get_balance(self) -> Balance:
        """``GET /v1/balance``: the available balance in every currency the account has
        used (``usd`` alone, at 0, before any)."""
        currencies = sorted({*self._opening, *(c.currency for c in self._charges.values()),
                             *(p.currency for p in self._payouts.values())}) or ["usd"]
        return Balance(available=[BalanceAmount(amount=self.available(c), currency=c)
                                  for c in currencies])

    def available(self, currency: str) -> int:
        """The available balance in ``currency``: the opening balance, plus succeeded charges
        less their refunds, less payouts not failed or canceled."""
        charged = sum(c.amount - c.amount_refunded for c in self._charges.values()
                      if c.status == "succeeded" and c.currency == currency)
        paid = sum(p.amount for p in self._payouts.values()
                   if p.currency == currency and p.status not in ("failed", "canceled"))
        return self._opening.get(currency, 0) + charged - paid

    # -- writes --------------------------------------------------------------------------

    def create_refund(self, charge: str, amount: int | None = None,
                      reason: str | None = None, metadata: Mapping[str, str] | None = None,
                      idempotency_key: str | None = None) -> Refund:
        """``POST /v1/refunds``: refund ``amount`` (default: what remains) of ``charge``.

        Raises :class:`PaymentsError` shaped like Stripe's: ``resource_missing`` (404, param
        ``charge``), ``amount_too_large``, ``charge_already_refunded``, ``charge_disputed``,
        ``charge_not_refundable`` (the charge failed),
        parameter errors (400), ``idempotency_error`` (400) and ``idempotency_key_in_use``
        (409, retryable).
        """
        params = {"charge": charge, "amount": amount, "reason": reason,
                  "metadata": _plain_metadata(metadata)}
        return self._keyed("create_refund", params, idempotency_key, RefundRequest,
                           lambda request: self._refund(request, idempotency_key))

    def create_customer(self, email: str | None = None, name: str | None = None,
                        metadata: Mapping[str, str] | None = None,
                        idempotency_key: str | None = None) -> Customer:
        """``POST /v1/customers``: a new customer (effect ``payments.customer``)."""
        params = {"email": email, "name": name, "metadata": _plain_metadata(metadata)}
        return self._keyed("create_customer", params, idempotency_key, CustomerRequest,
                           lambda request: self._customer(request, idempotency_key))

    def create_charge(self, amount: int, currency: str, customer: str | None = None,
                      description: str | None = None, source: str | None = None,
                      metadata: Mapping[str, str] | None = None,
                      idempotency_key: str | None = None) -> Charge:
        """``POST /v1/charges``: charge ``amount`` (effect ``payments.charge``, key
        ``charge:<id>``). A declined test token (``tok_chargeDeclined`` …) is a 402
        ``card_error``; an unknown customer a 404."""
        params = {"amount": amount, "currency": currency, "customer": customer,
                  "description": description, "source": source,
                  "metadata": _plain_metadata(metadata)}
        return self._keyed("create_charge", params, idempotency_key, ChargeRequest,
                           lambda request: self._charge(request, idempotency_key))

    def create_payout(self, amount: int, currency: str, description: str | None = None,
                      metadata: Mapping[str, str] | None = None,
                      idempotency_key: str | None = None) -> Payout:
        """``POST /v1/payouts``: pay ``amount`` out of the available balance (effect
        ``payments.payout``, key ``payout:<id>``); more than is available is
        ``balance_insufficient``."""
        params = {"amount": amount, "currency": currency, "description": description,
                  "metadata": _plain_metadata(metadata)}
        return self._keyed("create_payout", params, idempotency_key, PayoutRequest,
                           lambda request: self._payout(request, idempotency_key))

    def _keyed(self, operation: str, params: dict[str, Any], key: str | None,
               schema: type[_Request], execute: Callable[[_Request], _Object]) -> _Object:
        """Validate ``params`` and ``execute`` them under idempotency key ``key``."""
        if key is None:
            return execute(_validate(schema, params))
        signature = fingerprint(operation, params)
        try:
            saved = self._keys.lookup(key, signature)
        except KeyInFlight:
            raise PaymentsError(
                "invalid_request_error", "idempotency_key_in_use",
                f"There is currently another in-progress request using the idempotency key "
                f"{key!r}. Retry later with the same key.", None, 409) from None
        except KeyReused:
            raise PaymentsError(
                "idempotency_error", None,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than {key!r} if you "
                "meant to execute a different request.", None, 400) from None
        if saved is not None:
            try:
                outcome: _Object = saved.replay()
            except PaymentsError as exc:
                # Stripe replays a saved error too, with the same header; the face reads this.
                setattr(exc, "idempotent_replayed", True)  # noqa: B010 - not a declared field
                raise
            replayed: _Object = outcome.model_copy(update={"idempotent_replayed": True})
            return replayed
        request = _validate(schema, params)  # a request failing validation is not saved
        try:
            result = execute(request)
        except PaymentsError as exc:
            self._keys.save(key, signature, exc)
            raise
        self._keys.save(key, signature, result)
        return result

    def _refund(self, request: RefundRequest, idempotency_key: str | None) -> Refund:
        charge = self._charges.get(request.charge)
        if charge is None:
            raise _missing("charge", request.charge, "charge")
        if charge.disputed:
            raise PaymentsError("invalid_request_error", "charge_disputed",
                                f"Charge {charge.id} has been charged back; it cannot be "
                                "refunded.", "charge")
        if charge.status == "failed":
            raise PaymentsError("invalid_request_error", "charge_not_refundable",
                                f"Charge {charge.id} failed: no money moved, so there is "
                                "nothing to refund.", "charge")
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

    def _customer(self, request: CustomerRequest, idempotency_key: str | None) -> Customer:
        customer = Customer(id=self._customer_ids.new(), email=request.email, name=request.name,
                            metadata=request.metadata or {}, created=int(self.world.now()))
        self._customers[customer.id] = customer
        self.world.effect("payments", "customer", key=f"customer:{customer.id}",
                          customer_id=customer.id, email=customer.email, name=customer.name,
                          idempotency_key=idempotency_key)
        return customer

    def _charge(self, request: ChargeRequest, idempotency_key: str | None) -> Charge:
        if request.customer is not None and request.customer not in self._customers:
            raise _missing("customer", request.customer, "customer")
        declined = _DECLINED.get(request.source or "")
        if declined is not None:
            # A declined card moves no money: nothing is stored or recorded, and the error is
            # saved under the key like any outcome of an executed request.
            raise PaymentsError("card_error", declined[0], declined[1], "source", 402)
        charge = Charge(id=self._charge_ids.new(), amount=request.amount,
                        currency=request.currency.lower(), customer=request.customer,
                        description=request.description, metadata=request.metadata or {},
                        created=int(self.world.now()))
        self._charges[charge.id] = charge
        self.world.effect("payments", "charge", key=f"charge:{charge.id}", charge_id=charge.id,
                          amount=charge.amount, currency=charge.currency,
                          customer=charge.customer, idempotency_key=idempotency_key)
        return charge

    def _payout(self, request: PayoutRequest, idempotency_key: str | None) -> Payout:
        currency = request.currency.lower()
        available = self.available(currency)
        if request.amount > available:
            raise PaymentsError(
                "invalid_request_error", "balance_insufficient",
                f"You have insufficient funds in your Stripe account for this payout: the "
                f"available {currency} balance is {available}, the payout asks for "
                f"{request.amount}.", "amount")
        now = int(self.world.now())
        payout = Payout(id=self._payout_ids.new(), amount=request.amount, currency=currency,
                        description=request.description, metadata=request.metadata or {},
                        arrival_date=now, created=now)
        self._payouts[payout.id] = payout
        self.world.effect("payments", "payout", key=f"payout:{payout.id}", payout_id=payout.id,
                          amount=payout.amount, currency=currency,
                          idempotency_key=idempotency_key)
        return payout

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
        """Canonical state: customers, charges and refunds by id (``charges.ch_0001.refunded``),
        and payouts by id once there are any."""
        state: dict[str, Any] = {
            "customers": {i: c.model_dump(mode="json") for i, c in sorted(self._customers.items())},
            "charges": {i: c.model_dump(mode="json") for i, c in sorted(self._charges.items())},
            "refunds": {i: r.model_dump(mode="json", exclude={"idempotent_replayed"})
                        for i, r in sorted(self._refunds.items())},
        }
        if self._payouts:  # absent until used: the snapshots of existing worlds stay as they were
            state["payouts"] = {i: p.model_dump(mode="json")
                                for i, p in sorted(self._payouts.items())}
        return state


def _plain_metadata(metadata: Any) -> Any:
    return dict(metadata) if isinstance(metadata, Mapping) else metadata


def _validate(schema: type[_Request], params: Mapping[str, Any]) -> _Request:
    try:
        return schema.model_validate(params)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        param = str(loc[0]) if loc else next(iter(params), "")
        code: str | None = "parameter_missing"
        message = f"Missing required param: {param}."
        if error["type"] != "missing":
            code, message = _INVALID_PARAM.get(param, (None, f"Invalid {param}"))
        raise PaymentsError("invalid_request_error", code, message, param, 400) from None


def _missing(resource: str, id: str, param: str) -> PaymentsError:
    return PaymentsError("invalid_request_error", "resource_missing",
                         f"No such {resource}: {id!r}", param, 404)


def _with_created(seed: Mapping[str, Any], created: int) -> dict[str, Any]:
    """The seed with ``created`` defaulted on every object that lacks it."""
    out = dict(seed)
    for name in ("customers", "charges", "refunds", "payouts"):
        if isinstance(out.get(name), list):
            out[name] = [{"created": created, **o} if isinstance(o, Mapping) else o
                         for o in out[name]]
    if isinstance(out.get("payouts"), list):
        out["payouts"] = [{"arrival_date": o["created"], **o}
                          if isinstance(o, Mapping) and "created" in o else o
                          for o in out["payouts"]]
    if isinstance(out.get("refunds"), list):
        currency = {str(c.get("id")): c.get("currency", "usd") for c in out.get("charges", [])
                    if isinstance(c, Mapping)}
        out["refunds"] = [{"currency": currency.get(str(r.get("charge")), "usd"), **r}
                          if isinstance(r, Mapping) else r for r in out["refunds"]]
    return out
