"""``tether serve``: agents and durable sessions over HTTP (see :mod:`tether.serve.app`).

The face of the sessions layer: :mod:`~tether.serve.tenants` (API keys, tenants),
:mod:`~tether.serve.server` (the Runtime, Sessions and background turns), :mod:`~tether.serve.app`
(the Starlette app and its OpenAPI document), :mod:`~tether.serve.stream` (a run as server-sent
events), :mod:`~tether.serve.redact` (error messages as a tenant may read them) and
:mod:`~tether.serve.cli` (the command). It sits at the top with the CLI: it may
import sessions, runtime, store and policy; nothing below imports it. Starlette and uvicorn are
the ``serve`` extra: ``pip install 'tether[serve]'``.

Roles — what the CLI trusts and what the server enforces:

- ``tether approve/deny --by NAME --role ROLE`` is **self-asserted**: whoever can open the
  store can write any decision to it, so the CLI's ``--role`` is a check against mistakes
  (deciding in a role the policy does not ask for), not a security boundary. The store's
  file permissions (or database credentials) are the boundary there.
- ``tether serve`` takes roles **from the API key only** (:mod:`~tether.serve.tenants`): no
  endpoint reads a role, a principal or a tenant from a request body, a query or a header
  other than ``Authorization``, so a client cannot claim a role its key lacks (403). The
  decider is journaled as the key's ``principal@tenant``. The one route without a key is a
  webhook delivery, which the trigger's HMAC secret authenticates and which decides nothing.
"""

from __future__ import annotations

import importlib.util

from tether.errors import UsageError

__all__ = ["SERVE_HINT", "requires_serve"]

SERVE_HINT = "pip install 'tether[serve]'"


def requires_serve(*modules: str) -> None:
    """:class:`UsageError` naming the install command when Starlette (or ``modules``) is
    missing."""
    missing = [m for m in ("starlette", *modules) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"tether serve needs {', '.join(missing)}, which is not installed: "
                         f"{SERVE_HINT}")
