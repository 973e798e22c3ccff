"""``tether view``: serve the viewer over a store and/or a campaign folder until Ctrl-C.

``tether view --store URL [DIR] [--host 127.0.0.1] [--port 0] [--open]`` prints
``viewing http://HOST:PORT`` once it listens (``--port 0``, the default: a free port) and opens
a browser only with ``--open``. It binds loopback only; another address is refused unless
``--allow-remote`` says so, since the viewer has no login and shows every journal in the store.

Bad input (a store that does not exist, a folder that is not a campaign, a non-loopback host
without ``--allow-remote``, the ``serve`` extra missing) is one ``error:`` line on stderr and
exit 2.
"""

from __future__ import annotations

import socket
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tether.errors import TetherError, UsageError
from tether.serve import SERVE_HINT
from tether.store.base import Store
from tether.terminal import fail, plain, stdout, warn
from tether.view.data import Campaign, load_campaign

if TYPE_CHECKING:
    from types import FrameType

    from starlette.applications import Starlette

    from tether.view.watch import IndexWatch

__all__ = ["view"]


def view(
    campaign: Annotated[Path | None, typer.Argument(
        metavar="DIR", help="A campaign folder (written by tether eval run --out or tether "
        "demo --out) whose results and charts to show.")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", envvar="TETHER_STORE", help="The store whose runs and approvals to show: "
        "a SQLite file or postgresql://… (must exist).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback unless "
                                      "--allow-remote).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port (0: a free one, printed).")] = 0,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the viewer in the default browser.")] = False,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="Allow a --host beyond this machine (the viewer has no login: "
        "anyone who reaches it reads every journal).")] = False,
    poll_s: Annotated[float, typer.Option(
        "--poll", min=0.05, help="Seconds between reads of the store for live updates.")] = 0.5,
) -> None:
    """Browse runs, their timelines, waiting approvals and a campaign's results in a browser."""
    try:
        app, sock, opened = _build(campaign, store, host, port, allow_remote, poll_s)
    except TetherError as exc:
        raise fail(exc) from exc
    import uvicorn

    address = sock.getsockname()
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    url = f"http://{shown}:{address[1]}/"
    if allow_remote and host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        warn(f"tether view is bound to {host}, beyond this machine, without a login: anyone "
             "who can reach it reads every run in the store")
    plain(stdout(), f"viewing {url}")
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    watch: IndexWatch | None = app.state.watch

    class Server(uvicorn.Server):
        """Ends the pages' event streams on Ctrl-C or SIGTERM, so shutting down waits for no
        open page (uvicorn would otherwise cancel them after its grace period, noisily)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if watch is not None:
                watch.close()
            super().handle_exit(sig, frame)

    try:
        Server(config).run(sockets=[sock])
    finally:
        if opened is not None:
            opened.close()


def _build(folder: Path | None, store_url: str | None, host: str, port: int,
           allow_remote: bool, poll_s: float) -> tuple[Starlette, socket.socket, Store | None]:
    missing = _missing_extra()
    if missing:
        raise UsageError(f"tether view needs {', '.join(missing)}, which is not installed: "
                         f"{SERVE_HINT}")
    from tether.sim.wire import serve as served
    from tether.store.open import open_store
    from tether.view.app import LOOPBACK_NAMES, create_app

    if not served.is_loopback(host) and not allow_remote:
        raise UsageError(f"--host {host} is beyond this machine and the viewer has no login; "
                         "use --host 127.0.0.1, or add --allow-remote if everyone who can reach "
                         f"{host} may read every run in the store")
    if store_url is None and folder is None:
        raise UsageError("nothing to view: name a store with --store URL (or TETHER_STORE) "
                         "and/or a campaign folder DIR")
    loaded: Campaign | None = load_campaign(folder) if folder is not None else None
    if store_url == "memory:":
        raise UsageError("--store memory: is a new, empty store; name the store the runs are "
                         "in (a SQLite file or postgresql://…)")
    opened = None
    if store_url is not None:
        try:
            opened = open_store(store_url, create=False)
        except UsageError as exc:
            raise UsageError(f"{exc}; name an existing store with --store PATH or "
                             "TETHER_STORE") from exc
    try:
        sock = served.listen(host, port)
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    names = LOOPBACK_NAMES if served.is_loopback(host) else ("*",)
    app = create_app(opened, store_url=store_url or "", campaign=loaded, poll_s=poll_s,
                     allowed_hosts=names)
    return app, sock, opened


def _missing_extra() -> list[str]:
    """The ``serve`` extra's modules that cannot be imported."""
    missing = []
    for name in ("starlette", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing
