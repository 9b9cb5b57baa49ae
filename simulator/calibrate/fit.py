"""Merge measured points into a profile YAML, refit its curves and write it atomically."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import yaml

from simulator.errors import CapsimError
from simulator.perf.collectives import fit_alpha_beta
from simulator.perf.profile import profile_from_dict
from simulator.yaml_file import load_yaml as load_checked_yaml

GEMM_DTYPES = {"float32": "fp32", "float16": "fp16", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8"}


def _stamp(points: list[dict], source: str, date: str) -> list[dict]:
    return [{**{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in p.items()}, "source": source, "date": date}
            for p in points]


def new_profile(device_id: str, results: dict) -> dict:
    """A profile for a machine with no datasheet entry: peaks are the best measured figures (said so)."""
    best_gemm = max((g["tflops"] for g in results["gemm"]), default=0.0)
    best_bw = max((h["gbs"] for h in results["hbm"]), default=0.0)
    note = f"no datasheet: best measured by capsim calibrate ({results['backend']})"
    return {
        "id": device_id, "name": results["device_name"], "vendor": "unknown",
        "kind": "cpu" if results["backend"].startswith("numpy") else "gpu",
        "spec": {"peak_tflops": {"bf16": float(f"{best_gemm:.4g}"), "fp8": None}, "memory_gib": 0,
                 "memory_bw_gbs": float(f"{best_bw:.4g}"),
                 "scale_up": {"bw_gbs": float(f"{best_bw:.4g}"), "domain": 1, "name": "none"},
                 "scale_out": {"bw_gbs": 1.0, "latency_us": 50},
                 "power": {"tdp_w": 0, "node_w": 0, "devices_per_node": 1}, "price_usd": None,
                 "sources": {"peak_tflops": note, "memory_bw_gbs": note,
                             "scale_up": "none: a single device", "scale_out": "assumed placeholder",
                             "power": "unknown", "memory_gib": "unknown"}},
    }


def merge_measurements(profile: dict, results: dict, date: str | None = None) -> dict:
    """Replace the points that this backend on this device measured before, keep the others, refit."""
    date = date or dt.date.today().isoformat()
    source = f"capsim calibrate on {results['device_name']} ({results['backend']})"
    out = dict(profile)
    measured = {k: list(v) for k, v in (out.get("measured") or {}).items()}
    gemm = [{**g, "dtype": GEMM_DTYPES.get(g["dtype"], g["dtype"])} for g in results["gemm"]]
    fresh = {"gemm": gemm, "hbm": results["hbm"], "attention": results.get("attention", []),
             "collectives": results.get("collectives", [])}
    for kind, pts in fresh.items():
        kept = [p for p in measured.get(kind, []) if p.get("source") != source]
        measured[kind] = kept + _stamp(pts, source, date)
    out["measured"] = measured
    sustained = results.get("sustained")
    if sustained:
        out["sustained"] = {"gemm_clock_fraction": sustained["gemm_clock_fraction"],
                            "source": f"{source}: {sustained['shape']} GEMM on random data, {sustained['burst_tflops']} "
                                      f"TFLOP/s in a burst, {sustained['sustained_tflops']} after "
                                      f"{sustained['seconds']:.0f} s back to back", "date": date}
    out["fitted"] = refit(out)
    return out


def refit(profile: dict) -> dict:
    """The curves the model uses, written beside the points for inspection (the model refits on load)."""
    prof = profile_from_dict(profile, source=str(profile.get("id")))
    gemm = sorted((g.dtype, g.m, g.n, g.k, round(g.tflops / prof.peak(g.dtype), 4)) for g in prof.gemm)
    fitted = {
        "gemm_efficiency": [{"dtype": d, "m": m, "n": n, "k": k, "efficiency": e} for d, m, n, k, e in gemm],
        "hbm_efficiency": [{"bytes": int(h.bytes), "efficiency": round(h.gbs / prof.memory_bw_gbs, 4)} for h in prof.hbm],
    }
    for scope in ("scale_up", "scale_out"):
        pts = [(c.op, c.bytes, c.group, c.busbw_gbs) for c in prof.collectives if c.scope == scope]
        if len(pts) >= 2:
            ab = fit_alpha_beta(pts)
            fitted[f"{scope}_alpha_beta"] = {"alpha_us": round(ab.alpha_s * 1e6, 3), "bw_gbs": round(ab.bw_Bps / 1e9, 3)}
    return fitted


def write_profile_atomic(path: str | Path, profile: dict) -> Path:
    """Write YAML to a temp file in the same folder, then os.replace: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(profile, fh, sort_keys=False, width=200)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_yaml(path: Path) -> dict:
    try:
        data = load_checked_yaml(path.read_text())[0]  # repeated keys, alias bombs, ... refused
    except yaml.YAMLError as exc:
        raise CapsimError(f"not valid YAML: {exc}", source=str(path)) from None
    if not isinstance(data, dict):
        raise CapsimError("expected a mapping at the top level", source=str(path))
    return data
