"""The systems tether is compared with in ``durable_step.py``: LangGraph and DBOS.

Each runner is a context manager yielding ``(runner, note)``; ``runner`` is ``None`` (and the
note says why) when the system is not installed. Both run the same do-nothing work as tether.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

STEPS = (10, 100)
WORKLOADS = ("noop", "write")

#: One timed run: (workload, steps) -> seconds for the whole run.
Runner = Callable[[str, int], float]


def noop() -> None:
    """The step body every system runs."""


def provider_write(key: str) -> None:
    """The do-nothing external call of the "write" workload."""


class GraphState(TypedDict):
    i: int


@contextlib.contextmanager
def langgraph_runner() -> Iterator[tuple[Runner | None, str]]:
    """A StateGraph of N nodes in a chain, checkpointed by SqliteSaver (default durability)."""
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph
    except ImportError as exc:
        yield None, f"not installed ({exc})"
        return

    def noop_node(state: GraphState) -> dict[str, int]:
        noop()
        return {"i": state["i"] + 1}

    def write_node(state: GraphState) -> dict[str, int]:
        provider_write(f"k:{state['i']}")
        return {"i": state["i"] + 1}

    nodes = {"noop": noop_node, "write": write_node}
    graphs: dict[tuple[str, int], Any] = {}
    for workload in WORKLOADS:
        for steps in STEPS:
            graph = StateGraph(GraphState)
            previous = START
            for k in range(steps):
                graph.add_node(f"s{k}", nodes[workload])
                graph.add_edge(previous, f"s{k}")
                previous = f"s{k}"
            graph.add_edge(previous, END)
            graphs[workload, steps] = graph

    def run(workload: str, steps: int) -> float:
        with tempfile.TemporaryDirectory(prefix="langgraph-bench-") as tmp:
            conn = sqlite3.connect(os.path.join(tmp, "checkpoints.sqlite"), check_same_thread=False)
            try:
                saver = SqliteSaver(conn)
                saver.setup()
                app = graphs[workload, steps].compile(checkpointer=saver)
                config = {
                    "configurable": {"thread_id": uuid.uuid4().hex},
                    "recursion_limit": steps + 10,
                }
                start = time.perf_counter()
                out = app.invoke({"i": 0}, config)
                elapsed = time.perf_counter() - start
            finally:
                conn.close()
        if out["i"] != steps:
            raise SystemExit(f"LangGraph ran {out['i']} of {steps} nodes")
        return elapsed

    yield run, "SqliteSaver, WAL, durability='async' (the default)"


@contextlib.contextmanager
def dbos_runner() -> Iterator[tuple[Runner | None, str]]:
    """A ``@DBOS.workflow`` calling N ``@DBOS.step``s, on DBOS's default SQLite system database.

    DBOS keeps one global instance, so this launches it once for the whole benchmark and
    destroys it at the end. Its background threads (queue and notification pollers) wake
    about once a second while the other systems are measured; that costs them little.
    """
    try:
        from dbos import DBOS
    except ImportError as exc:
        yield None, f"not installed ({exc})"
        return
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as tmp:
        DBOS(
            config={
                "name": "tether-bench",
                "system_database_url": f"sqlite:///{os.path.join(tmp, 'dbos.sqlite')}",
                "log_level": "WARNING",
            }
        )

        @DBOS.step()
        def noop_step() -> None:
            noop()

        @DBOS.step()
        def write_step(i: int) -> None:
            provider_write(f"k:{i}")

        @DBOS.workflow()
        def noop_wf(steps: int) -> int:
            for _ in range(steps):
                noop_step()
            return steps

        @DBOS.workflow()
        def write_wf(steps: int) -> int:
            for i in range(steps):
                write_step(i)
            return steps

        workflows = {"noop": noop_wf, "write": write_wf}

        def run(workload: str, steps: int) -> float:
            start = time.perf_counter()
            workflows[workload](steps)
            return time.perf_counter() - start

        DBOS.launch()
        try:
            yield run, "SQLite system database (rollback journal, synchronous=FULL: defaults)"
        finally:
            DBOS.destroy(destroy_registry=True)
