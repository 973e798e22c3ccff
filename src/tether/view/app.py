"""The HTTP face of ``tether view``: a read-only Starlette app over a store and a campaign folder.

Routes (all ``GET``):

- ``/`` and ``/static/{name}``: the page (:mod:`tether.view` ``page/``: plain HTML, JavaScript
  and CSS, no build step, nothing fetched from elsewhere).
- ``/api/runs?status=&workflow=&queue=&offset=&limit=``: a page of runs, newest first.
- ``/api/runs/{run_id}``: one run, its trace and journal.
- ``/api/approvals``: the calls waiting for a decision, each with the command that decides it.
- ``/api/campaign``: the campaign's summary, headline and charts (404 without a folder).
- ``/campaign/report.html``: the campaign's own report, as written, sandboxed.
- ``/api/events``: server-sent events: ``runs`` with ``{"changed": [run ids], "more": bool}``
  whenever the store's index moves (a run is new, appends events or changes status); one
  :class:`~tether.view.watch.IndexWatch` polls the store for every open page.

Same stack as ``tether serve`` (Starlette, served by uvicorn; the ``serve`` extra). Errors are
``{"error": {"type", "message"}}`` with a 4xx status. Only the ``Host`` names of this machine
are answered unless the viewer was bound beyond it on purpose: a page elsewhere cannot read the
journals by pointing a name of its own at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tether.clock import Clock, SystemClock
from tether.errors import TetherError, UnknownExecution, UsageError
from tether.serve.sse import comment, format_frame
from tether.store.base import Store
from tether.view import data
from tether.view.data import Campaign
from tether.view.watch import IndexWatch

__all__ = ["LOOPBACK_NAMES", "create_app"]

#: The ``Host`` names a loopback viewer answers to.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
#: At most this many run ids in one ``runs`` event; past it the page reloads what it shows.
_MAX_CHANGED = 200

_PAGE_FILES = {"index.html": "text/html; charset=utf-8",
               "view.js": "text/javascript; charset=utf-8",
               "view.css": "text/css; charset=utf-8"}
# The page loads only its own files and talks only to this server. Inline style attributes are
# allowed for the campaign charts, whose figures carry their natural width in a style
# attribute (tether.evals.html_charts); scripts stay 'self' only, so markup that slipped
# through could still run nothing.
_PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
             "connect-src 'self'; img-src 'self' data:; frame-src 'self'; "
             "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
# The campaign's report is a file from disk: its own inline style, no script, no request
# anywhere, framed only by the viewer's page. Its frame-ancestors names the viewer's origin
# (from the Host the request was answered for): under `sandbox` the report's own origin is
# opaque, so 'self' would match no page at all and the frame would stay blank.
_REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
               "frame-ancestors {origin}; sandbox")
_REPORT_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Cache-Control": "no-cache"}

#: A viewer route's handler (private: ``tether.runtime.tools.Handler`` is the public one).
_ViewHandler = Callable[[Request], Awaitable[Response]]


def create_app(store: Store | None, *, store_url: str = "", campaign: Campaign | None = None,
               poll_s: float = 0.5, clock: Clock | None = None,
               allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES) -> Starlette:
    """The viewer over ``store`` (``None``: campaign only) and ``campaign`` (``None``: none).

    ``store_url`` is how the approvals' commands name the store; ``poll_s`` how often the
    event stream reads the store's index; ``allowed_hosts`` the ``Host`` names answered
    (``("*",)``: any, for a viewer bound beyond this machine on purpose)."""
    # Live updates follow real time: the viewer is a face, watching other processes work.
    watch = IndexWatch(store, clock if clock is not None else SystemClock(), poll_s) \
        if store is not None else None

    def need_store() -> Store:
        if store is None:
            raise HTTPException(404, "this viewer has no store: start it with --store URL")
        return store

    async def runs(request: Request) -> Response:
        query = request.query_params
        page = await _off_loop(
            data.runs_page, need_store(), status=query.get("status") or None,
            workflow=query.get("workflow") or None, queue=query.get("queue") or None,
            offset=_integer(query.get("offset"), "offset", 0),
            limit=_integer(query.get("limit"), "limit", data.PAGE_SIZE))
        return JSONResponse(page)

    async def run(request: Request) -> Response:
        return JSONResponse(await _off_loop(data.run_detail, need_store(),
                                            request.path_params["run_id"], store_url))

    async def approvals(request: Request) -> Response:
        return JSONResponse(await _off_loop(data.approvals_data, need_store(), store_url))

    async def about(request: Request) -> Response:
        return JSONResponse({"store": store_url if store is not None else None,
                             "campaign": str(campaign.folder) if campaign else None})

    async def campaign_summary(request: Request) -> Response:
        if campaign is None:
            raise HTTPException(404, "this viewer has no campaign: name its folder, "
                                "tether view --store URL DIR")
        return JSONResponse(await _off_loop(data.campaign_data, campaign))

    async def report(request: Request) -> Response:
        if campaign is None or campaign.report is None:
            raise HTTPException(404, "this campaign has no report.html")
        body = await anyio.Path(campaign.report).read_bytes()
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return Response(body, media_type="text/html; charset=utf-8",
                        headers={**_REPORT_HEADERS,
                                 "Content-Security-Policy": _REPORT_CSP.format(origin=origin)})

    async def events(request: Request) -> Response:
        need_store()
        assert watch is not None
        return StreamingResponse(_changes(watch),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    routes = [Route("/api/runs", _guarded(runs)), Route("/api/runs/{run_id:path}", _guarded(run)),
              Route("/api/approvals", _guarded(approvals)), Route("/api/about", _guarded(about)),
              Route("/api/campaign", _guarded(campaign_summary)),
              Route("/api/events", _guarded(events)),
              Route("/campaign/report.html", _guarded(report)), *_page_routes()]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error},
                    middleware=[Middleware(TrustedHostMiddleware,
                                           allowed_hosts=list(allowed_hosts))])
    app.state.watch = watch  # the command closes it at shutdown, ending the open streams
    return app


async def _changes(watch: IndexWatch) -> AsyncIterator[str]:
    """The event stream: ``hello`` once listening (the page then reloads what it shows, so a
    change made while it connected is not lost), then ``runs`` each time the index moves."""
    hello = True
    async for changed in watch.changes():
        if hello:
            hello = False
            yield format_frame("hello", json.dumps({"poll_s": watch.poll_s}))
            continue
        if not changed:
            yield comment("keepalive")
            continue
        yield format_frame("runs", json.dumps({"changed": changed[:_MAX_CHANGED],
                                               "more": len(changed) > _MAX_CHANGED}))


async def _off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a store read in a worker thread: the stores' calls block (SQLite, psycopg)."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def _guarded(handler: _ViewHandler) -> _ViewHandler:
    """``handler`` with tether's errors answered as 4xx JSON."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except UnknownExecution as exc:
            return _error(404, "not_found", str(exc))
        except UsageError as exc:
            return _error(400, "invalid_request", str(exc))
        except TetherError as exc:
            return _error(422, type(exc).__name__, str(exc))

    return endpoint


def _integer(value: str | None, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name} must be a whole number; found {value!r}") from None


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error",
                  str(exc.detail))


def _page_routes() -> list[Route]:
    """``GET /`` (the page) and ``GET /static/{name}`` (its script and style sheets)."""
    folder = files("tether.view") / "page"

    def serve(name: str) -> Response:
        if name == "charts.css":  # the campaign report's own chart styles, not a copy of them
            from tether.evals.html import CHART_CSS

            return Response(CHART_CSS, media_type="text/css; charset=utf-8",
                            headers=_PAGE_HEADERS)
        media = _PAGE_FILES.get(name)
        if media is None:
            raise HTTPException(404, f"no static file {name!r}")
        return Response((folder / name).read_bytes(), media_type=media, headers=_PAGE_HEADERS)

    async def index(request: Request) -> Response:
        return serve("index.html")

    async def static(request: Request) -> Response:
        return serve(request.path_params["name"])

    return [Route("/", index, methods=["GET"]), Route("/static/{name}", static, methods=["GET"])]
