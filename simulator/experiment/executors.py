"""Where a sweep's runs execute: in this process, in local worker processes, or on a Ray cluster.

Each run is independent (its own scenario and seed), so an executor only has to hand tasks out and
collect summaries as they finish; the order they finish in does not matter, the results are keyed.

Local workers never outlive the sweep: if it stops early (an error, Ctrl-C, SIGTERM, or the consumer
closing the generator) the workers are terminated at once rather than left to finish their runs, and
if the sweep's process dies outright (SIGKILL) each worker follows it (workers_die_with_parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
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
    from simulator.runner import run

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
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=workers_die_with_parent, initargs=(os.getpid(),))
        finished = False
        try:
            futures = {pool.submit(run_task, task): task.key for task in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()
            finished = True
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:
                stop_workers(pool)


def workers_die_with_parent(parent: int) -> None:
    """A worker's initializer. Ctrl-C in a terminal reaches the whole process group: the worker ignores
    it and leaves it to the parent, which ends its workers itself (no worker tracebacks). If the
    parent dies outright the worker dies too: on Linux the kernel sends it SIGKILL (PR_SET_PDEATHSIG),
    and everywhere a thread checks once a second that the parent is still its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ulong = ctypes.c_ulong
            ctypes.CDLL(None).prctl(1, ulong(signal.SIGKILL), ulong(0), ulong(0), ulong(0))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before this worker got this far
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="capsim-watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers now: queued runs are dropped, runs in flight are killed, not waited for."""
    # The pool's processes: `_processes` is private, but the only handle on them before Python 3.14's
    # terminate_workers().
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + 5.0
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


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
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    finally:
        for ref in pending:  # stopped early: the cluster need not finish runs nobody will read
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
