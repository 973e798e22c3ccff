"""``tether serve``: agent files behind the HTTP API, and ``tether serve keys add``.

``tether serve AGENT.yaml… --store URL --keys FILE [--host 127.0.0.1 --port 8000]`` serves
the agents' sessions until SIGINT/SIGTERM. It prints ``serving http://HOST:PORT`` once it
listens (``--port 0``: a free port, printed). Binding anything but a loopback address prints a
loud banner: the API is then reachable from other machines, guarded only by its keys.

The agents' tool factories receive an environment: ``--world FILE --seed N`` builds the
simulated world of a scenario file (its services, e.g. ``env.client("payments")``), as
``tether sim run`` would; without it they receive none.

``tether serve keys add --tenant T --principal P --role R --keys FILE`` makes a new API key,
stores its hash in FILE and prints the key, once: it is not kept anywhere else.
"""

from __future__ import annotations

import json
import secrets
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from tether.errors import TetherError, UsageError
from tether.serve.tenants import KeyFile, KeyRing
from tether.terminal import fail, plain, stderr

__all__ = ["default_owner", "serve_app"]


class _RunByDefault(TyperGroup):
    """``tether serve AGENT.yaml …`` is ``tether serve run AGENT.yaml …``; ``keys`` is the
    only other subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


serve_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                        help="Serve agent files' sessions over HTTP (tether serve AGENT.yaml …).")
keys_app = typer.Typer(no_args_is_help=True, help="Manage the API keys of a keys file.")
serve_app.add_typer(keys_app, name="keys")


def _fail(exc: TetherError) -> typer.Exit:
    return fail(exc)


@keys_app.command("add")
def keys_add(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for.")],
    principal: Annotated[str, typer.Option("--principal", help="Who holds the key "
                                           "(journaled as the decider of approvals).")],
    keys: Annotated[Path, typer.Option("--keys", help="The keys file (YAML, or JSON if .json; "
                                       "created if missing).")],
    role: Annotated[list[str] | None, typer.Option(
        "--role", help="A role the key holds (repeatable), e.g. supervisor.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print {"key", "tenant", "principal", "roles", "keys"}.')] = False,
) -> None:
    """Make a new API key, store its hash, print the key (once)."""
    # Keys come from the operating system's CSPRNG: they are secrets, not simulation inputs.
    key = "tk_" + secrets.token_urlsafe(32)
    try:
        ring = KeyRing.load(keys)
        ring.add(key, tenant=tenant, principal=principal, roles=role or [])
        ring.save(keys)
    except TetherError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps({"key": key, "tenant": tenant, "principal": principal,
                          "roles": role or [], "keys": str(keys)}), flush=True)
        return
    plain(stderr(), f"added a key for {principal}@{tenant} (roles: "
                    f"{', '.join(role or []) or 'none'}) to {keys}; it is shown once:")
    print(key, flush=True)


@serve_app.command("run")
def serve(
    agents: Annotated[list[Path], typer.Argument(help="The agent files to serve.")],
    store: Annotated[str, typer.Option("--store", help="Store URL or SQLite file.")],
    keys: Annotated[Path, typer.Option("--keys", help="The keys file (tether serve keys "
                                       "add).")],
    host: Annotated[str, typer.Option("--host", help="Address to bind (default loopback).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port (0: a free one, printed).")] = 8000,
    world: Annotated[Path | None, typer.Option(
        "--world", help="A scenario file whose simulated world the tool factories get.")]
    = None,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**63 - 1,
                                      help="The simulated world's seed, 0 <= seed < 2**63.")]
    = 0,
    owner: Annotated[str | None, typer.Option(
        "--owner", help="This server's worker name in run leases (default "
                        "tether-serve@HOSTNAME/HOST:PORT, the address it listens on): a "
                        "server restarted under the same name takes its unfinished turns back "
                        "at once. Servers sharing a store must have different names.")]
    = None,
) -> None:
    """Serve the agents' sessions over HTTP until SIGINT or SIGTERM."""
    try:
        app, sock = _build(agents, store, keys, host, port, world, seed, owner)
    except TetherError as exc:
        raise _fail(exc) from exc
    import uvicorn

    from tether.sim.wire import serve as served

    if not served.is_loopback(host):
        stderr().print(
            f"[bold red]WARNING: tether serve is bound to {escape(host)}, beyond this machine: "
            "anyone who can reach it and holds a key can run these agents and their tools. "
            "Put TLS in front of it, or use --host 127.0.0.1 unless you mean it.[/bold red]")
    bound = sock.getsockname()
    print(f"serving http://{host}:{bound[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])


def default_owner(host: str, port: int) -> str:
    """The worker name of a server listening on ``host:port`` of this machine.

    One name per listening address: two servers on one machine sharing a store listen on
    two addresses, so neither takes the other's live turns for its own, while a server
    restarted on its address takes back at once the turns it left (their leases are its)."""
    return f"tether-serve@{socket.gethostname()}/{host.strip('[]')}:{port}"


def _build(agents: list[Path], store_url: str, keys: Path, host: str, port: int,
           world: Path | None, seed: int, owner: str | None) -> tuple[Any, Any]:
    from tether.serve import requires_serve

    requires_serve("uvicorn")
    from tether.serve.app import create_app
    from tether.serve.server import Server
    from tether.sessions.loader import load_definition
    from tether.sim.wire import serve as served
    from tether.store.open import open_store

    ring = KeyFile(keys)  # read again when the file changes: new keys need no restart
    if not len(ring):
        raise UsageError(f"keys file {keys} holds no key; add one with tether serve keys add "
                         f"--tenant T --principal P --keys {keys}")
    definitions = [load_definition(path) for path in agents]
    env = None
    if world is not None:
        from tether.sim.episode import environment_for
        from tether.sim.scenario import load_scenario

        env = environment_for(load_scenario(world), seed)
    # Listening first: the default worker name is the address bound (--port 0: the port
    # the system chose).
    sock = served.listen(host, port)
    try:
        server = Server(open_store(store_url), definitions, ring, env=env,
                        owner=owner or default_owner(host, sock.getsockname()[1]))
    except BaseException:
        sock.close()
        raise
    return create_app(server), sock
