"""Running a campaign's episodes as Ray tasks (``tether eval run --backend ray``).

The process pool runs a campaign on one machine; Ray runs it on a cluster users already
operate. Each episode is one Ray task; results come back to the driver, which alone writes the
campaign's file (see :func:`tether.evals.campaign.run_campaign`), so the file and
``results.json`` are the same as the process pool's. Ray is an optional extra: it is imported
here, when a campaign asks for it, and its absence is a :class:`~tether.errors.UsageError`
naming ``pip install 'tether[ray]'``.

A task lost with its node (or its worker process) is run again by Ray (``max_retries``); the
driver receives one result per task however often it ran. Episodes are deterministic, so a
task that *raised* is not retried: it would raise again.

Every node must see the same files at the same paths as the driver — tether, the scenario
files, the agent's code, harness files — as they do on one machine; tasks run from the
driver's current folder, so relative paths mean what they mean to the driver. A node that
holds other copies runs another episode than the one planned; the campaign notices (the
record's key differs) and stops instead of counting it.

Example::

    for index, record in ray_unordered(run_job, jobs, address="ray://head:10001"):
        ...
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any, TypeVar

from tether.errors import TetherError, UsageError

__all__ = ["CONNECT_TIMEOUT_S", "IN_FLIGHT_PER_CPU", "RECOUNT_EVERY", "TASK_RETRIES",
           "check_address", "import_ray", "ray_unordered"]

T = TypeVar("T")
R = TypeVar("R")

#: Tasks kept in flight per CPU of the cluster: enough that no CPU waits for the driver to
#: submit its next task, few enough that a campaign of 100,000 episodes does not put 100,000
#: tasks (and their arguments) in the cluster at once.
IN_FLIGHT_PER_CPU = 4
#: After how many finished tasks the cluster's CPUs are counted again.
RECOUNT_EVERY = 64
#: How often Ray runs a task again when its worker or node dies under it.
TASK_RETRIES = 5
#: How long a cluster's address has to accept a connection before it counts as wrong.
CONNECT_TIMEOUT_S = 10.0


def import_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError("--backend ray needs Ray, which is not installed: "
                         "pip install 'tether[ray]'") from exc
    return ray


def check_address(address: str) -> None:
    """A :class:`UsageError` unless something accepts connections at ``address``
    (``host:port`` or ``ray://host:port``; ``auto`` is left to Ray). Checked before Ray is
    asked, because Ray keeps trying an address where nothing answers for many minutes."""
    where = address.removeprefix("ray://")
    if address == "auto" or "://" in where:
        return
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r}: expected host:port, ray://host:port or "
                         "auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(f"nothing answers at the Ray address {address} ({exc}): start the "
                         "cluster (ray start --head) or check the address") from exc


def ray_unordered(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = None,
                  address: str | None = None) -> Iterator[tuple[int, R]]:
    """Run ``fn(item)`` for every item as a Ray task; yield ``(index, result)`` as each
    completes (in completion order, each index once).

    ``address`` connects to a running cluster (``host:port``, ``ray://…`` or ``auto``);
    without it a local Ray is started with ``workers`` CPUs (all cores by default) and shut
    down at the end. A process already connected to Ray uses that connection (and leaves it
    open). Tasks still running when the iteration stops (an error, a consumer that stops
    early) are cancelled. An exception raised by ``fn`` is raised here as it was raised
    there; a task Ray could not complete (its nodes lost beyond :data:`TASK_RETRIES`) raises
    a :class:`TetherError`.
    """
    ray = import_ray()
    with _connected(ray, workers, address):
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES,
                          retry_exceptions=False)(_in_folder)
        folder = os.getcwd()
        limit, counted = _in_flight(ray), 0
        pending: dict[Any, int] = {}
        left = iter(enumerate(items))
        try:
            while True:
                while len(pending) < limit and (following := next(left, None)) is not None:
                    pending[task.remote(fn, folder, following[1])] = following[0]
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    yield index, _result(ray, ref, items[index])
                    counted += 1
                    if counted % RECOUNT_EVERY == 0:
                        limit = _in_flight(ray)  # an autoscaled cluster grows as it works
        finally:
            for ref in pending:
                ray.cancel(ref)


def _in_flight(ray: ModuleType) -> int:
    """How many tasks to keep in flight: :data:`IN_FLIGHT_PER_CPU` per CPU of the cluster,
    as for one CPU when it has none yet (an autoscaled cluster's head often has none: the
    waiting tasks are what makes it add nodes)."""
    return IN_FLIGHT_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 0)))


def _in_folder(fn: Callable[[T], R], folder: str, item: T) -> R:
    """``fn(item)`` run from the driver's folder, as a process pool's workers run it: Ray's
    workers start in the folder their node was started from, where the campaign's relative
    paths (a scenario given as ``refund.yaml``, a module of the project) mean other files or
    none. A node without that folder runs from its own (a relative path then fails there,
    saying which)."""
    if os.getcwd() != folder:
        with suppress(OSError):
            os.chdir(folder)
    return fn(item)


def _result(ray: ModuleType, ref: Any, item: object) -> Any:
    """The task's value; its own exception as it was raised; Ray's failures translated."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        # The task's own error (a scenario that does not load, an agent that raises): the
        # same exception the process pool would raise, not Ray's wrapper of it.
        raise exc.cause from exc
    except ray.exceptions.RayError as exc:
        raise TetherError(
            f"Ray could not complete the task of {item!r} ({type(exc).__name__}: {exc}); a "
            f"task whose worker or node is lost is run again up to {TASK_RETRIES} times. "
            "What finished is kept: run the campaign again to resume it."
        ) from exc


@contextmanager
def _connected(ray: ModuleType, workers: int | None, address: str | None) -> Iterator[None]:
    """Ray, connected for the duration: an existing connection as it is, a cluster at
    ``address``, or a local Ray started here (and everything it started shut down after)."""
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", current):
            raise UsageError(f"this process is already connected to Ray at {current}, not "
                             f"{address}: call ray.shutdown() first, or leave out the address")
        yield
        return
    if address is not None:
        check_address(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError) as exc:
            raise UsageError(f"cannot connect to Ray at {address}: {exc}; start the cluster "
                             "(ray start --head) or check the address") from exc
        try:
            yield
        finally:
            ray.shutdown()  # the driver's connection only: the cluster stays up
        return
    # "local": start a new instance even when RAY_ADDRESS or a `ray start` cluster on this
    # machine would otherwise be picked up. Logs go to a folder of this campaign's own.
    logs = tempfile.mkdtemp(prefix="tether-ray-")
    try:
        ray.init(address="local", num_cpus=workers or os.cpu_count() or 1,
                 include_dashboard=False, _temp_dir=logs, logging_level=logging.WARNING)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(logs, ignore_errors=True)
