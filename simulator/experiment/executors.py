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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import _threads_wakeups
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from simulator.errors import CapsimError
from simulator.scenario import Scenario


@dataclass(frozen=True)
class RunTask:
    key: str  # the run's key in the result store
    scenario: Scenario
    seed: int
    period_s: float | None = None  # also keep the run's table by period of this length
    measure: Callable[[Any], dict] | None = None  # also keep what this (a module-level function) makes of the
    # run's Results, under "measured": it runs where the run ran, so only its answer travels back


def run_task(task: RunTask) -> dict:
    """What a sweep keeps of a run: its summary, and its rows by period when asked. Warnings stay in
    the worker."""
    from simulator.runner import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run(task.scenario, seed=task.seed, progress=False)
    periods = results.by_period(task.period_s).to_dict("records") if task.period_s else None
    out = {"summary": results.summary, "periods": periods}
    if task.measure is not None:
        out["measured"] = task.measure(results)
    return out


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
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_WorkerContext(),
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


class _WorkerProcess(SpawnProcess):
    """A spawned worker that starts with SIGINT ignored: Ctrl-C reaches the whole process group, and a
    worker still importing (before its initializer) would print a KeyboardInterrupt traceback. An
    ignored signal stays ignored across exec, and Python then installs no handler of its own for it."""

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
            super().start()
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            super().start()
        finally:
            signal.signal(signal.SIGINT, previous)


class _WorkerContext(SpawnContext):
    Process = _WorkerProcess


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
    # The pool's processes and manager thread: private, but the only handles on them before Python
    # 3.14's terminate_workers(). Taken before shutdown(), which sets both attributes to None.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
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
    if manager is not None:
        # Python's exit hook writes to every live pool's wake-up pipe outside the pool's lock, and a
        # manager thread still ending (a loaded machine) can close that pipe under the write: Python
        # then prints an "Exception ignored ... Bad file descriptor" traceback after capsim's one-line
        # message. This pool's workers are gone, so its manager is waited for and needs no waking.
        with contextlib.suppress(Exception):
            manager.join(5.0)
        _threads_wakeups.pop(manager, None)


def _on_ray(tasks: list[RunTask], address: str) -> Iterator[tuple[str, dict]]:
    """Runs as Ray tasks. `address` is a cluster's address (HOST:PORT, or ray://HOST:PORT for Ray
    Client), `auto` for the cluster this machine belongs to, or `local` to start Ray here.

    Every node needs the same capsim (and Ray) installed: a task checks its node's capsim version and
    data (hardware profiles, model zoo) against this machine's and fails with a one-line error if they
    differ. The files the scenarios read by path (traces, preset files) travel with the tasks, by
    content: a node need not have them."""
    ray = connect_ray(address)
    from simulator.experiment.inputs import data_digest

    files = ray.put(shipped_inputs([t.scenario for t in tasks]))
    expected = {"capsim": _capsim_version(), "data": data_digest()}
    remote = ray.remote(run_on_node)
    pending = {remote.remote(task, files, expected): task.key for task in tasks}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(done[0])
            try:
                output = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                raise _task_error(exc) from None
            yield key, output
    finally:
        for ref in pending:  # stopped early: the cluster need not finish runs nobody will read
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


