"""``tether sim serve`` and ``tether sim verdict``: the world on loopback, judged on demand.

``tether sim serve SCENARIO --seed N`` builds the scenario's world for the seed, serves it on
127.0.0.1 (:mod:`~tether.sim.wire.asgi`), prints one line per address — ``payments
http://127.0.0.1:PORT/payments``, …, ``mcp``, ``openapi``, ``verdict`` — and runs until SIGINT
or SIGTERM; then it prints the verdict and exits with its status. ``tether sim verdict --url
URL`` asks a running server. The verdict (:func:`judge`) is the one ``tether sim run`` gives —
the scenario's invariants and task checks (``success``) against the ledger and the services'
state as they are *now*, with the same headline words and exit statuses: 0 when every invariant
holds (``PASS``, ``NOT DONE``, ``UNCHECKED``), 1 when one is violated (``FAIL``), 3 when the
world cannot judge the agent (``INCONCLUSIVE``). The served world has no run of its own to
finish: asking for the verdict is taking the agent as finished.

**What determinism means here.** The world is the seed's: the same seeded state, the same
secrets and ids, and each fault decided by the same seeded draws on the same call numbers of
its target (``on_call: [2]`` is the second request to that operation, whoever sends it). What
is not the seed's is the agent: its requests, their order and their timing are its own, so two
sessions are the same only if the agent sent the same requests in the same order. Time is
virtual: the clock starts at the world's origin and moves only with latency faults (a delayed
request waits on it, costing no real time) and ``POST /_tether/clock/advance {"seconds": N}``
(to let a token expire, a key's lifetime pass, a stale window close) — never with wall time.

**Faults that cannot reach a served agent** — the model's (``rate_limit``,
``malformed_output``, ``context_overflow``, any target of ``model``), the simulated user's,
a worker ``crash`` (it cannot stop an agent in another process; its connection is dropped
instead) — make the verdict ``INCONCLUSIVE``: the scenario asked for them, and the session did
not test them. So do faults it can deliver when none of them fired (the agent never made the
calls they wait for), and a session no request of which reached an operation: there is no
agent to judge, so an invariant the seed's world breaks by itself (a listed refund missing) is
named in the reason, not counted as a ``FAIL``. Nor can the served world see approvals (none
can be asked for over the wire): an effect a ``never_without_approval`` invariant covers is
named among the reasons, not judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
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
from tether.sim.calls import ServiceCall
from tether.sim.faults import SERVICE_KINDS, WEBHOOK_KINDS, WEBHOOK_TARGET, Fault, Firing
from tether.sim.invariants import EpisodeFacts, Verdict, check_invariants

if TYPE_CHECKING:
    from tether.sim.environment import Environment
    from tether.sim.episode import EpisodeResult

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
#: The agent a served world's verdict names: whoever sent its requests.
SERVED_AGENT = "served (the agent that reached it over the wire)"
SERVE_HINT = "pip install 'tether[serve]'"


# -- the verdict -----------------------------------------------------------------------------


def judge(env: Environment) -> EpisodeResult:
    """The verdict on ``env``'s world as it is now: the scenario's invariants and task checks
    against the ledger and the services' state, judged as ``tether sim run`` judges."""
    from tether.sim.episode import EpisodeResult

    world, scenario = env.world, env.scenario
    snapshots = {name: service.snapshot() for name, service in world.services.items()}
    duration_s = world.now() - env.layer.started_at
    causes = {seq: call.tool for call in env.calls for seq in call.effects}
    facts = EpisodeFacts(ledger=world.ledger, snapshots=snapshots, approvals=(),
                         effect_causes=causes, duration_s=duration_s)
    record = json.dumps([c.as_data() for c in env.calls], sort_keys=True, default=str)
    verdicts = check_invariants(scenario.invariants, facts)
    inconclusive = unreachable_faults(env) + unfired_faults(env)
    # No approval can be asked for or granted over the wire: an effect under
    # never_without_approval says nothing of whether the agent would have sought one.
    unseen = [v for inv, v in zip(scenario.invariants, verdicts, strict=True)
              if inv.kind == "never_without_approval" and not v.holds]
    inconclusive += [f"{v.invariant}: {v.detail}; the served world has no way to ask for or "
                     "grant an approval, so it cannot judge this (run the agent in-process "
                     "with tether sim run and the scenario's approver to test it)"
                     for v in unseen]
    verdicts = [v for v in verdicts if v not in unseen]
    if not env.calls:
        # No agent reached the world: the invariants judge only the seed's world, so a
        # violation there (a listed refund missing) is no agent's, and no FAIL.
        broken = "; ".join(f"{v.invariant}: {v.detail}" for v in verdicts if not v.holds)
        inconclusive.insert(0, "no request reached an operation of the served world (none "
                            "was sent, or each was refused before reaching one: an unknown "
                            "path, a missing token, an invalid body), so there is no agent to "
                            "judge" + (f"; as the seed's world stands, {broken}" if broken
                                       else ""))
        verdicts = [v for v in verdicts if v.holds]
    return EpisodeResult(
        scenario=scenario.name, seed=env.seed, harness="served", status="completed",
        answer="", reason="", verdicts=verdicts,
        firings=list(env.layer.firings), crashes=0,
        journal_digest=hashlib.sha256(record.encode()).hexdigest(),
        ledger_digest=world.ledger.digest(), virtual_duration_s=duration_s, model_calls=0,
        tool_calls=len(env.calls), ledger=[e.as_data() for e in world.ledger],
        task_checks=check_invariants(scenario.success or env.expected, facts),
        agent=SERVED_AGENT, calls=list(env.calls), inconclusive=inconclusive)


