"""``tether sim serve`` and ``tether sim verdict``: the world on loopback, judged on demand.

``tether sim serve SCENARIO --seed N`` builds the scenario's world for the seed, serves it on
127.0.0.1 (:mod:`~tether.sim.wire.asgi`), prints one line per address — ``payments
http://127.0.0.1:PORT/payments``, …, ``mcp``, ``openapi``, ``verdict`` — and runs until SIGINT
or SIGTERM; then it prints the verdict and exits with its status. ``tether sim verdict --url
URL`` asks a running server. The verdict (:func:`~tether.sim.wire.verdict.judge`) is the one
``tether sim run`` gives — the scenario's invariants and task checks (``success``) against the
ledger and the services' state as they are *now*, with the same headline words and exit
statuses: 0 when every invariant holds (``PASS``, ``NOT DONE``, ``UNCHECKED``), 1 when one is
violated (``FAIL``), 3 when the world cannot judge the agent (``INCONCLUSIVE``). The served
world has no run of its own to finish: asking for the verdict is taking the agent as finished.

**What determinism means here.** The world is the seed's: the same seeded state, the same
secrets and ids, and each fault decided by the same seeded draws on the same call numbers of
its target (``on_call: [2]`` is the second request to that operation, whoever sends it). What
is not the seed's is the agent: its requests, their order and their timing are its own, so two
sessions are the same only if the agent sent the same requests in the same order. Time is
virtual: the clock starts at the world's origin and moves only with latency faults (a delayed
request waits on it, costing no real time) and ``POST /_tether/clock/advance {"seconds": N}``
(to let a token expire, a key's lifetime pass, a stale window close) — never with wall time.

**What the verdict cannot judge** (faults that cannot reach a served agent, approvals): see
:mod:`~tether.sim.wire.verdict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import json
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from tether.errors import UsageError
from tether.sim.wire.verdict import (
    SERVED_AGENT,
    judge,
    result_of,
    unfired_faults,
    unreachable_faults,
    verdict_data,
)

if TYPE_CHECKING:
    from tether.sim.environment import Environment

__all__ = [
    "SERVED_AGENT",
    "VERDICT_PATH",
    "StopSignals",
    "addresses",
    "fetch_verdict",
    "is_loopback",
    "judge",
    "listen",
    "result_of",
    "root_of",
    "run",
    "unfired_faults",
    "unreachable_faults",
    "verdict_data",
]

#: Where a served world answers with its verdict.
VERDICT_PATH = "/_tether/verdict"
SERVE_HINT = "pip install 'tether[serve]'"


def fetch_verdict(url: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
    """Ask the world served at ``url`` (its root, or its verdict URL) for its verdict."""
    expected = "expected the address tether sim serve printed, e.g. http://127.0.0.1:8765"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it (a port that is not 0-65535 raises)
    except ValueError as exc:
        raise UsageError(f"--url {url!r}: {expected} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r}: {expected}")
    path = parts.path.rstrip("/")
    if not path.endswith(VERDICT_PATH):
        path += VERDICT_PATH
    target = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as answer:
            data = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        hint = "" if exc.code >= 500 else (
            "; give the root tether sim serve printed (http://HOST:PORT) or its verdict URL")
        raise UsageError(f"{target} answered HTTP {exc.code}: {_said(exc)}{hint}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach {target}: {reason}; is tether sim serve running "
                         "there?") from exc
    except http.client.HTTPException as exc:
        # Something answered that does not speak HTTP, or broke off its answer.
        raise UsageError(f"{target} did not answer HTTP ({type(exc).__name__}: {exc}); is "
                         "it a tether sim serve address?") from exc
    except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser
        raise UsageError(f"{target} did not answer JSON; is it a tether sim serve "
                         "address?") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{target} did not answer a verdict object")
    return data


def _said(answer: urllib.error.HTTPError) -> str:
    """What a refusing server said: a served world's error message, else a hint."""
    try:
        message = json.loads(answer.read())["error"]["message"]
    except (ValueError, RecursionError, KeyError, TypeError, OSError,
            http.client.HTTPException):
        return "is it a tether sim serve address?"
    return str(message)


# -- serving ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one). Connections made before the
    server runs wait in its backlog, so the printed addresses work at once."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(f"cannot open a socket for {host}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except socket.gaierror as exc:
        sock.close()
        raise UsageError(f"--host {host!r}: not an address of this machine ({exc.strerror}); "
                         "expected an IP address such as 127.0.0.1 or ::1") from exc
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                         "another --port (0 picks a free one)") from exc
    sock.set_inheritable(True)
    return sock


def root_of(sock: socket.socket) -> str:
    """The URL root of what ``sock`` serves (``http://127.0.0.1:PORT``)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def addresses(env: Environment, root: str) -> list[tuple[str, str]]:
    """What a served world prints: ``(name, url)`` per service, then MCP, OpenAPI, verdict."""
    lines = [(service, f"{root}/{service}") for service in env.gateway.faces]
    try:
        import tether.sim.wire.mcp_face  # noqa: F401
    except (ImportError, UsageError):
        lines.append(("mcp", "unavailable: pip install 'tether[mcp]'"))
    else:
        lines.append(("mcp", f"{root}/mcp"))
    lines += [("openapi", f"{root}/openapi.json"), ("verdict", f"{root}{VERDICT_PATH}")]
    return lines


def run(env: Environment, sock: socket.socket, stops: StopSignals) -> None:
    """Serve ``env`` on ``sock`` until ``stops`` sees SIGINT or SIGTERM (then return; the
    caller judges)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise UsageError(f"tether sim serve needs uvicorn: {SERVE_HINT}") from exc
    from tether.sim.wire.asgi import asgi_app, dropping_protocol

    env.gateway.root = root_of(sock)
    config = uvicorn.Config(asgi_app(env), http=dropping_protocol(), lifespan="on",
                            log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # ``stops`` has held the signals since the addresses were printed; uvicorn's own
            # handling would re-raise them after shutdown and end the process unjudged.
            yield

    server = Server(config)
    stops.server = server
    asyncio.run(server.serve(sockets=[sock]))


class StopSignals:
    """SIGINT and SIGTERM, caught from the moment a served world's addresses are printed: a
    signal stops the server (or keeps it from serving, if it comes before it started) so the
    verdict can be printed. A second SIGINT stops it without waiting for open connections.

    >>> with StopSignals() as stops:           # doctest: +SKIP
    ...     run(env, sock, stops)
    """

    def __init__(self) -> None:
        self.requested = False
        self._server: Any = None
        self._originals: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._originals[sig] = signal.signal(sig, self._stop)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._originals.items():
            signal.signal(sig, handler)

    @property
    def server(self) -> Any:
        """The uvicorn server to stop (set by :func:`run`)."""
        return self._server

    @server.setter
    def server(self, server: Any) -> None:
        self._server = server
        if self.requested:
            server.should_exit = True  # asked to stop before it served: start, then stop

    def _stop(self, sig: int, frame: Any) -> None:
        if self._server is not None:
            if self._server.should_exit and sig == signal.SIGINT:
                self._server.force_exit = True
            self._server.should_exit = True
        self.requested = True