def connect_ray(address: str):
    """Ray, connected to `address` (see _on_ray); every way it can fail is a one-line CapsimError."""
    if address != "local":
        token_mode()  # before Ray is imported: it reads RAY_AUTH_MODE once, on import
    try:
        import ray
    except ImportError:
        raise CapsimError("Ray is not installed: pip install 'capsim[ray]' (the Ray version the cluster "
                          "runs)") from None
    if ray.is_initialized():
        return ray
    if address == "auto":
        _check_auto()
    elif address != "local":
        check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False,  # "local": a new Ray here, whatever else runs
                 log_to_driver=False, logging_level="warning")
    except ray.exceptions.AuthenticationError:
        raise CapsimError(f"the Ray cluster at {address} uses token authentication and no token was found "
                          "here: set RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a file "
                          "holding it, or put it in ~/.ray/auth_token)") from None
    except ConnectionError as exc:
        if address == "auto":
            raise CapsimError("--ray auto: no Ray cluster is running on this machine; start one with "
                              "`ray start --head`, give a cluster's address (--ray HOST:PORT), or use "
                              "--ray local") from None
        auth = ("with RAY_AUTH_MODE=token, is RAY_AUTH_TOKEN the cluster's token?" if os.environ.get("RAY_AUTH_MODE")
                == "token" else "if the cluster uses token authentication, set RAY_AUTH_TOKEN to its token;")
        raise CapsimError(f"cannot connect to the Ray cluster at {address}: the port answers but Ray refused "
                          f"({_first_line(exc)}); {auth} is this machine's Ray ({ray.__version__}) the "
                          "cluster's version?") from None
    except (RuntimeError, ValueError) as exc:  # a version mismatch, an address Ray cannot parse
        raise CapsimError(f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}") from None
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address answers on its port, checked in seconds: Ray itself waits a minute or more on an
    address nothing listens on."""
    import socket

    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CapsimError(f"--ray {address}: expected a cluster's HOST:PORT (as `ray start --head` prints it, "
                          "e.g. 10.0.0.5:6379, or ray://HOST:10001 for Ray Client), 'auto' or 'local'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except socket.gaierror:
        raise CapsimError(f"--ray {address}: unknown host {host!r}") from None
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        what = ("a Ray Client server (the head's --ray-client-server-port)" if address.startswith("ray://")
                else f"`ray start --head --port {port}`")
        raise CapsimError(f"cannot reach a Ray cluster at {address}: {why} (is {what} running there, and that "
                          "port open to this machine?)") from None


def _check_auto() -> None:
    """`auto` means RAY_ADDRESS, or the cluster last started on this machine (Ray's temp folder names
    it): one that has since stopped is said in seconds, where Ray waits a minute or more."""
    no_cluster = ("--ray auto: no Ray cluster is running on this machine; start one with `ray start --head`, "
                  "give a cluster's address (--ray HOST:PORT), or use --ray local")
    try:
        from ray._private.services import canonicalize_bootstrap_address  # not public: guarded

        found = canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise CapsimError(no_cluster) from None
    except Exception:  # another Ray's internals: let ray.init find it
        return
    if not found:
        raise CapsimError(no_cluster) from None
    try:
        check_reachable(found)
    except CapsimError:
        raise CapsimError(f"{no_cluster} (the one last started here, at {found}, has stopped)") from None


def token_mode() -> None:
    """A token given here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) is used: Ray only
    sends one with RAY_AUTH_MODE=token, and without it fails against a cluster that wants one with a
    bare connection error after 20 s. A token sent to a cluster without authentication is ignored."""
    from pathlib import Path

    if "RAY_AUTH_MODE" in os.environ:
        return
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def shipped_inputs(scenarios: list[Scenario]) -> dict:
    """The files the scenarios read by path (traces, preset files), by absolute path as the run forms it
    (not resolved: a `..` stays a `..`), with their bytes; and an id for that set."""
    import hashlib
    from pathlib import Path

    files: dict[str, bytes] = {}
    for scenario in scenarios:
        for source in scenario.workload:
            # as inputs.scenario_inputs: a preset by name and the model zoo are capsim's own data
            if getattr(source, "kind", None) not in ("trace", "preset") or getattr(source, "path", None) is None:
                continue
            key = os.path.normpath(os.path.abspath(os.path.join(scenario.base_dir, source.path)))
            if key not in files:
                try:
                    files[key] = Path(key).read_bytes()
                except OSError:
                    continue  # the run fails on its node as it would here
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(key.encode() + b"\0" + hashlib.sha256(files[key]).digest())
    return {"id": digest.hexdigest()[:20], "files": files}


def with_shipped_inputs(scenario: Scenario, shipped: dict) -> Scenario:
    """The scenario reading the shipped files from a copy on this node: each file written once per node
    under the temp folder at its original absolute path, and the scenario's base folder moved there."""
    import tempfile
    from pathlib import Path

    if not shipped["files"]:
        return scenario
    root = Path(tempfile.gettempdir()) / "capsim-ray-inputs" / shipped["id"]
    for key, content in shipped["files"].items():
        target = root / key.lstrip(os.sep)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            partial.write_bytes(content)
            os.replace(partial, target)  # atomic: tasks on one node may write the same file
    base = root / os.path.normpath(os.path.abspath(scenario.base_dir)).lstrip(os.sep)
    base.mkdir(parents=True, exist_ok=True)
    return scenario.model_copy(update={"base_dir": base})


def run_on_node(task: RunTask, shipped: dict, expected: dict) -> dict:
    """A Ray task: check that this node's capsim is the sweep's, then run_task with the shipped files."""
    import socket

    from simulator.experiment.inputs import data_digest

    here = {"capsim": _capsim_version(), "data": data_digest()}
    if here != expected:
        what = (f"capsim {here['capsim']}, not {expected['capsim']}" if here["capsim"] != expected["capsim"]
                else "capsim with other hardware profiles or model files")
        raise CapsimError(f"Ray node {socket.gethostname()} has {what} as on the machine running the sweep: "
                          "install the same capsim on every node")
    scenario = with_shipped_inputs(task.scenario, shipped)
    return run_task(RunTask(task.key, scenario, task.seed, task.period_s, task.measure))


def _capsim_version() -> str:
    from importlib.metadata import version

    return version("capsim")


def _task_error(exc) -> Exception:
    """What a failed Ray task raises here: its own error (a CapsimError stays one line), or a one-line
    CapsimError when the node could not run capsim at all."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CapsimError):
        return cause
    text = str(exc)
    if "No module named 'simulator'" in text or "No module named 'capsim'" in text:
        return CapsimError("a Ray node cannot import capsim: install the same capsim on every node")
    if isinstance(cause, Exception):
        return cause
    return CapsimError(f"a Ray task failed: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__
