"""An in-process tether serve of the support-chat example, for the endpoint tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tether.clock import Clock
from tether.serve.app import create_app
from tether.serve.server import Server
from tether.serve.sse import parse_frames
from tether.serve.tenants import KeyRing
from tether.sessions.loader import load_definition
from tether.sim.episode import environment_for
from tether.sim.scenario import load_scenario
from tether.store.sqlite import SQLiteStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_chat"
#: name -> (key, tenant, principal, roles)
KEYS: dict[str, tuple[str, str, str, list[str]]] = {
    "ada": ("tk_acme-customer-ada-0000000000", "acme", "ada", ["customer"]),
    "grace": ("tk_acme-supervisor-grace-000000", "acme", "grace", ["supervisor"]),
    "mallory": ("tk_other-customer-mallory-00000", "other", "mallory", ["supervisor"]),
    "zed": ("tk_zulutenant-zedprincipal-000000", "zulutenant", "zedprincipal", ["supervisor"]),
}


def ring() -> KeyRing:
    keys = KeyRing()
    for key, tenant, principal, roles in KEYS.values():
        keys.add(key, tenant=tenant, principal=principal, roles=roles)
    return keys


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


@dataclass
class Served:
    server: Server
    http: httpx.AsyncClient

    async def call(self, method: str, path: str, who: str | None = "ada",
                   body: Any = None, **kw: Any) -> httpx.Response:
        headers = auth(who) if who else {}
        headers.update(kw.pop("headers", {}))
        return await self.http.request(method, path, json=body, headers=headers, **kw)

    async def frames(self, method: str, path: str, who: str = "ada",
                     body: Any = None, **kw: Any) -> list[tuple[int | None, str, Any]]:
        """The SSE events of a streaming answer: (id, type, data)."""
        response = await self.call(method, path, who, body, **kw)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        return events_of(response.text)


def events_of(text: str) -> list[tuple[int | None, str, Any]]:
    return [(None if f.id is None else int(f.id), f.event, json.loads(f.data))
            for f in parse_frames([text])]


@asynccontextmanager
async def served(tmp: Path, clock: Clock | None = None,
                 agent: Path = EXAMPLE / "agent.yaml") -> AsyncIterator[Served]:
    """The support chat (world.yaml's payments in this process), or another ``agent`` file,
    behind the app, on SQLite."""
    env = environment_for(load_scenario(EXAMPLE / "world.yaml"), seed=1)
    server = Server(SQLiteStore(tmp / "runs.db"), [load_definition(agent)],
                    ring(), env=env, clock=clock, poll_s=0.05)
    transport = httpx.ASGITransport(app=create_app(server))
    async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
        try:
            yield Served(server, http)
        finally:
            await server.idle()
