"""What a caller is told: a server's error messages rendered for one tenant.

The layers below the face (sessions, runtime, store) word their errors for the operator: they
name the stored session id (``{tenant}.{sid}``), the agent file's path, the store's file or
URL. A caller of ``tether serve`` knows none of these, and must learn nothing of the server's
disk or of another tenant. Rather than reword each error where it is raised (and miss the next
one), every 4xx message the API answers with passes through :meth:`Redactor.render`, once, in
the app's error answer:

- the caller's stored session ids become the session id it knows (``acme.chat-1`` ->
  ``chat-1``); turn run ids (``session:acme.chat-1:turn:2``), which the API hands out, stay;
- another tenant's stored session ids become ``a session not of your tenant``, and every turn
  run id (or session stream id) not of the caller's tenant becomes ``an execution not of your
  tenant`` whether or not such a tenant exists (so an echo of what the caller sent tells it
  nothing about which tenants there are);
- the server's own paths (agent files, their folders, the store) become what they are for
  (``agent 'support-chat'``, ``the server's store``), and any other absolute path on this
  machine's disk becomes ``a server path``; a database URL becomes ``the server's store``.

>>> r = Redactor(paths={"/srv/agents/chat.yaml": "agent 'chat'"}, tenants=lambda: ["acme", "zed"])
>>> r.render("session 'acme.c': /srv/agents/chat.yaml: bad", "acme")
"session 'c': agent 'chat': bad"
>>> r.render("run 'session:acme.c:turn:1' waits; 'zed.x' too", "acme")
"run 'session:acme.c:turn:1' waits; 'a session not of your tenant' too"
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping

__all__ = ["Redactor"]

#: A stored session id of some tenant (group 2: tenant, 3: sid), maybe as a session's stream
#: (``session:`` before it) or a turn run id (``:turn:N`` after it). Not after a name character,
#: a dot or a slash, so a file name such as ``agent.yaml`` is no tenant ``agent``'s session.
_STORED = re.compile(r"(?<![\w./~-])(session:)?([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{1,128})"
                     r"(:turn:[0-9]+)?(?![\w-])")
#: An absolute POSIX path (not inside a URL or after a name).
_PATH = re.compile(r"(?<![\w.:/~-])(?:/[\w.@+~-]+)+/?")
#: A database URL, whose user, password and host are the server's.
_DSN = re.compile(r"\b(?:postgres|postgresql|sqlite|mysql)(?:\+\w+)?://[^\s'\"]+")

ANOTHER = "a session not of your tenant"
ANOTHER_RUN = "an execution not of your tenant"
A_PATH = "a server path"
STORE = "the server's store"


class Redactor:
    """Renders server messages for a tenant (see the module doc).

    ``paths``: the server's own paths and what to call them (the longest is replaced first);
    ``tenants``: every tenant the server knows (read at each render, so a key added to a
    reloaded keys file counts)."""

    def __init__(self, *, paths: Mapping[str, str],
                 tenants: Callable[[], Iterable[str]]) -> None:
        known: dict[str, str] = {}
        for path, label in paths.items():
            if path:
                known[path] = label
                known.setdefault(os.path.abspath(path), label)
        self._paths = sorted(known.items(), key=lambda item: -len(item[0]))
        self._tenants = tenants

    def render(self, text: str, tenant: str | None) -> str:
        """``text`` as the caller of ``tenant`` (``None``: not authenticated) may read it."""
        for path, label in self._paths:
            text = text.replace(path, label)
        text = _DSN.sub(_store_url, text)
        text = _PATH.sub(_server_path, text)
        tenants = set(self._tenants())

        def stored(match: re.Match[str]) -> str:
            prefix, owner, sid, turn = match.groups()
            if owner == tenant:
                # A turn run id is public (the API lists it); the stored id is not.
                return match.group(0) if prefix and turn else sid
            if prefix:
                return ANOTHER_RUN
            return ANOTHER if owner in tenants else match.group(0)

        return _STORED.sub(stored, text)


def _store_url(match: re.Match[str]) -> str:
    """The store's name for a database URL; the punctuation a sentence put after it stays."""
    url = match.group(0)
    return STORE + url[len(url.rstrip(".,;:)")):]


def _server_path(match: re.Match[str]) -> str:
    """A path whose first part exists at this machine's root is the server's; an API route
    (``/v1/sessions/{id}/restore``) or any other slashed text is left as written."""
    path = match.group(0)
    head = path.strip("/").split("/", 1)[0]
    if head and os.path.exists(os.path.join(os.sep, head)):
        return A_PATH
    return path
