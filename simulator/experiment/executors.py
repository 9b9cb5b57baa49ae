"""Where a sweep's runs execute: in this process, in local worker processes, or on a Ray cluster.

Each run is independent (its own scenario and seed), so an executor only has to hand tasks out and
collect summaries as they finish; the order they finish in does not matter, the results are keyed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context

from simulator.errors import CapsimError
from simulator.scenario import Scenario


@dataclass(frozen=True)
class RunTask:
    key: str  # the run's key in the result store
    scenario: Scenario
    seed: int
    period_s: float | None = None  # also keep the run's table by period of this length


def run_task(task: RunTask) -> dict:
    """What a sweep keeps of a run: its summary, and its rows by period when asked. Warnings stay in
    the worker."""
    from simulator.run import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run(task.scenario, seed=task.seed, progress=False)
    periods = results.by_period(task.period_s).to_dict("records") if task.period_s else None
    return {"summary": results.summary, "periods": periods}


def execute(tasks: list[RunTask], workers: int = 1, ray_address: str | None = None) -> Iterator[tuple[str, dict]]:
    """Yield (key, what run_task returns) for every task as it finishes."""
    if ray_address is not None:
        yield from _on_ray(tasks, ray_address)
    elif workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task.key, run_task(task)
    else:
        # spawn, not fork: a forked copy of a process holding threads (Arrow's pool, a progress bar)
        # can deadlock, and spawned workers start from the same imports on every platform.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_task, task): task.key for task in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()


def _on_ray(tasks: list[RunTask], address: str) -> Iterator[tuple[str, dict]]:
    """Runs as Ray tasks. `address` is a cluster's address, `auto` for the one this machine belongs to,
    or `local` to start Ray here. Every node needs capsim installed (and any trace files the scenarios
    read, at the same paths)."""
    try:
        import ray
    except ImportError:
        raise CapsimError("Ray is not installed: pip install 'capsim[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False)
    remote = ray.remote(run_task)
    pending = {remote.remote(task): task.key for task in tasks}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done[0]), ray.get(done[0])
