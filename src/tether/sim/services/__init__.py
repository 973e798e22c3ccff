"""The simulated services an agent reaches as tools, each seeded from a scenario.

============  =================  ==========================================================
module        class              what it stands for
============  =================  ==========================================================
payments      ``Payments``       Stripe: customers, charges, refunds, idempotency keys
crm           ``CRM``            a CRM whose reads come from a lagging replica
email         ``Email``          an outbox (idempotent sends) and an inbox of seeded text
calendar      ``Calendar``       working hours, events, slot search, idempotent booking
kb            ``KnowledgeBase``  versioned documents, keyword search, obsolete policy
identity      ``Identity``       access tokens that expire on the virtual clock, refresh
============  =================  ==========================================================

Each is built as ``Service(world, seed_state)``, is plain and synchronous, records every change
of its state in the world's ledger with a business key, and offers ``snapshot()``: canonical
JSON-able state for final-state invariants and digests. Errors are in :mod:`.errors`.
"""

from tether.sim.services.calendar import Calendar
from tether.sim.services.crm import CRM
from tether.sim.services.email import Email
from tether.sim.services.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    PaymentsError,
    ServiceError,
    TokenExpired,
    TokenInvalid,
)
from tether.sim.services.identity import Identity
from tether.sim.services.kb import KnowledgeBase
from tether.sim.services.payments import Payments

__all__ = [
    "CRM",
    "AuthError",
    "Calendar",
    "Conflict",
    "Email",
    "Identity",
    "InvalidRequest",
    "KnowledgeBase",
    "NotFound",
    "Payments",
    "PaymentsError",
    "ServiceError",
    "TokenExpired",
    "TokenInvalid",
]
