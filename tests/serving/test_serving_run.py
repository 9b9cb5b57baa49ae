"""Serving fleets in a scenario run: closed forms (Pollaczek-Khinchine, Little's law), conservation,
training beside serving on one pool, outputs, and validation errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.perf.zoo import load_model
from simulator.results import Results
from simulator.serving.cost import PerfCost

BASE = {
    "name": "serve",
    "seed": 5,
    "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
    "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 1,
                  "scheduler": {"max_num_seqs": 1, "max_batched_tokens": 4096}}],
    "requests": [{"kind": "synthetic", "service": "chat", "requests": 200,
                  "arrival": {"process": "poisson", "rate_per_s": 1.0}, "prompt_tokens": 256, "output_tokens": 16}],
}


def scenario(**changes):
    s = copy.deepcopy(BASE)
    for path, value in changes.items():
        target = s
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        target[keys[-1]] = value
    return s


def service_time(prompt, output):
    """A batch-1 request's deterministic service time: its prefill, then output - 1 decode steps."""
    cost = PerfCost("h100-sxm", load_model("llama3-8b").model_spec())
    a, b = cost.decode(1)
    prefill = cost.prefill(1, prompt)
    return prefill, prefill + sum(a + b * (prompt + g) for g in range(1, output))


def test_batch_one_replica_matches_pollaczek_khinchine():
    """One replica, max_num_seqs 1, constant lengths: an M/D/1 queue. The mean wait (TTFT less its own
    prefill) matches rho S / (2 (1 - rho)) within a batch-means 99% interval."""
    prompt, output, n, rho = 256, 16, 40_000, 0.7
    prefill, s = service_time(prompt, output)
    rate = rho / s
    res = simulator.run(scenario(requests__0__requests=n, requests__0__arrival={"process": "poisson",
                                                                               "rate_per_s": rate},
                                 requests__0__prompt_tokens=prompt, requests__0__output_tokens=output),
                        progress=False)
    req = res.requests
    assert (req["status"] == "completed").all()
    # service times are exactly S: e2e - wait
    wait = (req["first_token_s"] - req["arrival_s"] - prefill).to_numpy()
    assert np.allclose(req["end_s"] - req["arrival_s"] - wait, s, rtol=1e-9)
    wait = wait[n // 10:]  # drop the warm-up
    batches = wait[: len(wait) // 30 * 30].reshape(30, -1).mean(axis=1)
    half = 2.756 * batches.std(ddof=1) / np.sqrt(len(batches))  # t(29) at 99%
    expected = rho * s / (2 * (1 - rho))
    print(f"M/D/1: S = {s:.6f} s, rho = {rho}, mean wait {wait.mean():.5f} s +- {half:.5f}, P-K {expected:.5f} s")
    assert abs(wait.mean() - expected) <= half


def test_littles_law_tokens_and_kv(fleets):
    res = simulator.run(scenario(services__0__replicas=3, services__0__router="least-outstanding",
                                 services__0__scheduler={"max_num_seqs": 8, "max_batched_tokens": 2048,
                                                         "kv_tokens": 4000},
                                 requests__0__requests=3000,
                                 requests__0__arrival={"process": "poisson", "rate_per_s": 40.0},
                                 requests__0__prompt_tokens={"dist": "uniform", "low": 16, "high": 1024},
                                 requests__0__output_tokens={"dist": "lognormal", "median": 64, "sigma": 1.0,
                                                             "max": 2000}),
                        progress=False)
    req, svc = res.requests, res.summary["services"]["chat"]
    done = req[req["status"] == "completed"]
    rejected = req[req["status"] == "rejected"]
    assert len(done) + len(rejected) == len(req) == 3000
    # rejected: their KV (prompt + output in 16-token blocks) exceeds the 4000-token cache
    assert (np.ceil((rejected["prompt_tokens"] + rejected["output_tokens"]) / 16) > 4000 // 16).all()
    assert (np.ceil((done["prompt_tokens"] + done["output_tokens"]) / 16) <= 4000 // 16).all()
    # Little: the time-average of requests in the system (the fleet's own running integral) = lambda W
    sim_fleet = fleets[-1]
    span = done["end_s"].max() - req["arrival_s"].min()
    lam = len(done) / span
    w = (done["end_s"] - done["arrival_s"]).mean()
    assert sim_fleet.area / span == pytest.approx(lam * w, rel=1e-9)
    # tokens: each iteration's count equals the completed requests' outputs
    assert sum(r.tokens for r in sim_fleet.replicas[0]) == done["output_tokens"].sum() == svc["output_tokens"]
    assert svc["kv_peak_fraction"] <= 1.0
    assert all(r.kv_peak <= r.kv_blocks for r in sim_fleet.replicas[0])
    assert (done["first_token_s"] > done["arrival_s"]).all() and (done["end_s"] >= done["first_token_s"]).all()
    tpot = ((done["end_s"] - done["first_token_s"]) / (done["output_tokens"] - 1))[done["output_tokens"] > 1]
    assert svc["tpot_p50_s"] == pytest.approx(np.percentile(tpot, 50))
    assert svc["ttft_p99_s"] == pytest.approx(np.percentile(done["first_token_s"] - done["arrival_s"], 99))


def test_load_columns_follow_littles_law_over_all_services(fleets):
    """Two services on one pool, some requests rejected for their KV, training jobs beside them: the
    timeline's serving_requests integrates to the fleet's own area, whose time-average is lambda W from the
    requests table; serving_waiting_requests integrates to the summed TTFTs; both stay within 0..requests
    routed, and are 0 once the last request has left."""
    import pandas as pd

    s = scenario(services__0__replicas=2, services__0__scheduler={"max_num_seqs": 8, "max_batched_tokens": 2048,
                                                                  "kv_tokens": 1500},
                 requests__0__requests=1200, requests__0__arrival={"process": "poisson", "rate_per_s": 15.0},
                 requests__0__prompt_tokens={"dist": "uniform", "low": 16, "high": 1024},
                 requests__0__output_tokens={"dist": "lognormal", "median": 64, "sigma": 1.0, "max": 2000})
    s["services"].append({**s["services"][0], "name": "code", "replicas": 1, "router": "least-outstanding"})
    s["requests"].append({**s["requests"][0], "service": "code", "requests": 300,
                          "arrival": {"process": "poisson", "rate_per_s": 5.0}})
    jobs = pd.DataFrame([{"job_id": f"j{k}", "submit_time": 7.0 * k, "gpus": 2, "duration": 200.0 * (k + 1)}
                         for k in range(6)])
    res = simulator.run(s, jobs=jobs, progress=False)
    req, tl, fleet = res.requests, res.timeline, fleets[-1]
    done = req[req["status"] == "completed"]
    assert (req["status"] == "rejected").any() and len(done) + (req["status"] == "rejected").sum() == len(req)
    assert set(done["service"]) == {"chat", "code"}
    t = tl["time_s"].to_numpy()
    n, waiting = tl["serving_requests"].to_numpy(), tl["serving_waiting_requests"].to_numpy()
    area = float((n[:-1] * np.diff(t)).sum())
    assert area == pytest.approx(fleet.area, rel=1e-9)  # per-second means: exact up to rounding
    span = done["end_s"].max() - req["arrival_s"].min()
    lam, w = len(done) / span, (done["end_s"] - done["arrival_s"]).mean()
    assert area / span == pytest.approx(lam * w, rel=1e-9)
    ttft = (done["first_token_s"] - done["arrival_s"]).sum()
    assert float((waiting[:-1] * np.diff(t)).sum()) == pytest.approx(ttft, rel=1e-9)
    assert n.min() == 0 and (waiting >= -1e-9).all() and (waiting <= n + 1e-9).all() and n.max() <= len(done)
    after = t >= done["end_s"].max()
    assert after.any() and (n[after] == 0).all() and (waiting[after] == 0).all()
    assert t[-1] > done["end_s"].max()  # the training jobs outlast the requests: the columns stay 0


def test_training_runs_beside_serving_on_what_is_left(tmp_path):
    """8 devices, 3 replicas of tp 2 take 6: a training job of 4 devices waits until serving is done,
    while jobs of 2 run at once; the replicas' devices come back when the last request leaves."""
    s = scenario(services__0__replicas=3, services__0__layout={"tp": 2},
                 services__0__scheduler={"max_num_seqs": 16})
    jobs = [{"job_id": "small", "submit_time": 0.0, "gpus": 2, "duration": 10.0},
            {"job_id": "big", "submit_time": 0.0, "gpus": 4, "duration": 10.0}]
    import pandas as pd

    res = simulator.run(s, jobs=pd.DataFrame(jobs), progress=False)
    by_id = res.jobs.set_index("job_id")
    serving_end = res.requests["end_s"].max()
    assert by_id.loc["small", "start_time"] == 0.0
    assert by_id.loc["big", "start_time"] == pytest.approx(serving_end)
    assert res.summary["services"]["chat"]["gpu_hours"] == pytest.approx(3 * 2 * serving_end / 3600)
    res.write(tmp_path)
    back = Results.read(tmp_path)
    assert back.requests.equals(res.requests)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["services"]["chat"]) >= {"requests_completed", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
                                                 "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "tokens_per_s",
                                                 "replica_hours"}
    assert list(back.requests.columns) == ["request_id", "service", "arrival_s", "first_token_s", "end_s",
                                           "prompt_tokens", "output_tokens", "replica", "status",
                                           "preemptions"]


def test_a_run_without_requests_removes_an_old_requests_file(tmp_path):
    simulator.run(scenario(), progress=False).write(tmp_path)
    assert (tmp_path / "requests.parquet").is_file()
    s = scenario()
    del s["services"], s["requests"]
    s["workload"] = [{"kind": "synthetic", "jobs": 5, "arrival": {"process": "poisson", "rate_per_hour": 10},
                      "gpus": 1, "duration": {"dist": "constant", "value": 60}}]
    simulator.run(s, progress=False).write(tmp_path)
    assert not (tmp_path / "requests.parquet").exists()
    assert Results.read(tmp_path).requests is None


def test_same_seed_same_requests():
    a, b = (simulator.run(scenario(requests__0__output_tokens={"dist": "exponential", "mean": 20}),
                          progress=False) for _ in range(2))
    assert a.requests.equals(b.requests)


@pytest.mark.parametrize(("change", "where", "message"), [
    ({"services__0__pool": "nope"}, "services[0].pool", "no pool named 'nope'"),
    ({"services__0__model": "llama9-1t"}, "services[0].model", "unknown model"),
    ({"services__0__model": "llama3-405b"}, "services[0].layout", "does not fit"),
    ({"services__0__replicas": 9}, "services[0].replicas", "cannot hold 9 replicas"),
    ({"services__0__layout": {"tp": 16}}, "services[0].layout.tp", "needs 16 devices of one node"),
    ({"requests__0__service": "other"}, "requests[0].service", "no service named 'other'"),
])
def test_bad_services_are_refused_with_their_key(change, where, message):
    with pytest.raises(CapsimError, match=message) as info:
        simulator.run(scenario(**change), progress=False)
    assert info.value.where == where


def test_bad_keys_are_refused_by_the_schema():
    with pytest.raises(CapsimError, match="services"):
        simulator.run(scenario(services__0__replicas=0), progress=False)
    with pytest.raises(CapsimError, match="unknown|extra|not permitted"):
        simulator.run(scenario(services__0__scheduler={"max_num_seqz": 4}), progress=False)
    s = scenario()
    del s["services"]
    with pytest.raises(CapsimError, match="give services and requests"):
        simulator.run(s, progress=False)
    s["workload"] = [{"kind": "synthetic", "jobs": 5, "arrival": {"process": "poisson", "rate_per_hour": 10},
                      "gpus": 1, "duration": {"dist": "constant", "value": 60}}]
    with pytest.raises(CapsimError, match="requests need services"):
        simulator.run(s, progress=False)


def test_chunked_prefill_serves_long_prompts_and_conserves_tokens(fleets):
    """A budget of 512 tokens per iteration, prompts up to 2,000: nothing is refused for its length,
    every token is generated once, Little's law holds, and decodes never pause for a prefill, so the
    p99 TPOT is below the non-chunked replica's (whose decodes wait for whole prefills)."""
    common = dict(services__0__replicas=2, requests__0__requests=1500,
                  requests__0__arrival={"process": "poisson", "rate_per_s": 20.0},
                  requests__0__prompt_tokens={"dist": "uniform", "low": 16, "high": 2000},
                  requests__0__output_tokens={"dist": "lognormal", "median": 64, "sigma": 0.8, "max": 1000})
    res = simulator.run(scenario(services__0__scheduler={"max_num_seqs": 32, "max_batched_tokens": 512,
                                                         "chunked_prefill": True}, **common), progress=False)
    req, svc = res.requests, res.summary["services"]["chat"]
    fleet = fleets[-1]
    assert (req["status"] == "completed").all() and (req["prompt_tokens"] > 512).any()
    assert sum(r.tokens for r in fleet.replicas[0]) == req["output_tokens"].sum() == svc["output_tokens"]
    span = req["end_s"].max() - req["arrival_s"].min()
    w = (req["end_s"] - req["arrival_s"]).mean()
    assert fleet.area / span == pytest.approx(len(req) / span * w, rel=1e-9)
    plain = simulator.run(scenario(services__0__scheduler={"max_num_seqs": 32, "max_batched_tokens": 2048},
                                   **common), progress=False).summary["services"]["chat"]
    assert svc["tpot_p99_s"] < plain["tpot_p99_s"]
