"""Naming the agent under test: a short name, ``package.module:function``, or a file.

A scenario's ``agent:`` (and ``--agent`` / ``agent=`` everywhere an episode runs) names an
*agent factory*: a function of one argument, the :class:`~tether.sim.environment.Environment`,
returning the :class:`tether.Agent` to test. Four spellings:

* ``path/to/agent.yaml`` — a declarative agent (:mod:`tether.sessions.spec`), built with its
  variables' defaults; its tool factories receive the environment;

* ``package.module:function`` — imported like any module (the current directory is on the path,
  as for ``python -m``);
* ``path/to/agent.py:function`` — a file, relative to the scenario's folder (or the current
  directory when there is no scenario file), loaded under a module name of its own;
* a short name — an entry point of the group ``tether.agents`` (tether registers ``refund`` and
  ``calendar``, its shipped reference agents; a project may register its own in its
  ``pyproject.toml``).

Anything that cannot work is a :class:`~tether.errors.UsageError` naming the spec and what to do
(CLI exit 2): a module or file that does not exist or fails to import, a missing function, a
function whose signature does not take exactly one argument, a factory that returns something
other than a :class:`tether.Agent`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.agent.agent import Agent
from tether.errors import UsageError
from tether.sessions.loader import load_definition

if TYPE_CHECKING:
    from tether.sim.foreign import Replier

__all__ = ["AgentFactory", "agent_spec_of", "build_agent", "load_agent_factory",
           "load_callable", "short_names"]

#: What a scenario's ``agent:`` names: a function of the environment returning the agent (a
#: :class:`tether.Agent`, or another framework's agent as a :class:`~tether.sim.foreign.Replier`).
AgentFactory = Callable[[Any], "Agent | Replier"]

GROUP = "tether.agents"


def short_names() -> dict[str, str]:
    """Registered short names → ``module:function`` (the ``tether.agents`` entry points)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_agent_factory(spec: str | AgentFactory, base_dir: Path | None = None) -> AgentFactory:
    """The factory ``spec`` names (a callable is checked and returned as it is)."""
    if callable(spec):
        _check_signature(spec, _describe(spec))
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"agent: expected a short name, package.module:function or "
                         f"path/to/file.py:function, found {spec!r}")
    text = spec.strip()
    if _is_yaml(text):
        return _yaml_factory(text, base_dir)
    if ":" not in text:
        names = short_names()
        if text not in names:
            known = ", ".join(sorted(names)) or "none registered"
            raise UsageError(
                f"agent {text!r}: no agent of that short name (known: {known}); name a factory "
                "as package.module:function or path/to/file.py:function")
        text = names[text]
    where, _, attribute = text.rpartition(":")
    if not where or not attribute.isidentifier():
        raise UsageError(f"agent {spec!r}: expected package.module:function or "
                         "path/to/file.py:function (a function name after the colon)")
    module = _module_of(where, base_dir, spec)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise UsageError(f"agent {spec!r}: {where} has no {attribute!r}")
    if not callable(factory):
        raise UsageError(f"agent {spec!r}: {attribute!r} is a {type(factory).__name__}, not a "
                         "function of the simulated environment")
    _check_signature(factory, str(spec))
    return factory  # type: ignore[no-any-return]


def load_callable(spec: str, base_dir: Path | None, *, what: str) -> Callable[..., Any]:
    """The function ``spec`` names (``package.module:function`` or ``file.py:function``),
    for settings other than the agent (``what`` names the setting in errors)."""
    where, sep, attribute = spec.strip().rpartition(":")
    if not sep or not where or not attribute.isidentifier():
        raise UsageError(f"{what} {spec!r}: expected package.module:function or "
                         "path/to/file.py:function")
    found = getattr(_module_of(where, base_dir, spec, what), attribute, None)
    if not callable(found):
        raise UsageError(f"{what} {spec!r}: {where} has no function {attribute!r}")
    return found  # type: ignore[no-any-return]


