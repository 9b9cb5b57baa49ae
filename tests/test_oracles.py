"""The simulator against closed forms: Erlang C for M/M/c, and the FIFO heap recursion job by job."""

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.oracles import erlang_c_mean_wait, erlang_c_wait_probability, fifo_gang_starts
from tests.helpers import run_jobs, scenario_dict


def test_erlang_c_hand_worked():
    # c = 1 reduces to M/M/1: P(wait) = rho, W_q = rho / (mu - lambda).
    assert erlang_c_wait_probability(1, 0.6) == pytest.approx(0.6)
    assert erlang_c_mean_wait(1, 0.6, 1.0) == pytest.approx(0.6 / 0.4)
    # c = 2, a = 1 Erlang (rho = 0.5): C = (1/2 / 0.5) / (1 + 1 + 1) = 1/3.
    assert erlang_c_wait_probability(2, 0.5) == pytest.approx(1 / 3)


@pytest.mark.long
@pytest.mark.parametrize("servers,load,jobs", [
    (1, 0.5, 100_000), (1, 0.8, 200_000), (8, 0.7, 150_000), (8, 0.95, 300_000), (64, 0.9, 300_000),
    (64, 0.95, 300_000),
])
def test_mmc_mean_wait_matches_erlang_c(servers, load, jobs):
    mean_service = 3600.0
    rate_per_hour = load * servers * 3600.0 / mean_service
    scen = scenario_dict([(servers, 1)], [{
        "kind": "synthetic", "jobs": jobs, "arrival": {"process": "poisson", "rate_per_hour": rate_per_hour},
        "gpus": 1, "duration": {"dist": "exponential", "mean": mean_service},
    }])
    res = simulator.run(scen, progress=False)
    wait = res.jobs.sort_values("submit_time")["wait_s"].to_numpy()[jobs // 20:]  # drop the warm-up
    # Batch means: the waits are strongly correlated, so the CI comes from 30 batch averages.
    batches = np.array_split(wait, 30)
    means = np.array([b.mean() for b in batches])
    half_width = 2.045 * means.std(ddof=1) / np.sqrt(len(means))  # t(0.975, 29)
    expected = erlang_c_mean_wait(servers, rate_per_hour / 3600.0, mean_service)
    assert abs(wait.mean() - expected) <= half_width, (wait.mean(), expected, half_width)


@pytest.mark.parametrize("devices", [1, 8, 64])
def test_fifo_single_device_jobs_equal_heap_recursion(devices, tmp_path):
    rng = np.random.default_rng(devices)
    n = 3000
    jobs = pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)],
        # Rounded times create simultaneous arrivals and completions, the cases where order matters.
        "submit_time": np.round(np.cumsum(rng.exponential(60.0 / devices, n))),
        "gpus": 1,
        "duration": np.round(rng.exponential(50.0, n)),
    })
    res = run_jobs(jobs, pools=((devices, 1),))
    got = res.jobs.set_index("job_id").loc[jobs["job_id"], "start_time"].to_numpy()
    expected = fifo_gang_starts(jobs["submit_time"].to_numpy(), jobs["gpus"].to_numpy(),
                                jobs["duration"].to_numpy(), devices)
    np.testing.assert_array_equal(got, expected)


def test_fifo_gang_jobs_equal_heap_recursion(tmp_path):
    rng = np.random.default_rng(5)
    n, devices = 2000, 32
    jobs = pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)],
        "submit_time": np.round(np.cumsum(rng.exponential(20.0, n))),
        "gpus": rng.choice([1, 2, 4, 8, 16, 32], n),
        "duration": np.round(rng.exponential(100.0, n)),
    })
    res = run_jobs(jobs, pools=((devices, 1),))
    got = res.jobs.set_index("job_id").loc[jobs["job_id"], "start_time"].to_numpy()
    expected = fifo_gang_starts(jobs["submit_time"].to_numpy(), jobs["gpus"].to_numpy(),
                                jobs["duration"].to_numpy(), devices)
    np.testing.assert_array_equal(got, expected)
    # An uninterrupted job ends exactly `duration` after it starts.
    done = res.jobs.set_index("job_id").loc[jobs["job_id"]]
    np.testing.assert_array_equal(done["end_time"].to_numpy() - done["start_time"].to_numpy(),
                                  jobs["duration"].to_numpy())
