"""The command-line options the faces share, each defined once.

``tether``, ``tether worker``, ``tether sim`` and ``tether session`` take ``--json`` and
``--store`` alike; each command names its parameter by one of these ``Annotated`` types so
the flag, its environment variable and its help read the same everywhere::

    from tether.cli_options import JsonOpt, StoreOpt

    def show(run_id: str, store: StoreOpt = "tether.db", as_json: JsonOpt = False) -> None: ...

Only typer is imported here, so a command group that takes these options loads no more than
it did when it defined them itself.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["MAX_SEEDS", "MAX_WORKERS", "JsonOpt", "SharedStoreOpt", "StoreOpt"]

#: The most seeds per cell a campaign takes (``tether eval run``, ``tether demo``): a larger
#: number is a typo, not a campaign (the jobs would not fit in memory).
MAX_SEEDS = 100_000
#: The most worker processes a campaign starts.
MAX_WORKERS = 1024

#: ``--json``: print one machine-readable document instead of the human table.
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

#: ``--store`` (or ``TETHER_STORE``): the store a command reads or writes in this process.
StoreOpt = Annotated[str, typer.Option("--store", envvar="TETHER_STORE",
                                       help="memory:, a SQLite file, or postgresql://…")]

#: ``--store`` of the worker commands: a store other processes share, so not ``memory:``
#: (a memory store lives and dies with one process; a queue in it would reach no worker).
SharedStoreOpt = Annotated[str, typer.Option("--store", envvar="TETHER_STORE",
                                             help="A SQLite file, or postgresql://…")]