def build_agent(factory: AgentFactory, env: Any, spec: str) -> Agent:
    """Call the factory; refuse anything but a :class:`tether.Agent`."""
    try:
        built = factory(env)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"agent {spec}: the factory raised {type(exc).__name__}: {exc}") \
            from exc
    if inspect.isawaitable(built):
        close = getattr(built, "close", None)
        if close is not None:
            close()
        raise UsageError(f"agent {spec}: the factory is async; it must return the agent, "
                         "not a coroutine (make it a plain def)")
    if not isinstance(built, Agent):
        raise UsageError(f"agent {spec}: the factory returned {type(built).__name__}; expected "
                         "a tether.Agent built from the environment it was given")
    return built


def agent_spec_of(spec: str | AgentFactory, base_dir: Path | None = None) -> str:
    """A spec that names the same factory from anywhere: files absolute, callables by their
    module and name (what repro files and campaign records carry)."""
    if callable(spec):
        module, name = getattr(spec, "__module__", ""), getattr(spec, "__qualname__", "")
        path = getattr(sys.modules.get(module), "__file__", None)
        if module.startswith("tether_agent_file_") and path:
            return f"{path}:{name}"
        if not module or "<" in name or "." in name or module == "__main__":
            if path and module == "__main__" and "." not in name and "<" not in name:
                return f"{Path(path).resolve()}:{name}"
            raise UsageError(
                f"agent {_describe(spec)}: a repro file must name it, so define it at the top "
                "level of a module (package.module:function) or a file (file.py:function)")
        return f"{module}:{name}"
    text = spec.strip()
    if _is_yaml(text):
        return str(_resolve_file(text, base_dir))
    where, sep, attribute = text.rpartition(":")
    if sep and _is_file(where):
        return f"{_resolve_file(where, base_dir)}:{attribute}"
    return text


def _is_yaml(text: str) -> bool:
    return text.lower().endswith((".yaml", ".yml"))


def _yaml_factory(text: str, base_dir: Path | None) -> AgentFactory:
    """A factory building the agent an agent YAML file declares (its variables' defaults;
    its tool factories receive the environment), validated now."""
    path = _resolve_file(text, base_dir)
    if not path.is_file():
        raise UsageError(f"agent {text!r}: no agent file {path}")
    definition = load_definition(path)
    definition.check()

    def yaml_agent(env: Any) -> Agent:
        return definition.build(env=env)

    yaml_agent.__qualname__ = f"yaml_agent[{path.name}]"
    return yaml_agent


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def _resolve_file(where: str, base_dir: Path | None) -> Path:
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path.resolve()


def _module_of(where: str, base_dir: Path | None, spec: str | AgentFactory,
               what: str = "agent") -> Any:
    if _is_file(where):
        path = _resolve_file(where, base_dir)
        if not path.is_file():
            raise UsageError(f"{what} {spec!r}: no file {path}")
        name = "tether_agent_file_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UsageError(f"{what} {spec!r}: {path} is not a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        # Its siblings import as they would when run from its folder.
        folder = str(path.parent)
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        try:
            loader_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            # A script that exits at import (its argparse, say) is a file that cannot be an
            # agent module: said as such, and not left half-imported.
            del sys.modules[name]
            raise UsageError(f"{what} {spec!r}: importing {path} failed: "
                             f"{type(exc).__name__}: {exc}") from None
        return module
    cwd = str(Path.cwd())
    if "" not in sys.path and cwd not in sys.path:
        # As ``python -m`` would: a module of the project the command is run from imports.
        sys.path.append(cwd)
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        missing = exc.name or where
        raise UsageError(f"{what} {spec!r}: no module {missing!r} (is the package installed, or "
                         "the command run from the folder that holds it?)") from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(where, None)
        raise UsageError(f"{what} {spec!r}: importing {where} failed: "
                         f"{type(exc).__name__}: {exc}") from None


def _describe(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _check_signature(factory: Callable[..., Any], spec: str) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin or C callable: it will say so itself when called
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_other = [p for p in params if p.default is p.empty
                      and p.kind in (p.KEYWORD_ONLY,)]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    required = [p for p in positional if p.default is p.empty]
    takes_one = (len(required) <= 1 and (positional or variadic)) and not required_other
    if not takes_one or len(required) > 1:
        shown = f"({', '.join(p.name for p in params)})"
        raise UsageError(f"agent {spec}: the factory takes {shown}; it must take exactly one "
                         "argument, the simulated environment: def agent(env) -> tether.Agent")
