"""The evaluation layer: campaigns over scenarios × suites × harnesses × seeds, graded.

The public names, imported on first use::

    from pathlib import Path
    from tether.evals import run_campaign, compare_harnesses

    results = run_campaign(Path("out"), scenarios=[Path("scenarios/refund.yaml")],
                           agent="myproject.agents:support_agent", seeds=20,
                           harnesses=["naive", "default"])
    for row in compare_harnesses(results, "naive", "default"):
        print(row.suite, row.pass_rate_a, row.pass_rate_b, row.p_value, row.verdict)

``run_campaign`` is what ``tether eval run`` does (resumable JSONL, ``results.json``, shrunk
repro files, ``report.html``); ``compare`` compares two campaigns' results, ``variant`` gives a
base scenario under one of the five suites for an agent, ``grade`` grades one episode.
"""

from __future__ import annotations

from tether._lazy import attach as _attach

TYPE_CHECKING = False  # typing's own flag, without importing typing (start-up time)
if TYPE_CHECKING:  # the real types for checkers and editors; imported lazily at run time
    from tether.evals.compare import compare, compare_harnesses, load_results
    from tether.evals.grading import grade
    from tether.evals.pytest_plugin import TetherSim
    from tether.evals.run import run_full_campaign as run_campaign
    from tether.evals.suites import SUITES, variant

__all__ = ["SUITES", "TetherSim", "compare", "compare_harnesses", "grade", "load_results",
           "run_campaign", "variant"]

# Which module defines each public name ("module:attribute" where the module spells it otherwise).
_WHERE = {
    "SUITES": "tether.evals.suites",
    "TetherSim": "tether.evals.pytest_plugin",
    "compare": "tether.evals.compare",
    "compare_harnesses": "tether.evals.compare",
    "grade": "tether.evals.grading",
    "load_results": "tether.evals.compare",
    "run_campaign": "tether.evals.run:run_full_campaign",
    "variant": "tether.evals.suites",
}

if not TYPE_CHECKING:  # hidden from checkers, so a misspelt name stays an error there
    __getattr__, __dir__ = _attach(__name__, _WHERE, __all__)
