"""Interruptions, with real processes: `capsim run` and `capsim sweep --workers 2` are started as
subprocesses and sent SIGINT, SIGTERM or SIGKILL at chosen points. Whatever the signal, no temporary
file is left (SIGKILL's are removed by the next write), a run folder never holds files of two runs that
Results.read would load, no worker process outlives the sweep, and `--resume` after the kill gives the
bytes an uninterrupted sweep gives.

A `capsim run` is paused at a chosen point by a wrapper (WRAPPER) that patches one function in the
subprocess and touches a marker file when it gets there, so each signal lands where the test says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.errors import CapsimError
from simulator.experiment import executors, sweep
from simulator.results import Results
from tests.test_sweep import base

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[1]

# `python -c WRAPPER run ...`: capsim's CLI with one step slowed down, announced by a marker file.
WRAPPER = r"""
import os, pathlib, sys, time
marker = pathlib.Path(os.environ["CAPSIM_TEST_MARKER"])
pause = os.environ["CAPSIM_TEST_PAUSE"]
if pause == "simulating":  # a run that takes a minute
    import simulator.runner
    def slow(*args, **kwargs):
        marker.touch()
        time.sleep(60)
    simulator.runner.run = slow
elif pause == "writing":  # the new set half-written in its hidden folder
    import simulator.results
    real_write = simulator.results._write_parquet
    def slow(frame, path, run_id):
        real_write(frame, path, run_id)
        marker.touch()
        time.sleep(60)
    simulator.results._write_parquet = slow
elif pause == "renaming":  # between the renames that put the new set in place
    real_replace = os.replace
    def slow(src, dst):
        real_replace(src, dst)
        if not marker.exists():
            marker.touch()
            time.sleep(1.5)
    os.replace = slow
from simulator.cli import main
main(prog_name="capsim")
"""


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra)
    env.pop("COVERAGE_PROCESS_START", None)
    return env


def _wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"capsim exited {proc.returncode} before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _temporaries(folder: Path) -> list[Path]:
    """What files.py's temporaries look like: `.NAME.PID.RANDOM.tmp`, `.capsim-new.PID.RANDOM/`."""
    return [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".capsim-new.")]


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:  # /proc: every process whose parent chain reaches pid
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        found, frontier = [], [pid]
        while frontier:
            kids = [p for p, pp in parents.items() if pp in frontier]
            found += kids
            frontier = kids
        return found
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie waits for an init that may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(base(jobs=2000, servers=8)))
    return path


# -- capsim run ---------------------------------------------------------------------------------------------


def _start_run(tmp_path: Path, pause: str, out: Path) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / f"marker-{pause}"
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, "run", str(_scenario(tmp_path)), "--seed", "2",
                             "--out", str(out), "--no-progress"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(CAPSIM_TEST_MARKER=str(marker), CAPSIM_TEST_PAUSE=pause))
    _wait_for(marker.exists, f"the run to reach {pause}", proc)
    return proc, marker


@pytest.mark.parametrize("pause,sig", [("simulating", signal.SIGINT), ("simulating", signal.SIGTERM),
                                       ("writing", signal.SIGINT), ("writing", signal.SIGTERM),
                                       ("writing", signal.SIGKILL)], ids=lambda v: getattr(v, "name", v))
def test_an_interrupted_rerun_leaves_the_previous_run_whole(tmp_path, sig, pause):
    out = tmp_path / "out"
    first = simulator.run(yaml.safe_load(_scenario(tmp_path).read_text()), seed=1, progress=False)
    first.write(out)
    (out / "notes.txt").write_text("mine")
    proc, _ = _start_run(tmp_path, pause, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # one line, the shell's status for the signal, and its own temporaries removed
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err and f"stopped by {sig.name}" in err, err
        assert _temporaries(tmp_path) == []
    again = Results.read(out)  # the previous run, whole
    assert again.run_id == first.run_id and again.summary["seed"] == 1
    pd.testing.assert_frame_equal(again.jobs, first.jobs)
    assert (out / "notes.txt").read_text() == "mine"
    simulator.run(yaml.safe_load(_scenario(tmp_path).read_text()), seed=3, progress=False).write(out)
    assert _temporaries(tmp_path) == []  # what SIGKILL left, the next write removed
    assert Results.read(out).summary["seed"] == 3


def test_a_signal_during_the_renames_waits_for_the_whole_new_set(tmp_path):
    out = tmp_path / "out"
    simulator.run(yaml.safe_load(_scenario(tmp_path).read_text()), seed=1, progress=False).write(out)
    proc, _ = _start_run(tmp_path, "renaming", out)
    proc.send_signal(signal.SIGTERM)  # arrives after jobs.parquet is in place, before timeline.parquet
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    expected = simulator.run(yaml.safe_load(_scenario(tmp_path).read_text()), seed=2, progress=False)
    assert Results.read(out).run_id == expected.content_id()  # the new set, all of it
    assert _temporaries(tmp_path) == []


def test_a_mixed_run_folder_is_refused_naming_its_files(tmp_path):
    scen = yaml.safe_load(_scenario(tmp_path).read_text())
    simulator.run(scen, seed=1, progress=False).write(tmp_path / "a")
    simulator.run(scen, seed=2, progress=False).write(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "jobs.parquet", tmp_path / "a" / "jobs.parquet")  # what a cut rename leaves
    with pytest.raises(CapsimError, match=r"different runs: jobs.parquet from run \w+; timeline.parquet and "
                                          r"summary.json from run \w+"):
        Results.read(tmp_path / "a")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "a")])
    assert result.exit_code == 1 and "different runs" in result.output and "jobs.parquet" in result.output
    # a run folder written before run ids existed is read as it is, but not mixed with a newer file
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    old = simulator.run(scen, seed=1, progress=False)
    old.jobs.to_parquet(legacy / "jobs.parquet", index=False)
    old.timeline.to_parquet(legacy / "timeline.parquet", index=False)
    (legacy / "summary.json").write_text(json.dumps(old.summary))
    assert Results.read(legacy).run_id is None
    shutil.copy(tmp_path / "b" / "timeline.parquet", legacy / "timeline.parquet")
    with pytest.raises(CapsimError, match="without a run id"):
        Results.read(legacy)
    (legacy / "summary.json").write_text("")
    with pytest.raises(CapsimError, match="cannot read summary.json"):
        Results.read(legacy)


