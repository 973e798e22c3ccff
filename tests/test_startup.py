"""Start-up stays cheap: ``import tether`` loads nothing heavy, and a worker that restarts to
recover a run loads the runtime and the store, not the agent loop, the model adapters, the
policy language, YAML or the observability stack.

Each check runs in a fresh interpreter and reads its ``sys.modules``, so an eager import added
anywhere on the path makes it fail by name.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import tether

LAZY_PACKAGES = ["tether", "tether.agent", "tether.evals", "tether.models", "tether.policy",
                 "tether.sessions", "tether.sim", "tether.tracing"]

# What a restarted worker needs to recover a run (benchmarks/crash_recovery.py imports these).
RECOVERY_IMPORT = ("from tether import ProbePoint, RunContext, Runtime, SQLiteStore, ToolContext, "
                   "tool, workflow")

# Modules a recovering worker must not load: each is a layer above the runtime or a heavy
# optional dependency.
NOT_ON_THE_RECOVERY_PATH = [
    "tether.agent.agent",
    "tether.models.anthropic",
    "tether.models.base",  # a workflow without a model builds no model types
    "tether.models.openai",
    "tether.policy.policy",
    "tether.policy.spec",
    "tether.sessions.session",
    "tether.specs",
    "tether.tracing.otel",
    "anthropic",
    "httpx",
    "openai",
    "opentelemetry",
    "rich",
    "typer",
    "yaml",
]


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_tether_loads_no_submodule_and_no_pydantic() -> None:
    """``import tether`` is the package's ``__init__`` and its loader alone: every public name
    waits for use."""
    added = loaded_after("import tether") - loaded_after("pass")  # less what site loads anyway
    # not even typing: the flag is spelt locally, so checkers still read the imports
    assert sorted(added - {"__future__"}) == ["tether", "tether._lazy", "tether._version"]


def test_recovery_path_skips_the_upper_layers() -> None:
    """The names a recovering worker imports pull in the runtime and the store only."""
    loaded = loaded_after(RECOVERY_IMPORT)
    assert {"tether.runtime.runtime", "tether.store.sqlite"} <= loaded  # the probe really ran
    assert sorted(loaded & set(NOT_ON_THE_RECOVERY_PATH)) == []
    heavy_roots = sorted(m for m in loaded if m.split(".")[0] in NOT_ON_THE_RECOVERY_PATH)
    assert heavy_roots == []


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_lazy_table_matches_all(name: str) -> None:
    """Each lazy package maps exactly its ``__all__`` to the module that defines each name, and
    the object found there is the one the package hands out."""
    package = importlib.import_module(name)
    where: dict[str, str] = package._WHERE
    assert set(where) == set(package.__all__) - {"__version__"}
    for public, target in where.items():
        module, _, attribute = target.partition(":")  # "module:attribute" where it is renamed
        value = getattr(importlib.import_module(module), attribute or public)
        assert getattr(package, public) is value, public


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_star_import_and_unknown_names(name: str) -> None:
    """``from package import *`` binds every public name; an unknown name is an AttributeError
    naming the package (not an ImportError from a guessed submodule)."""
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)
    assert set(importlib.import_module(name).__all__) <= set(namespace)
    with pytest.raises(AttributeError, match=f"module '{name}' has no attribute 'no_such_name'"):
        getattr(importlib.import_module(name), "no_such_name")  # noqa: B009 - a name, not code


def test_submodules_reachable_as_attributes() -> None:
    """``tether.agent`` and ``tether.models.base`` work after a bare ``import tether``, as they
    did when the package imported them eagerly."""
    code = ("import tether\n"
            "assert tether.agent.Agent.__name__ == 'Agent'\n"
            "assert tether.models.base.Model.__name__ == 'Model'\n"
            "assert 'Runtime' in dir(tether)\n")
    loaded = loaded_after(code)
    assert "tether.agent.agent" in loaded


def test_submodule_does_not_shadow_an_exported_function() -> None:
    """``tether.policy.control_flow`` is both a submodule and an exported rule: loading the
    submodule (as ``tether.policy.rules`` does) leaves the package's name on the function."""
    code = ("import tether.policy.rules\n"
            "from tether.policy import control_flow\n"
            "import tether.policy as p\n"
            "assert callable(control_flow) and p.control_flow is control_flow, control_flow\n")
    assert "tether.policy.control_flow" in loaded_after(code)


def test_version_needs_no_import() -> None:
    """``tether.__version__`` is a plain attribute of the package, from its one place."""
    from tether._version import __version__

    assert tether.__dict__["__version__"] == __version__


def test_evals_compare_stays_the_function() -> None:
    """``tether.evals.compare`` is a submodule and an exported function: after the submodule
    loads, the package still hands out the function (the loader keeps exported names)."""
    code = ("import tether.evals.compare\n"
            "from tether.evals import compare\n"
            "assert callable(compare) and not isinstance(compare, type(tether)), compare\n")
    assert "tether.evals.compare" in loaded_after(code)