def _wire_targets(env: Environment) -> list[str]:
    return [f"{name}.{operation}" for name in env.gateway.faces
            for operation in getattr(type(env.world.services[name]), "OPERATIONS", ())]


def _reachable(fault: Fault, wire: list[str]) -> bool:
    targets = [WEBHOOK_TARGET] if fault.kind in WEBHOOK_KINDS else []
    targets += wire if fault.kind in SERVICE_KINDS else []
    return fault.kind != "crash" and any(fnmatch.fnmatchcase(t, fault.target) for t in targets)


def unfired_faults(env: Environment) -> list[str]:
    """Why the session is inconclusive when the scenario's faults that can reach a served
    agent exist and none of them fired: the agent never made the calls they wait for, so
    nothing says how it meets them (as an evaluation counts an episode whose faults never
    reached the agent)."""
    wire = _wire_targets(env)
    deliverable = [f for f in env.scenario.fault_plan().faults if _reachable(f, wire)]
    fired = {firing.fault for firing in env.layer.firings}
    if not deliverable or any(f.label in fired for f in deliverable):
        return []
    labels = ", ".join(dict.fromkeys(f.label for f in deliverable))
    return [f"none of the scenario's faults fired ({labels}): the agent never made the calls "
            "they wait for, so this session did not test it against them"]


def unreachable_faults(env: Environment) -> list[str]:
    """Why each of the scenario's faults that cannot reach an agent served over the wire
    cannot (see the module docstring)."""
    wire = _wire_targets(env)
    reasons = []
    for fault in env.scenario.fault_plan().faults:
        where = f"fault {fault.label} ({fault.kind} on {fault.target})"
        if fault.kind == "crash":
            reasons.append(f"{where}: a crash cannot stop an agent in another process (its "
                           "connection was dropped instead); run the agent in-process with "
                           "tether sim run to test it")
            continue
        if not _reachable(fault, wire):
            reasons.append(f"{where}: it targets what the served world does not run (the "
                           "model, the simulated user, recorded tools), so this session "
                           "cannot test it")
    return reasons


def verdict_data(result: EpisodeResult) -> dict[str, Any]:
    """The verdict as JSON: :meth:`EpisodeResult.as_data` with its ``headline`` word."""
    return {**result.as_data(), "headline": result.headline}


def result_of(data: dict[str, Any]) -> EpisodeResult:
    """The :class:`EpisodeResult` a verdict's JSON (:func:`verdict_data`) describes."""
    from tether.sim.episode import EpisodeResult

    try:
        return EpisodeResult(
            scenario=str(data["scenario"]), seed=int(data["seed"]),
            harness=str(data["harness"]), status=str(data["status"]),
            answer=str(data.get("answer", "")), reason=str(data.get("reason", "")),
            verdicts=[Verdict(**v) for v in data["verdicts"]],
            firings=[Firing(f["fault"], f["kind"], f["target"], f["call"], f["at"])
                     for f in data["faults_fired"]],
            crashes=int(data.get("crashes", 0)), journal_digest=str(data["journal_digest"]),
            ledger_digest=str(data["ledger_digest"]),
            virtual_duration_s=float(data["virtual_duration_s"]),
            model_calls=int(data.get("model_calls", 0)),
            tool_calls=int(data.get("tool_calls", 0)), ledger=list(data["ledger"]),
            task_checks=[Verdict(**v) for v in data["task_checks"]],
            agent=str(data.get("agent", "")),
            calls=[ServiceCall(**{**c, "effects": tuple(c["effects"])})
                   for c in data.get("calls", [])],
            inconclusive=[str(r) for r in data.get("inconclusive", [])])
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the answer is not a tether verdict ({type(exc).__name__}: {exc}); "
                         "is the URL a tether sim serve address?") from exc


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
