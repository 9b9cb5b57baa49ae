"""Sweeps on Ray as a user runs them: a head started with `ray start`, its address, token
authentication, the one-line errors when Ray or the cluster is not there, and the files a run reads
travelling with its task (executors.py)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import scenario_dict

from simulator.errors import CapsimError
from simulator.experiment.executors import (
    RunTask,
    check_reachable,
    run_on_node,
    run_task,
    shipped_inputs,
    with_shipped_inputs,
)
from simulator.experiment.inputs import data_digest
from simulator.experiment.runner import sweep
from simulator.scenario import load_scenario

TRACE = "job_id,submit_time,gpus,duration\na,0,1,3600\nb,60,2,7200\nc,90,4,3600\n"


def base(jobs=200):
    return scenario_dict([(2, 2)], [
        {"kind": "trace", "format": "csv", "path": "traces/jobs.csv"},
        {"kind": "synthetic", "jobs": jobs, "arrival": {"process": "poisson", "rate_per_hour": 3.0},
         "gpus": {"choice": [1, 2], "weights": [0.8, 0.2]}, "duration": {"dist": "exponential", "mean": "1h"}},
    ])


def write_sweep(folder: Path) -> Path:
    (folder / "traces").mkdir(parents=True)
    (folder / "traces" / "jobs.csv").write_text(TRACE)
    (folder / "scen.yaml").write_text(yaml.safe_dump(base()))
    (folder / "sw.yaml").write_text("scenario: scen.yaml\nseeds: 2\naxes:\n  scheduler.policy: [fifo, sjf]\n")
    return folder / "sw.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capsim(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "simulator.cli", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_on_ray_equals_local(tmp_path):
    ray = pytest.importorskip("ray")
    spec = {"base": base(), "seeds": 2, "axes": {"scheduler.policy": ["fifo", "sjf"]}}
    spec["base"]["workload"] = spec["base"]["workload"][1:]  # no trace: a dict scenario has no folder
    try:
        on_ray = sweep(spec, ray_address="local")
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(on_ray.runs, sweep(spec).runs)


def test_a_real_head_started_with_ray_start_runs_a_sweep_with_token_authentication(tmp_path):
    """`ray start --head` with token authentication in a subprocess; `capsim sweep --ray ADDRESS`
    without the token is one line, with it gives the runs of a local --workers 1 sweep."""
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        ray_cli = Path(shutil.which("ray") or "ray")
    file = write_sweep(tmp_path / "project")
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "home"  # no ~/.ray/auth_token of the user's: the token is only what we give
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home)}
    head_env = env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            env=head_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: stopped below, and only it
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        address = f"127.0.0.1:{port}"

        no_token = capsim("sweep", str(file), "--ray", address, "--no-progress",
                          env=env | {"RAY_AUTH_MODE": "token"})
        assert no_token.returncode == 1, no_token.stdout + no_token.stderr
        error = [line for line in no_token.stderr.splitlines() if line.startswith("Error:")]
        assert len(error) == 1 and "token authentication" in error[0] and "RAY_AUTH_TOKEN" in error[0]
        assert "Traceback" not in no_token.stderr

        # only the token, as a user sets it: capsim turns RAY_AUTH_MODE=token on
        # run from another folder: the trace travels with the tasks, by content
        on_ray = capsim("sweep", str(file), "--ray", address, "--out", str(tmp_path / "ray"), "--no-progress",
                        env=env | {"RAY_AUTH_TOKEN": token}, cwd=tmp_path)
        assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the head's processes when ended
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        # Ray leaves the stopped head's address as this machine's current cluster: `auto` would wait on it
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()
    local = capsim("sweep", str(file), "--workers", "1", "--out", str(tmp_path / "local"), "--no-progress", env=env)
    assert local.returncode == 0, local.stdout + local.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray" / "runs.parquet"),
                                  pd.read_parquet(tmp_path / "local" / "runs.parquet"))


def test_errors_without_a_cluster_are_one_line(tmp_path):
    pytest.importorskip("ray")
    file = write_sweep(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(tmp_path)}
    port = free_port()  # nothing listens on it
    cases = {
        "auto": "no Ray cluster is running on this machine",
        f"127.0.0.1:{port}": "cannot reach a Ray cluster at",
        "no-such-host.invalid:6379": "unknown host",
        "6379": "expected a cluster's HOST:PORT",
    }
    for address, message in cases.items():
        result = capsim("sweep", str(file), "--ray", address, "--no-progress", env=env, cwd=tmp_path)
        assert result.returncode == 1, (address, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (address, result.stderr)


def test_ray_not_installed_is_one_line(tmp_path, monkeypatch):
    from simulator.experiment import executors

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(CapsimError, match=r"Ray is not installed: pip install 'capsim\[ray\]'"):
        executors.connect_ray("auto")


def test_reachability_check(tmp_path):
    with pytest.raises(CapsimError, match="connection refused"):
        check_reachable(f"127.0.0.1:{free_port()}")
    with pytest.raises(CapsimError, match="Ray Client server"):
        check_reachable(f"ray://127.0.0.1:{free_port()}")
    for bad in ("host", "host:", ":6379", "host:99999", "host:port"):
        with pytest.raises(CapsimError, match="expected a cluster's HOST:PORT"):
            check_reachable(bad)


def test_shipped_files_replace_the_originals(tmp_path):
    """A node without the scenario's files runs it from the shipped copy, with the same result."""
    write_sweep(tmp_path / "project")
    scenario = load_scenario(tmp_path / "project" / "scen.yaml")
    here = run_task(RunTask("k", scenario, 3))
    shipped = shipped_inputs([scenario, scenario])
    assert list(shipped["files"].values()) == [TRACE.encode()]
    shutil.rmtree(tmp_path / "project")  # the node has none of it
    there = run_on_node(RunTask("k", scenario, 3), shipped, {"capsim": _version(), "data": data_digest()})
    assert there == here
    assert with_shipped_inputs(scenario, {"id": "x", "files": {}}) is scenario


def test_a_node_with_another_capsim_is_refused(tmp_path):
    write_sweep(tmp_path / "project")
    scenario = load_scenario(tmp_path / "project" / "scen.yaml")
    shipped = shipped_inputs([scenario])
    with pytest.raises(CapsimError, match="has capsim .*, not 0.0.1 as on the machine running the sweep"):
        run_on_node(RunTask("k", scenario, 3), shipped, {"capsim": "0.0.1", "data": data_digest()})
    with pytest.raises(CapsimError, match="other hardware profiles"):
        run_on_node(RunTask("k", scenario, 3), shipped, {"capsim": _version(), "data": "0" * 64})


def _version() -> str:
    from importlib.metadata import version

    return version("capsim")
