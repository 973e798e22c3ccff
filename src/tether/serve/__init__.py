"""``tether serve``: agents and durable sessions over HTTP (see :mod:`tether.serve.app`).

The face of the sessions layer: :mod:`~tether.serve.tenants` (API keys, tenants),
:mod:`~tether.serve.server` (the Runtime, Sessions and background turns), :mod:`~tether.serve.app`
(the Starlette app and its OpenAPI document), :mod:`~tether.serve.stream` (a run as server-sent
events) and :mod:`~tether.serve.cli` (the command). It sits at the top with the CLI: it may
import sessions, runtime, store and policy; nothing below imports it. Starlette and uvicorn are
the ``serve`` extra: ``pip install 'tether[serve]'``.
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
