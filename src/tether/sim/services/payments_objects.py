"""The objects of the payments service, on Stripe's: customers, charges, refunds, payouts, and
the parameters of the requests that create them.

Objects are frozen pydantic models whose JSON is what Stripe's API sends (amounts in the
currency's smallest unit, ``created`` as a Unix time). A replayed response — a request repeated
with an idempotency key already used — carries ``idempotent_replayed=True`` (Stripe sends it as
the ``Idempotent-Replayed`` header): a refund always shows the flag, as it did first; customers,
charges and payouts show it only when it is set, so their JSON is Stripe's otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    computed_field,
    model_validator,
)

from tether.specs import StrictNumbers

__all__ = ["Balance", "BalanceAmount", "Charge", "ChargeRequest", "Customer", "CustomerRequest",
           "Payout", "PayoutRequest", "Refund", "RefundReason", "RefundRequest"]

RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]

#: A three-letter ISO currency code, as Stripe accepts it (``usd``, ``EUR``).
CURRENCY_PATTERN = r"^[A-Za-z]{3}$"


class _Replayable(BaseModel):
    """An object whose ``idempotent_replayed`` flag appears in its JSON only when set."""

    idempotent_replayed: bool = Field(default=False, exclude_if=lambda flag: not flag)


class Customer(StrictNumbers, _Replayable):
    """A Stripe customer (``cus_…``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    object: Literal["customer"] = "customer"
    email: str | None = None
    name: str | None = None
    created: int
    metadata: dict[str, str] = Field(default_factory=dict)


class Charge(StrictNumbers, _Replayable):
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


class Payout(StrictNumbers, _Replayable):
    """A Stripe payout (``po_…``): money sent from the available balance to the bank."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    object: Literal["payout"] = "payout"
    amount: int = Field(gt=0)
    currency: str = "usd"
    status: Literal["paid", "pending", "in_transit", "canceled", "failed"] = "paid"
    method: Literal["standard", "instant"] = "standard"
    arrival_date: int
    description: str | None = None
    created: int
    metadata: dict[str, str] = Field(default_factory=dict)


class BalanceAmount(StrictNumbers, BaseModel):
    """An amount of one currency in a balance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int
    currency: str


class Balance(StrictNumbers, BaseModel):
    """The account's balance (``GET /v1/balance``): what payouts may draw on, per currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    object: Literal["balance"] = "balance"
    available: list[BalanceAmount]
    pending: list[BalanceAmount] = Field(default_factory=list)
    livemode: bool = False


class RefundRequest(BaseModel):
    """The parameters of ``POST /v1/refunds`` (a tool can use this as its argument schema)."""

    model_config = ConfigDict(extra="forbid")

    charge: str = Field(min_length=1)
    amount: int | None = Field(default=None, gt=0)
    reason: RefundReason | None = None
    metadata: dict[str, str] | None = None


class CustomerRequest(BaseModel):
    """The parameters of ``POST /v1/customers``."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=512)
    name: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = None


class ChargeRequest(BaseModel):
    """The parameters of ``POST /v1/charges``; ``source`` may name one of Stripe's test
    tokens (``tok_visa``, or ``tok_chargeDeclined`` … for a declined card)."""

    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    customer: str | None = Field(default=None, min_length=1)
    description: str | None = None
    source: str | None = Field(default=None, min_length=1)
    metadata: dict[str, str] | None = None


class PayoutRequest(BaseModel):
    """The parameters of ``POST /v1/payouts``."""

    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0)
    currency: str = Field(pattern=CURRENCY_PATTERN)
    description: str | None = None
    metadata: dict[str, str] | None = None
