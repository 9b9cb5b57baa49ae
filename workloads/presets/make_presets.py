"""Regenerate the shipped presets (helios-venus, philly, acme-seren) from the public trace figures in
../shared/data/traces (beside the project checkout). Run from anywhere:

    python workloads/presets/make_presets.py [--shared PATH]

Every number written names its source; numbers that are assumptions say so. The raw files are not copied.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import brentq
from scipy.stats import norm

from simulator.workload.fitting import fit_durations

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parents[2] / "shared"
TRACES = "data/traces"
HELIOS_SUMMARY = "helios/helios_cluster_summary.csv"
VENUS_THROUGHPUT = "helios/Venus_cluster_throughput_10min.csv"
PHILLY_RUNTIMES = "philly/philly_runtime_from_alibaba_analysis.csv"
PHILLY_NODES = "philly/philly_node_sequence_minute.csv"
ACME_SUMMARY = "acme/cluster_summary.csv"
ACME_SPAN_DAYS = 184  # March-August 2023, AcmeTrace README (github.com/InternLM/AcmeTrace): "6 months"


def _figure(value, source: str) -> dict:
    return {"value": value, "source": source}


def clipped_lognormal_sigma(median: float, mean: float, clip: float) -> float:
    """sigma of a lognormal with this median whose values are clipped at `clip` and whose mean is `mean`."""
    mu, log_clip = np.log(median), np.log(clip)

    def clipped_mean(sigma):
        below = np.exp(mu + sigma**2 / 2) * norm.cdf((log_clip - mu - sigma**2) / sigma)
        return below + clip * norm.sf((log_clip - mu) / sigma) - mean

    return float(brentq(clipped_mean, 0.05, 10.0))


def tilted_sizes(sizes: np.ndarray, counts: np.ndarray, single_share: float, mean: float) -> list[float]:
    """Keep P(1) = single_share; reweight the multi-GPU sizes by size^theta so the overall mean is `mean`."""
    multi = sizes > 1

    def overall_mean(theta):
        w = counts[multi] * sizes[multi] ** theta
        return single_share + (1 - single_share) * float(w @ sizes[multi] / w.sum()) - mean

    theta = brentq(overall_mean, -5.0, 5.0)
    w = np.where(multi, counts * sizes.astype(float) ** theta, 0.0)
    w = (1 - single_share) * w / w.sum()
    w[~multi] = single_share
    return [round(float(v), 6) for v in w]


def geometric_sizes(max_gpus: int, mean: float, single_share: float | None) -> tuple[list[int], list[float]]:
    """Powers of two 1..max_gpus with P(2^k) proportional to r^k, r solved for `mean`; with single_share,
    P(1) is fixed and only the multi-GPU tail is geometric."""
    sizes = 2 ** np.arange(int(np.log2(max_gpus)) + 1)

    def weights(r):
        w = r ** np.arange(len(sizes), dtype=float)
        if single_share is None:
            return w / w.sum()
        w[0] = 0.0
        w = (1 - single_share) * w / w.sum()
        w[0] = single_share
        return w

    r = brentq(lambda r: weights(r) @ sizes - mean, 1e-6, 10.0)
    return sizes.tolist(), [round(float(v), 6) for v in weights(r)]


def helios_venus(shared: Path) -> dict:
    summary = pd.read_csv(shared / TRACES / HELIOS_SUMMARY).set_index("id").loc["Venus"]
    helios_max = pd.read_csv(shared / TRACES / ACME_SUMMARY).set_index("id").loc["Helios", "max_run_time_gpu"]
    tp = pd.read_csv(shared / TRACES / VENUS_THROUGHPUT, parse_dates=["time"])
    span_h = (tp["time"].max() - tp["time"].min()).total_seconds() / 3600 + 1 / 6
    rate = tp["submit_gpu_job"].sum() / span_h
    hour = tp.groupby(tp["time"].dt.hour)["submit_gpu_job"].mean()
    day = tp.groupby(tp["time"].dt.day_of_week)["submit_gpu_job"].mean()
    single_bins = tp.loc[tp["submit_gpu_job"] == 1, "submit_gpu_num"]
    sizes, counts = np.unique(single_bins.to_numpy(), return_counts=True)
    single_share = float(counts[sizes == 1].sum() / counts.sum())
    mean_gpus, median_rt, mean_rt = (float(summary[k]) for k in ("avg_gpu_num", "med_run_time_gpu",
                                                                  "avg_run_time_gpu"))
    sigma = clipped_lognormal_sigma(median_rt, mean_rt, float(helios_max))
    src_sum = f"shared/{TRACES}/{HELIOS_SUMMARY} (Hu et al., SC'21), row Venus"
    src_tp = f"shared/{TRACES}/{VENUS_THROUGHPUT} (HeliosData, Apr-Sep 2020)"
    return {
        "preset": "helios-venus",
        "description": "Helios Venus-like GPU jobs (SenseTime, SC'21). Sizes and run times are independent: "
                       "the published summaries give no size-duration correlation.",
        "source": "Hu et al., 'Characterization and Prediction of Deep Learning Workloads in Large-Scale GPU "
                  "Datacenters', SC'21 (HeliosData)",
        "arrival": {"process": "diurnal", "rate_per_hour": round(float(rate), 4),
                    "hourly": [round(float(v), 4) for v in hour / hour.mean()],
                    "weekly": [round(float(v), 4) for v in day / day.mean()]},
        "classes": [{"weight": 1.0,
                     "gpus": {"choice": sizes.tolist(),
                              "weights": tilted_sizes(sizes, counts, single_share, mean_gpus)},
                     "duration": {"dist": "lognormal", "median": median_rt, "sigma": round(sigma, 6),
                                  "max": float(helios_max)}}],
        "published": {"mean_runtime_s": mean_rt, "median_runtime_s": median_rt, "mean_gpus": mean_gpus,
                      "single_gpu_share": round(single_share, 4)},
        "figures": {
            "rate_per_hour": _figure(round(float(rate), 4), f"{src_tp}: GPU-job submissions / span "
                                     f"({int(tp['submit_gpu_job'].sum())} jobs; the summary counts "
                                     f"{int(summary['gpu_job_num'])})"),
            "hourly": _figure("relative", f"{src_tp}: mean GPU-job submissions per 10 min by hour of day "
                              "(trace clock)"),
            "weekly": _figure("relative", f"{src_tp}: the same by day of week, Monday first"),
            "mean_runtime_s": _figure(mean_rt, f"{src_sum}, avg_run_time_gpu"),
            "median_runtime_s": _figure(median_rt, f"{src_sum}, med_run_time_gpu"),
            "mean_gpus": _figure(mean_gpus, f"{src_sum}, avg_gpu_num"),
            "max_runtime_s": _figure(float(helios_max), f"shared/{TRACES}/{ACME_SUMMARY}, row Helios "
                                     "max_run_time_gpu (all four Helios clusters)"),
            "single_gpu_share": _figure(round(single_share, 4), f"derived: {src_tp}, the {len(single_bins)} "
                                        "10-minute bins with exactly one GPU-job submission"),
            "gpu_sizes": _figure("shape", "derived: the same bins' GPU counts, multi-GPU sizes reweighted by "
                                 "size^theta to match avg_gpu_num (single-submission bins fall in quiet hours)"),
            "sigma": _figure(round(sigma, 6), "derived: lognormal with the published median whose mean, "
                             "clipped at max_runtime_s, equals the published mean"),
        },
    }


def philly(shared: Path) -> dict:
    acme = pd.read_csv(shared / TRACES / ACME_SUMMARY).set_index("id").loc["Philly"]
    runtimes = pd.read_csv(shared / TRACES / PHILLY_RUNTIMES)["runtime"].to_numpy(dtype=float)
    nodes = pd.read_csv(shared / TRACES / PHILLY_NODES, usecols=["time"], parse_dates=["time"])
    span_h = (nodes["time"].max() - nodes["time"].min()).total_seconds() / 3600
    rate = float(acme["gpu_job_num"]) / span_h
    duration, report = fit_durations(runtimes)
    sizes, weights = geometric_sizes(int(acme["max_gpu"]), float(acme["avg_gpu_num"]), None)
    src_acme = f"shared/{TRACES}/{ACME_SUMMARY} (Hu et al., NSDI'24, Table of prior traces), row Philly"
    src_rt = f"shared/{TRACES}/{PHILLY_RUNTIMES} ({len(runtimes)} Philly run times)"
    return {
        "preset": "philly",
        "description": "Microsoft Philly-like GPU jobs (Jeon et al., ATC'19). Sizes and run times independent.",
        "source": "Jeon et al., 'Analysis of Large-Scale Multi-Tenant GPU Clusters for DNN Training "
                  "Workloads', USENIX ATC'19 (msr-fiddle/philly-traces)",
        "arrival": {"process": "poisson", "rate_per_hour": round(rate, 4)},
        "classes": [{"weight": 1.0, "gpus": {"choice": sizes, "weights": weights}, "duration": duration}],
        "published": {"mean_runtime_s": round(float(runtimes.mean()), 3),
                      "median_runtime_s": float(np.median(runtimes)), "mean_gpus": float(acme["avg_gpu_num"])},
        "figures": {
            "rate_per_hour": _figure(round(rate, 4), f"{src_acme} gpu_job_num ({int(acme['gpu_job_num'])}) over "
                                     f"the span of shared/{TRACES}/{PHILLY_NODES} ({span_h / 24:.1f} days)"),
            "duration": _figure(report["chosen"], f"{src_rt}, fitted by simulator.workload.fitting"),
            "mean_runtime_s": _figure(round(float(runtimes.mean()), 3), f"{src_rt}; the NSDI'24 summary gives "
                                      f"{float(acme['avg_run_time_gpu'])} s over all {int(acme['gpu_job_num'])} jobs"),
            "median_runtime_s": _figure(float(np.median(runtimes)), f"{src_rt}; the summary gives "
                                        f"{float(acme['med_run_time_gpu'])} s"),
            "mean_gpus": _figure(float(acme["avg_gpu_num"]), f"{src_acme}, avg_gpu_num"),
            "max_gpus": _figure(int(acme["max_gpu"]), f"{src_acme}, max_gpu"),
            "gpu_sizes": _figure("assumption", "powers of two up to max_gpus with P(2^k) proportional to r^k, "
                                 "r solved for avg_gpu_num; no published size histogram is in shared/"),
        },
        "fit": {"duration": report},
    }


def acme_seren(shared: Path) -> dict:
    row = pd.read_csv(shared / TRACES / ACME_SUMMARY).set_index("id").loc["Seren"]
    mean_rt, median_rt, clip = (float(row[k]) for k in ("avg_run_time_gpu", "med_run_time_gpu", "max_run_time_gpu"))
    sigma = clipped_lognormal_sigma(median_rt, mean_rt, clip)
    single_share = 0.55
    sizes, weights = geometric_sizes(int(row["max_gpu"]), float(row["avg_gpu_num"]), single_share)
    rate = float(row["gpu_job_num"]) / (ACME_SPAN_DAYS * 24)
    src = f"shared/{TRACES}/{ACME_SUMMARY} (Hu et al., NSDI'24), row Seren"
    return {
        "preset": "acme-seren",
        "description": "Acme Seren-like LLM-development GPU jobs (Shanghai AI Lab, NSDI'24): many short "
                       "evaluation/debug jobs and rare jobs of hundreds of GPUs. Sizes and run times independent.",
        "source": "Hu et al., 'Characterization of Large Language Model Development in the Datacenter', "
                  "NSDI'24 (InternLM/AcmeTrace)",
        "arrival": {"process": "poisson", "rate_per_hour": round(rate, 4)},
        "classes": [{"weight": 1.0, "gpus": {"choice": sizes, "weights": weights},
                     "duration": {"dist": "lognormal", "median": median_rt, "sigma": round(sigma, 6), "max": clip}}],
        "published": {"mean_runtime_s": mean_rt, "median_runtime_s": median_rt,
                      "mean_gpus": float(row["avg_gpu_num"])},
        "figures": {
            "rate_per_hour": _figure(round(rate, 4), f"{src} gpu_job_num ({int(row['gpu_job_num'])}) over "
                                     f"{ACME_SPAN_DAYS} days (Mar-Aug 2023, AcmeTrace README)"),
            "mean_runtime_s": _figure(mean_rt, f"{src}, avg_run_time_gpu"),
            "median_runtime_s": _figure(median_rt, f"{src}, med_run_time_gpu"),
            "max_runtime_s": _figure(clip, f"{src}, max_run_time_gpu"),
            "mean_gpus": _figure(float(row["avg_gpu_num"]), f"{src}, avg_gpu_num"),
            "max_gpus": _figure(int(row["max_gpu"]), f"{src}, max_gpu"),
            "sigma": _figure(round(sigma, 6), "derived: lognormal with the published median whose mean, "
                             "clipped at max_runtime_s, equals the published mean"),
            "single_gpu_share": _figure(single_share, "assumption: the published median of 1 GPU needs at "
                                        "least 0.5; a one-parameter geometric would put it below 0.5"),
            "gpu_sizes": _figure("assumption", "powers of two up to max_gpus; multi-GPU shares proportional "
                                 "to r^k, r solved for avg_gpu_num"),
        },
    }


BUILDERS = {"helios-venus": helios_venus, "philly": philly, "acme-seren": acme_seren}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    for name, build in BUILDERS.items():
        path = args.out / f"{name}.yaml"
        header = f"# Generated by workloads/presets/make_presets.py from ../shared/{TRACES}; do not edit.\n"
        path.write_text(header + yaml.safe_dump(build(args.shared), sort_keys=False, width=110, default_flow_style=None))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
