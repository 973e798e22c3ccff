"""How the command-line faces print: one console factory, one way to report an error.

Every ``tether`` command prints through :func:`stdout` and :func:`stderr` and reports bad input
through :func:`fail`, so the conventions hold everywhere:

- **Width.** On a terminal, output follows its width (``COLUMNS`` is honoured, as rich reads
  it) and wraps there. Anywhere else (a pipe, a file, a test runner) nothing is wrapped: lines
  are printed whole so a replay command, a key or a run id can be copied as printed, and tables
  are laid out in :data:`PIPE_WIDTH` columns, which they fill only as far as their content
  needs.
- **Colour.** ``--no-color`` on the root command, or ``NO_COLOR`` set to anything in the
  environment (https://no-color.org), prints no ANSI escape at all, not even bold.
- **Errors.** An error always goes to stderr, never stdout, as ``error: MESSAGE``; when the
  running command was given ``--json`` it is one JSON object instead,
  ``{"error": {"type": ..., "message": ..., "exit_code": ...}}``. The message is printed as
  text, never read as rich markup, so ``pip install 'tether[postgres]'`` survives.
- **click's own errors** (an option out of range, an unknown command) follow the same rule
  through :class:`RootGroup`, the root command's class.

A command, then::

    try:
        found = load(path)
    except TetherError as exc:
        raise fail(exc) from exc  # `error: …` on stderr (JSON under --json), exit 2
    stdout().print(f"[bold]{escape(found.name)}[/bold] ok")  # our markup; user text escaped
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

# typer (0.29 on) runs on its own copy of click: its contexts and usage errors are that copy's,
# not the installed click's, so this module speaks to that copy.
from typer import _click as click
from typer._click.exceptions import BadParameter, NoArgsIsHelpError
from typer._click.globals import get_current_context
from typer.core import TyperGroup

__all__ = ["NO_COLOR_KEY", "PIPE_WIDTH", "RootGroup", "fail", "json_requested", "no_color",
           "plain", "stderr", "stdout", "warn"]

#: The width tables are laid out in when output is not a terminal: wide enough that no cell
#: of ours is folded, while plain lines are never wrapped at all (soft wrap).
PIPE_WIDTH = 1000
#: Where the root command's ``--no-color`` is kept, in click's context meta (shared with every
#: subcommand's context).
NO_COLOR_KEY = "tether.no_color"
_ARGS_KEY = "tether.args"
_JSON_FLAG = "--json"


def no_color() -> bool:
    """Whether colour is off: ``NO_COLOR`` set (non-empty) or ``--no-color`` given."""
    if os.environ.get("NO_COLOR", ""):
        return True
    ctx = get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(NO_COLOR_KEY))


def _console(*, to_stderr: bool, plain_colours: bool | None = None) -> Console:
    colourless = no_color() if plain_colours is None else plain_colours
    made = Console(stderr=to_stderr, highlight=False, emoji=False,
                   color_system=None if colourless else "auto")
    if not made.is_terminal:
        made.width = PIPE_WIDTH
        made.soft_wrap = True
    return made


def stdout() -> Console:
    """A console on stdout for results: the terminal's width on a terminal, unwrapped lines
    elsewhere; colour unless turned off."""
    return _console(to_stderr=False)


def stderr() -> Console:
    """A console on stderr, for progress, banners, warnings and errors."""
    return _console(to_stderr=True)


def plain(console: Console, text: str) -> None:
    """Print ``text`` as it is: no markup read in it, no highlighting."""
    console.print(text, markup=False, highlight=False)


def json_requested() -> bool:
    """Whether the command now running was given ``--json``."""
    ctx = get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return False


def fail(problem: BaseException | str, *, code: int = 2, kind: str | None = None,
         as_json: bool | None = None, **facts: Any) -> typer.Exit:
    """Report an error on stderr and return the :class:`typer.Exit` to raise.

    ``problem`` is an exception (its class names the error's type) or a message (type
    ``kind``, by default ``UsageError``). Under ``--json`` (or ``as_json=True``) the report is
    ``{"error": {"type", "message", "exit_code", **facts}}``; otherwise ``error: MESSAGE``.

        raise fail(exc) from exc
    """
    message = str(problem)
    if kind is None:
        kind = type(problem).__name__ if isinstance(problem, BaseException) else "UsageError"
    if json_requested() if as_json is None else as_json:
        body = {"type": kind, "message": message, "exit_code": code, **facts}
        print(json.dumps({"error": body}), file=sys.stderr, flush=True)
    else:
        stderr().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def warn(message: str, *, label: str = "warning") -> None:
    """One warning line on stderr (``label: message``); never on stdout."""
    stderr().print(f"[yellow]{escape(label)}:[/yellow] {escape(message)}")


class RootGroup(TyperGroup):
    """The root command's class: click's own usage errors (an option out of range, a missing
    argument, an unknown command) are reported as :func:`fail` reports ours, on stderr and as
    JSON when ``--json`` was among the arguments, with click's exit code (2)."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            raise _reported(exc, args) from None
        ctx.meta[_ARGS_KEY] = list(args)
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            raise _reported(exc, ctx.meta.get(_ARGS_KEY, ())) from None


def _reported(exc: click.ClickException, args: Sequence[str]) -> click.ClickException | \
        typer.Exit:
    """Print one of click's errors our way; the help shown for a bare group is left to
    click."""
    if isinstance(exc, NoArgsIsHelpError):
        return exc
    facts: dict[str, Any] = {}
    message = exc.format_message()
    if isinstance(exc, BadParameter) and exc.param is not None:
        facts["param"] = exc.param.opts[0] if exc.param.opts else exc.param.name
        found = _given(args, exc.param.opts)
        if found is not None and found not in message:  # typer's range errors omit it
            message += f" (found {found})"
    if _JSON_FLAG in args:
        return fail(message, code=exc.exit_code, kind=type(exc).__name__, as_json=True,
                    **facts)
    err = _console(to_stderr=True, plain_colours=no_color() or "--no-color" in args)
    ctx = getattr(exc, "ctx", None)
    if isinstance(ctx, click.Context):
        plain(err, ctx.get_usage())
        if ctx.command.get_help_option(ctx) is not None:
            plain(err, f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(exc.exit_code)


def _given(args: Sequence[str], opts: Sequence[str]) -> str | None:
    """The value given to an option (``--seeds 0`` or ``--seeds=0``), if it was given."""
    for at, arg in enumerate(args):
        for opt in opts:
            if opt.startswith("-") and arg == opt and at + 1 < len(args):
                return args[at + 1]
            if opt.startswith("-") and arg.startswith(f"{opt}="):
                return arg.removeprefix(f"{opt}=")
    return None
