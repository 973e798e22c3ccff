"""What each service operation returns, as a client declares it: the tools' result types.

A service's own objects (:class:`~tether.sim.services.payments.Charge`, …) are built for
seeding — defaults fill what a scenario leaves out, and numbers are coerced from strings. A
client reading a response must do the opposite, or a drifted schema slips through as a wrong
value: a renamed ``amount_refunded`` read back as its default ``0``, an ``amount`` retyped to
``"49.99"`` coerced to a number, a removed ``metadata`` read as "no items". So here:

* every field the API always sends is **required** — no defaults, a missing or renamed field
  fails (a nullable one, such as a charge's ``customer``, must still be present);
* scalars are **strict** — a number sent as a string, a string sent as a number, fail;
* **unknown fields are kept** — real APIs add fields over time, and an added field must not
  break a client.

Timestamps are ISO 8601 strings, as on the wire. A tool declaring one of these as its result
type (``tool(result=ChargeResponse)``) turns a drifted response into ``tool_result_invalid``
before the model sees it.

>>> from pydantic import ValidationError
>>> try:
...     RefundResponse.model_validate({"id": "re_1", "object": "refund", "amount": "49.99",
...                                    "charge": "ch_1", "currency": "usd", "status": "ok",
...                                    "reason": None, "created": 0, "metadata": {}})
... except ValidationError as exc:
...     print(exc.errors()[0]["loc"])
('amount',)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, RootModel, StrictBool, StrictInt, StrictStr

__all__ = ["ChargeResponse", "CrmCustomerResponse", "EventResponse", "NoteResponse",
           "RefundResponse", "Response", "SentMessageResponse", "SlotResponse", "SlotsResponse"]


class Response(BaseModel):
    """The base of every response model: strict where declared, unknown fields kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


# -- payments (Stripe's objects) ----------------------------------------------------------


class ChargeResponse(Response):
    """``GET /v1/charges/{id}``: a Stripe charge; amounts in the smallest currency unit."""

    id: StrictStr
    object: Literal["charge"]
    amount: StrictInt
    amount_refunded: StrictInt
    currency: StrictStr
    customer: StrictStr | None
    status: StrictStr
    refunded: StrictBool
    disputed: StrictBool
    description: StrictStr | None
    created: StrictInt
    metadata: dict[StrictStr, StrictStr]


class RefundResponse(Response):
    """``POST /v1/refunds``: a Stripe refund."""

    id: StrictStr
    object: Literal["refund"]
    amount: StrictInt
    charge: StrictStr
    currency: StrictStr
    status: StrictStr
    reason: StrictStr | None
    created: StrictInt
    metadata: dict[StrictStr, StrictStr]


# -- crm ----------------------------------------------------------------------------------


class NoteResponse(Response):
    """A note on a customer or a ticket (``POST /notes`` and inside a customer)."""

    id: StrictStr
    target: StrictStr
    text: StrictStr
    author: StrictStr
    created_at: StrictStr


class CrmCustomerResponse(Response):
    """``GET /customers/{id}``: a CRM customer with its notes."""

    id: StrictStr
    name: StrictStr
    email: StrictStr
    tier: StrictStr
    stripe_customer_id: StrictStr | None
    notes: list[NoteResponse]


# -- email --------------------------------------------------------------------------------


class SentMessageResponse(Response):
    """``POST /emails``: the message as sent."""

    id: StrictStr
    to: StrictStr
    subject: StrictStr
    body: StrictStr
    sent_at: StrictStr


# -- calendar -----------------------------------------------------------------------------


class SlotResponse(Response):
    """One free slot of ``GET /slots``."""

    start: StrictStr
    end: StrictStr


class SlotsResponse(RootModel[list[SlotResponse]]):
    """``GET /slots``: free slots common to every attendee, earliest first."""


class EventResponse(Response):
    """``POST /events``: the event as booked."""

    id: StrictStr
    title: StrictStr
    attendees: list[StrictStr]
    start: StrictStr
    end: StrictStr
    status: StrictStr
