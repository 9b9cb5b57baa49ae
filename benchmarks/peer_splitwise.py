"""capsim's serving fleet side by side with SplitwiseSim (Patel et al., ISCA 2024; github.com/Mutinifni/
splitwise-sim), the open serving simulator whose iteration times come from measured tables.

    python benchmarks/peer_splitwise.py --splitwise PATH [--python PY] [--requests 2000] [--rate 2]

PATH is a checkout of splitwise-sim (its `data/perf_model.csv` holds measured prompt and token times of
Llama 2 70B on DGX-H100 at TP8), PY a Python with its requirements (hydra-core, pandas, scipy, networkx).
The script writes one Poisson trace of equal requests into the checkout (`traces/capsim_peer.csv`) and a
copy of its `configs/config.yaml` without the Ray launcher (`configs/capsim_peer.yaml`), runs SplitwiseSim
on one DGX-H100 (its `baseline` start state: one TP8 instance, at most 512 sequences and 2048 batched
tokens per iteration), then runs capsim's fleet on the same arrivals with the same iteration times: a
replica cost that interpolates SplitwiseSim's table exactly as its DatabasePerformanceModel does
(linear in the iteration's batched tokens, extrapolated). What differs is then the scheduling alone:

- SplitwiseSim adds new prompts to the running batch (a mixed iteration costs 1.1x the prompt time of
  its tokens); capsim's vLLM prefill-first scheduler runs an iteration of prompts alone, which pauses
  the running sequences' decoding.
- SplitwiseSim's token_size counts the tokens after the prompt phase; capsim's output tokens include
  the one the prefill produces, so capsim is given token_size + 1.

It prints TTFT, time between tokens and end-to-end latency (mean, p50, p90, p99) from both and their
relative differences, and each simulator's wall time: SplitwiseSim's whole `run.py` process (its
imports and start-up included; use many requests to make them a small share) and capsim's fleet run. tests/serving/test_peer_splitwise.py runs it when SPLITWISE_SIM names a checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

MODEL, HARDWARE, TP = "llama2-70b", "h100-80gb", 8
MAX_SEQS, MAX_TOKENS = 512, 2048  # SplitwiseSim's configs/start_state/baseline.yaml
QUANTILES = (0.5, 0.9, 0.99)


class SplitwiseTableCost:
    """Iteration times from SplitwiseSim's measured table, interpolated as its DatabasePerformanceModel
    does: medians per batched-token count (prompt_size x batch_size), linear, extrapolated."""

    def __init__(self, table: pd.DataFrame):
        sub = table[(table.model == MODEL) & (table.hardware == HARDWARE) & (table.tensor_parallel == TP)].copy()
        sub["batch_tokens"] = sub.prompt_size * sub.batch_size
        med = sub.groupby("batch_tokens")[["prompt_time", "token_time"]].median() / 1000.0
        self.x = med.index.to_numpy(dtype=float)
        self.prompt_y = med.prompt_time.to_numpy()
        self.token_y = med.token_time.to_numpy()

    def _interp(self, ys, x: float) -> float:
        xs = self.x
        i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))  # scipy interp1d's extrapolation
        return float(ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i]))

    def prefill(self, n: int, tokens: int) -> float:
        return self._interp(self.prompt_y, tokens)

    def decode(self, b: int) -> tuple[float, float]:
        return self._interp(self.token_y, b), 0.0  # SplitwiseSim's token time does not grow with context


def poisson_trace(requests: int, rate: float, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, requests))


def run_splitwise(checkout: Path, python: str, arrival: np.ndarray, prompt: int, tokens: int) -> pd.DataFrame:
    trace = pd.DataFrame({"request_id": range(len(arrival)), "request_type": 2, "application_id": 0,
                          "arrival_timestamp": arrival, "batch_size": 1, "prompt_size": prompt,
                          "token_size": tokens})
    trace.to_csv(checkout / "traces" / "capsim_peer.csv", index=False, float_format="%.9f")
    config = (checkout / "configs" / "config.yaml").read_text()
    config = config.replace("  - override hydra/launcher: ray\n", "")
    config = config[: config.index("  launcher:")] if "  launcher:" in config else config
    (checkout / "configs" / "capsim_peer.yaml").write_text(config)
    out = "capsim_peer_results"
    subprocess.run([python, "run.py", "--config-name", "capsim_peer", "applications.0.scheduler=round_robin",
                    f"applications.0.model_architecture={MODEL}", f"applications.0.model_size={MODEL}-fp16",
                    "cluster=dgx-h100", "cluster.servers.1.count=1", "start_state=baseline",
                    "performance_model=db", "trace.filename=capsim_peer", "seed=0", f"output_dir={out}"],
                   cwd=checkout, check=True, capture_output=True, text=True)
    detail = pd.read_csv(checkout / out / "detailed" / "0.csv")
    return pd.DataFrame({"ttft": detail.ttft_times, "tbt": detail.tbt_times, "e2e": detail.response_times})


def run_capsim(cost, arrival: np.ndarray, prompt: int, tokens: int) -> pd.DataFrame:
    from simulator.serving.fleet import ServiceRuntime, simulate

    n = len(arrival)
    output = tokens + 1  # the prefill's token, then SplitwiseSim's token_size decode iterations
    service = ServiceRuntime("peer", replicas=1, cost=cost, max_num_seqs=MAX_SEQS, max_batched_tokens=MAX_TOKENS,
                             kv_blocks=10**9, block_size=16)
    fleet = simulate([service], arrival, np.full(n, prompt), np.full(n, output))
    first, end = np.asarray(fleet.first), np.asarray(fleet.end)
    return pd.DataFrame({"ttft": first - arrival, "tbt": (end - first) / tokens, "e2e": end - arrival})


def compare(peer: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for metric in ("ttft", "tbt", "e2e"):
        stats = [("mean", peer[metric].mean(), ours[metric].mean())]
        stats += [(f"p{round(q * 100)}", peer[metric].quantile(q), ours[metric].quantile(q)) for q in QUANTILES]
        rows += [{"metric": metric, "stat": s, "splitwise_s": a, "capsim_s": b, "difference": b / a - 1.0}
                 for s, a, b in stats]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splitwise", type=Path, required=True, help="a splitwise-sim checkout")
    parser.add_argument("--python", default=sys.executable, help="a Python with splitwise-sim's requirements")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second (Poisson)")
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated after the prompt phase")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    arrival = poisson_trace(args.requests, args.rate, args.seed)
    t0 = time.perf_counter()
    peer = run_splitwise(args.splitwise, args.python, arrival, args.prompt, args.tokens)
    t1 = time.perf_counter()
    cost = SplitwiseTableCost(pd.read_csv(args.splitwise / "data" / "perf_model.csv"))
    ours = run_capsim(cost, arrival, args.prompt, args.tokens)
    t2 = time.perf_counter()
    table = compare(peer, ours)
    print(f"{args.requests} requests, Poisson {args.rate}/s, prompt {args.prompt}, {args.tokens} tokens after it; "
          f"{MODEL} on one DGX-H100 (TP{TP}), SplitwiseSim's measured iteration times in both")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    n = args.requests
    print(f"wall time: SplitwiseSim {t1 - t0:.2f} s ({n / (t1 - t0):,.0f} requests/s, its process start-up "
          f"included), capsim {t2 - t1:.2f} s ({n / (t2 - t1):,.0f} requests/s)")
    return table


if __name__ == "__main__":
    main()