# -- capsim sweep --workers 2 -------------------------------------------------------------------------------


RUNS = 12  # short runs (0.2 s), enough of them that a kill after the first finds most still to run


def _sweep_file(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base(jobs=10_000, servers=8)))
    path = tmp_path / "sweep.yaml"
    path.write_text(f"scenario: base.yaml\nseeds: {RUNS // 2}\naxes:\n  scheduler.policy: [fifo, sjf]\n")
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    sweep(str(_sweep_file(folder)), workers=1, out_dir=folder / "out")
    return folder / "out"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_killed_sweep_leaves_no_worker_and_resumes_to_the_same_bytes(tmp_path, sig, uninterrupted,
                                                                       monkeypatch):
    out = tmp_path / "out"
    # stdout and stderr to files, not pipes: a worker that outlived the sweep would hold a pipe open
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "sweep", str(_sweep_file(tmp_path)),
                                 "--out", str(out), "--workers", "2", "--no-progress"], cwd=tmp_path, text=True,
                                stdout=stdout, stderr=stderr, env=_env(), start_new_session=True)
    workers = []
    try:
        _wait_for(lambda: any((out / "runs").glob("*.json")), "the first finished run", proc)
        workers = _descendants(proc.pid)
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C in a terminal: the whole process group
        else:
            proc.send_signal(sig)  # `kill`: the sweep's own process only
        proc.wait(timeout=60)
        err = (tmp_path / "stderr").read_text()
        if sig != signal.SIGKILL:
            assert proc.returncode == 128 + sig and "Traceback" not in err, err
            assert f"stopped by {sig.name}" in err and "--resume" in err, err
            assert _temporaries(tmp_path) == []
        deadline = time.monotonic() + 15
        while [p for p in workers if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in workers if _alive(p)] == [], "worker processes outlived the sweep"
    finally:  # a failed check leaves no process behind either
        for pid in [proc.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()

    kept = len(list((out / "runs").glob("*.json")))
    assert 1 <= kept < RUNS
    ran = []
    real = executors.run_task
    monkeypatch.setattr(executors, "run_task", lambda task: ran.append(task) or real(task))
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(out), "--workers", "1",
                                       "--resume", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(ran) == RUNS - kept  # only the runs the kill lost
    for name in ("runs.parquet", "points.parquet"):
        assert (out / name).read_bytes() == (uninterrupted / name).read_bytes()
    assert _temporaries(tmp_path) == []


def test_stopped_workers_leave_no_pipe_for_the_exit_hook_to_write():
    """Python's exit hook writes to every pool's wake-up pipe while the pool's manager thread may be
    closing it (the "Bad file descriptor" traceback after a Ctrl-C): a stopped pool's manager has
    ended and its pipe is out of the hook's table."""
    from concurrent.futures.process import _threads_wakeups

    pool = executors.ProcessPoolExecutor(max_workers=2, mp_context=executors._WorkerContext())
    futures = [pool.submit(time.sleep, 30.0) for _ in range(4)]
    deadline = time.monotonic() + 60
    while not any(f.running() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.02)
    manager, processes = pool._executor_manager_thread, list(pool._processes.values())
    assert manager in _threads_wakeups
    executors.stop_workers(pool)
    assert not manager.is_alive() and manager not in _threads_wakeups
    assert not any(p.is_alive() for p in processes)
