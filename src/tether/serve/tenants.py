"""Tenants and their API keys: who a request is, from its ``Authorization: Bearer`` key.

A key belongs to one tenant and one principal and holds roles (``supervisor`` …): what the
server lets a request do follows from the key, never from what the request claims. Keys are
stored hashed (sha256 of a high-entropy random key: a stolen keys file does not give the keys),
in a YAML or JSON file::

    keys:
      - {tenant: acme, principal: grace, roles: [supervisor], hash: "sha256:9f2c…"}

Every session of a tenant is stored under ``{tenant}.{sid}`` (:func:`stored_id`), so its turn
runs are ``session:{tenant}.{sid}:turn:{n}``; a run id a request names is checked to belong to
the caller's tenant (:func:`owns_run`) before anything is read. Neither a tenant nor a session
id may contain the separator (or ``:``, which run ids use), so the mapping is one-to-one.

>>> ring = KeyRing()
>>> ring.add("tk_example-key-0123456789", tenant="acme", principal="grace", roles=["supervisor"])
>>> ring.identify("tk_example-key-0123456789").principal
'grace'
>>> stored_id("acme", "chat-1"), public_id("acme", "acme.chat-1")
('acme.chat-1', 'chat-1')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tether.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["KeyFile", "KeyHolder", "KeyRing", "key_hash", "owns_run", "public_id", "session_of_run",
           "stored_id", "tenant_of_run"]

#: Between the tenant and the session id in the stored session id.
SEPARATOR = "."
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TURN_RUN = re.compile(r"session:([A-Za-z0-9_-]{1,64})\.([A-Za-z0-9_-]{1,128}):turn:[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who a key speaks for: its tenant, its principal (journaled as the decider) and roles."""

    tenant: str
    principal: str
    roles: frozenset[str]

    @property
    def by(self) -> str:
        """How decisions this key makes are journaled: ``principal@tenant``."""
        return f"{self.principal}@{self.tenant}"


def key_hash(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def check_name(what: str, value: str, pattern: re.Pattern[str] = _NAME) -> str:
    """``value`` if it is a valid tenant/principal/role name; :class:`UsageError` if not."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise UsageError(f"{what} {value!r} must be 1 to {64 if pattern is _NAME else 128} "
                         "characters of letters, digits, '_' and '-'")
    return value


def stored_id(tenant: str, sid: str) -> str:
    """The session id stored for session ``sid`` of ``tenant``."""
    check_name("session id", sid, _SID)
    return f"{check_name('tenant', tenant)}{SEPARATOR}{sid}"


def public_id(tenant: str, stored: str) -> str:
    """The session id ``tenant`` knows for ``stored`` (inverse of :func:`stored_id`)."""
    prefix = f"{tenant}{SEPARATOR}"
    if not stored.startswith(prefix):
        raise UsageError(f"session {stored!r} is not of tenant {tenant!r}")
    return stored[len(prefix):]


def session_of_run(tenant: str, run_id: str) -> str | None:
    """The stored session id of turn run ``run_id`` if it is a turn of ``tenant``; else None."""
    match = _TURN_RUN.fullmatch(run_id)
    if match is None or match.group(1) != tenant:
        return None
    return f"{tenant}{SEPARATOR}{match.group(2)}"


def tenant_of_run(run_id: str) -> str | None:
    """The tenant of turn run ``run_id`` (``None`` when it is not a turn run's id)."""
    match = _TURN_RUN.fullmatch(run_id)
    return None if match is None else match.group(1)


def owns_run(tenant: str, run_id: str) -> bool:
    """Whether ``run_id`` is a turn run of one of ``tenant``'s sessions."""
    return session_of_run(tenant, run_id) is not None


class KeyRing:
    """The API keys a server accepts, by hash."""

    def __init__(self) -> None:
        self._by_hash: dict[str, KeyHolder] = {}

    def __len__(self) -> int:
        return len(self._by_hash)

    def add(self, key: str, *, tenant: str, principal: str, roles: Iterable[str] = ()) -> None:
        """Accept ``key`` (its hash is kept, not the key) for ``principal`` of ``tenant``."""
        if len(key) < 20:
            raise UsageError("an API key must be at least 20 characters of random text")
        self.add_hash(key_hash(key), tenant=tenant, principal=principal, roles=roles)

    def add_hash(self, hashed: str, *, tenant: str, principal: str,
                 roles: Iterable[str] = ()) -> None:
        """Accept the key whose :func:`key_hash` is ``hashed``."""
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", hashed):
            raise UsageError(f"key hash {hashed[:20]!r}…: expected 'sha256:' and 64 hex digits")
        if hashed in self._by_hash:
            raise UsageError("the same key is listed twice in the keys file")
        self._by_hash[hashed] = KeyHolder(
            check_name("tenant", tenant), check_name("principal", principal),
            frozenset(check_name("role", r) for r in roles))

    def identify(self, key: str) -> KeyHolder | None:
        """Who holds ``key``; ``None`` for a key this ring does not hold."""
        return self._by_hash.get(key_hash(key))

    def rows(self) -> list[dict[str, Any]]:
        """The ring as the keys file stores it."""
        return [{"tenant": p.tenant, "principal": p.principal, "roles": sorted(p.roles),
                 "hash": h} for h, p in self._by_hash.items()]

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """The keys of the YAML or JSON file at ``path`` (a missing file holds none)."""
        ring = cls()
        if not path.exists():
            return ring
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"keys file {path}: not YAML or JSON: {exc}") from exc
        rows = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise UsageError(f"keys file {path}: expected a mapping with a 'keys' list")
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("roles", []), list):
                raise UsageError(f"keys file {path}: keys[{i}] must be a mapping with tenant, "
                                 "principal, roles (a list) and hash")
            try:
                ring.add_hash(str(row.get("hash", "")), tenant=row.get("tenant", ""),
                              principal=row.get("principal", ""), roles=row.get("roles", []))
            except UsageError as exc:
                raise UsageError(f"keys file {path}: keys[{i}]: {exc}") from exc
        return ring

    def save(self, path: Path) -> None:
        """Write the ring to ``path`` (JSON for ``.json``, else YAML), readable by its owner
        only (hashes do not give the keys, but the file says who may do what)."""
        rows = {"keys": self.rows()}
        text = (json.dumps(rows, indent=2) if path.suffix == ".json"
                else yaml.safe_dump(rows, sort_keys=False))
        # Written beside and renamed over: a server reading the file as it changes sees the
        # old ring or the new one, never half of one.
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text)
        partial.chmod(0o600)
        os.replace(partial, path)


class KeyFile(KeyRing):
    """The keys of the file at ``path``, read again whenever it changes, so a key added with
    ``tether serve keys add`` (or removed from the file) counts from the next request without a
    restart. A file that stops loading keeps the keys it held before, and :attr:`problem` says
    why; the first read must succeed (a bad file is a UsageError when the server starts)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        #: Why the file's latest version was not taken (``None`` when it was).
        self.problem: str | None = None
        self._by_hash = KeyRing.load(path)._by_hash
        self._stamp = self._stamp_now()

    def identify(self, key: str) -> KeyHolder | None:
        self._refresh()
        return super().identify(key)

    def _stamp_now(self) -> tuple[int, int, int] | None:
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def _refresh(self) -> None:
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._by_hash = KeyRing.load(self.path)._by_hash
        except UsageError as exc:
            self.problem = str(exc)
            log.warning("%s; the keys read before stay in force", exc)
        else:
            self.problem = None
