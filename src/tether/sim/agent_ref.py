"""Naming the agent under test: a short name, ``package.module:function``, or a file.

A scenario's ``agent:`` (and ``--agent`` / ``agent=`` everywhere an episode runs) names an
*agent factory*: a function of one argument, the :class:`~tether.sim.environment.Environment`,
returning the :class:`tether.Agent` to test. Four spellings:

* ``path/to/agent.yaml`` — a declarative agent (:mod:`tether.sessions.spec`), built with its
  variables' defaults; its tool factories receive the environment;

* ``package.module:function`` — imported like any module (the scenario's folder and the current
  directory are on the path, as for a script beside the package or ``python -m``);
* ``path/to/agent.py:function`` — a file, relative to the scenario's folder (or the current
  directory when there is no scenario file), loaded under a module name of its own;
* a short name — an entry point of the group ``tether.agents`` (tether registers ``refund`` and
  ``calendar``, its shipped reference agents; a project may register its own in its
  ``pyproject.toml``).

Both import paths are resolved by :mod:`tether.imports`, as an agent file's are. Anything that
cannot work is a :class:`~tether.errors.UsageError` naming the spec and what to do
(CLI exit 2): a module or file that does not exist or fails to import, a missing function, a
function whose signature does not take exactly one argument, a factory that returns something
other than a :class:`tether.Agent`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether import imports
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
    """Registered short names → ``module:function`` (the ``tether.agents`` entry points).

    Read once per import path: scanning every installed distribution's metadata costs
    milliseconds, more than a whole simulated episode. A change to ``sys.path`` reads again."""
    key = tuple(sys.path)
    found = _SHORT_NAMES.get(key)
    if found is None:
        found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
        _SHORT_NAMES.clear()
        _SHORT_NAMES[key] = found
    return dict(found)


_SHORT_NAMES: dict[tuple[str, ...], dict[str, str]] = {}


def load_agent_factory(spec: str | AgentFactory, base_dir: Path | None = None, *,
                       variables: Mapping[str, Any] | None = None) -> AgentFactory:
    """The factory ``spec`` names (a callable is checked and returned as it is).

    ``variables`` are the declared variables of a YAML agent (a scenario's ``variables:``),
    checked against the file now; any other agent has none to set, so giving some is a
    :class:`UsageError` rather than a silently ignored setting."""
    if variables and not (isinstance(spec, str) and _is_yaml(spec.strip())):
        given = ", ".join(sorted(variables))
        raise UsageError(f"agent {_describe(spec) if callable(spec) else spec!r}: variables "
                         f"({given}) are set, but only a YAML agent declares variables; "
                         "remove them or name an agent file")
    if callable(spec):
        _check_signature(spec, _describe(spec))
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"agent: expected a short name, package.module:function or "
                         f"path/to/file.py:function, found {spec!r}")
    text = spec.strip()
    if _is_yaml(text):
        return _yaml_factory(text, base_dir, variables)
    if ":" not in text:
        names = short_names()
        if text not in names:
            known = ", ".join(sorted(names)) or "none registered"
            raise UsageError(
                f"agent {text!r}: no agent of that short name (known: {known}); name a factory "
                "as package.module:function or path/to/file.py:function")
        text = names[text]
    factory = imports.import_object(text, base_dir, what=f"agent {spec!r}", noun="function",
                                    hint="a function name after the colon")
    attribute = text.rpartition(":")[2]
    if not callable(factory):
        raise UsageError(f"agent {spec!r}: {attribute!r} is a {type(factory).__name__}, not a "
                         "function of the simulated environment")
    _check_signature(factory, str(spec))
    return factory  # type: ignore[no-any-return]


def load_callable(spec: str, base_dir: Path | None, *, what: str) -> Callable[..., Any]:
    """The function ``spec`` names (``package.module:function`` or ``file.py:function``),
    for settings other than the agent (``what`` names the setting in errors)."""
    label = f"{what} {spec!r}"
    found = imports.import_object(spec, base_dir, what=label, noun="function")
    if not callable(found):
        raise UsageError(f"{label}: {spec.strip()} is a {type(found).__name__}, not a function; "
                         "name a function after the colon")
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
        if module.startswith(imports.FILE_MODULE_PREFIX) and path:
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
        return str(imports.resolve_file(text, base_dir))
    where, sep, attribute = text.rpartition(":")
    if sep and imports.is_file(where):
        return f"{imports.resolve_file(where, base_dir)}:{attribute}"
    return text


def _is_yaml(text: str) -> bool:
    return text.lower().endswith((".yaml", ".yml"))


def _yaml_factory(text: str, base_dir: Path | None,
                  variables: Mapping[str, Any] | None = None) -> AgentFactory:
    """A factory building the agent an agent YAML file declares with ``variables`` over its
    defaults (its tool factories receive the environment), validated now."""
    path = imports.resolve_file(text, base_dir)
    if not path.is_file():
        raise UsageError(f"agent {text!r}: no agent file {path}")
    definition = load_definition(path)
    definition.check()
    given = dict(variables or {})
    definition.variables(given)  # wrong names or types: refused before any episode runs

    def yaml_agent(env: Any) -> Agent:
        return definition.build(given, env=env)

    yaml_agent.__qualname__ = f"yaml_agent[{path.name}]"
    return yaml_agent


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
