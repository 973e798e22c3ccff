"""One SDK client per event loop, for the adapters.

An SDK's async client pools connections, and a pooled connection belongs to the event loop
that opened it: used from the next loop (``run_sync`` twice, two ``asyncio.run`` calls) it
fails with "Event loop is closed". So an adapter asks :class:`LoopClients` for its client on
every call and gets the one made for the running loop, made on first use there.

A client is closed inside its own loop when that loop shuts down: asyncio offers no "loop is
ending" callback, but ``asyncio.run`` (and every ``asyncio.Runner``) closes the loop's async
generators while the loop still runs, so a generator started in the loop and parked at a
``yield`` closes the client in its ``finally``. Without that, the SDK closes an abandoned
client from whatever loop runs later, and the old loop's connections fail to close there.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LoopClients"]

C = TypeVar("C")


class LoopClients(Generic[C]):
    """Clients made by ``make``, one per running event loop, closed with ``close`` when their
    loop shuts down. ``first``, when given, is used for the first loop that asks (a client
    built up front, e.g. to check the configuration at construction).
    """

    def __init__(self, make: Callable[[], C], close: Callable[[C], Awaitable[None]],
                 first: C | None = None) -> None:
        self._make = make
        self._close = close
        self._first = first
        # Keyed weakly: a loop that is gone takes its client (and closer) with it.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[C, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> C:
        """The client for the running loop."""
        loop = asyncio.get_running_loop()
        known = self._clients.get(loop)
        if known is not None:
            return known[0]
        if self._first is not None:
            client, self._first = self._first, None
        else:
            client = self._make()
        closer = self._close_at_shutdown(client)
        await closer.asend(None)  # started in this loop: the loop now finalizes it
        self._clients[loop] = (client, closer)
        return client

    async def _close_at_shutdown(self, client: C) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close(client)
