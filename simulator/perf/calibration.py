"""Fitting the stacks' free parameters on the named calibration set, and their cross-validated error.

The calibration set is workloads/validation/published_runs.yaml: published end-to-end training runs,
each with its source. Everything else in a prediction comes from kernels (measured GEMM, attention,
HBM and collective points) and from documented stack parameters. Each stack gets one number,
`efficiency`: the share of the modelled kernel time it achieves end to end. It is fitted robustly so
that the median log error of the stack's rows is zero, then shrunk toward the efficiency pooled over
all rows as if the pool contributed PRIOR_ROWS rows (a stack with one or two rows is not tuned to
them). Stacks without rows take the pooled efficiency. The efficiencies come from the dense rows only;
one more number, the host time an eager stack spends per local expert of an MoE layer, is then fitted
on the MoE rows (zero median log error, by bisection) at those efficiencies.

Cross-validation holds out every row of one group (a publication `family`, a `device`, a `stack`, or
one row at a time), refits on the rest and predicts the held-out rows: the error a planner should expect
on runs that were not in the set. Leaving a whole family out is the headline figure (a new publication);
leaving one row out is what a prediction close to a known run can expect (simulator/perf/band.py). `capsim validate-perf --fit` writes the fit and these errors to
workloads/validation/calibration_fit.yaml; `--cv` recomputes and prints them."""

from __future__ import annotations

import math
import statistics
from datetime import date
from pathlib import Path

import yaml

from simulator.perf.published import (
    PublishedRow,
    error_summary,
    evaluate_run,
    is_serving,
    load_runs,
    resolve_dtype,
    resolve_stack,
    run_model,
)
from simulator.perf.row_fields import speed_ratio
from simulator.perf.stacks import _stack_file, fit_file, fitted_efficiencies, trial_efficiencies

PRIOR_ROWS = 2.0
CV_GROUPS = ("family", "device", "stack", "name")
MAX_ITERATIONS = 12
# The MoE host time per local expert is searched in [0, MOE_HOST_US_MAX] us by this many bisections (0.1 us).
MOE_HOST_US_MAX, MOE_BISECTIONS = 1000.0, 14


def calibration_runs(path: str | Path | None = None) -> list[dict]:
    """The training rows of the calibration set that count (in_summary, not serving)."""
    from simulator.perf.published import default_table

    return [r for r in load_runs(path or default_table())
            if isinstance(r, dict) and not is_serving(r) and r.get("in_summary", True)]


def _speed_log_error(row: PublishedRow) -> float:
    """log(predicted speed / published speed): positive = optimistic, whatever the metric."""
    return math.log(speed_ratio(row.published, row.predicted, row.metric))


def _stack_of(run: dict) -> str:
    return resolve_stack(run.get("stack"))[0]


def _solve(runs: list[dict], per_stack: dict, default: float, stack: str | None) -> float:
    """The efficiency that zeroes the median log error of `runs` (all priced at it when stack is None,
    else only that stack): fixed-point steps e <- e * exp(-median), since speed is close to
    proportional to the efficiency of the kernel time."""
    e = per_stack.get(stack, default) if stack else default
    for _ in range(MAX_ITERATIONS):
        table, dflt = ({**per_stack, stack: e}, default) if stack else ({}, e)
        with trial_efficiencies(table, dflt, 0.0):  # efficiencies come from dense rows, which it does not touch
            rows = [evaluate_run(r) for r in runs]
        errs = [_speed_log_error(r) for r in rows if r.predicted is not None]
        if not errs:
            return e
        med = statistics.median(errs)
        e = min(2.0, max(0.05, e * math.exp(-med)))
        if abs(med) < 1e-4:
            break
    return e


def _fit_efficiencies(free: list[dict]) -> dict:
    pooled = _solve(free, {}, 1.0, None) if free else 1.0
    stacks: dict[str, dict] = {}
    for name in sorted({_stack_of(r) for r in free}):
        mine = [r for r in free if _stack_of(r) == name]
        raw = _solve(mine, {}, pooled, name)
        n = len(mine)
        shrunk = math.exp((n * math.log(raw) + PRIOR_ROWS * math.log(pooled)) / (n + PRIOR_ROWS))
        stacks[name] = {"efficiency": round(shrunk, 4), "rows": n, "unshrunk": round(raw, 4)}
    return {"pooled_efficiency": round(pooled, 4), "moe_host_us_per_expert": 0.0, "stacks": stacks}


def _is_moe(run: dict) -> bool:
    """Whether a row's model is a mixture of experts, under any of the model's spellings (a zoo name,
    config.json keys); False for a row the model cannot express."""
    model = _row_model(run)
    return model is not None and model.is_moe


def _solve_moe_host(fitted: dict, moe_runs: list[dict]) -> float:
    """The MoE host time per local expert (us) that zeroes the median log error of the MoE rows at the
    fitted efficiencies: bisection, since more host time only slows an MoE row down."""
    def median_error(us: float) -> float:
        rows = _predict_with({**fitted, "moe_host_us_per_expert": us}, moe_runs)
        errs = [_speed_log_error(r) for r in rows if r.predicted is not None]
        return statistics.median(errs) if errs else 0.0

    low, high = 0.0, MOE_HOST_US_MAX
    if median_error(low) <= 0:
        return 0.0  # already pessimistic without it
    for _ in range(MOE_BISECTIONS):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if median_error(mid) > 0 else (low, mid)
    return 0.5 * (low + high)


def fit(runs: list[dict]) -> dict:
    """{"pooled_efficiency": e0, "moe_host_us_per_expert": us, "stacks": {stack: {"efficiency": e, "rows": n}}}
    over `runs`. The efficiencies are fitted on the dense rows, which the MoE host time does not touch;
    then the MoE host time on the MoE rows at those efficiencies (0 without MoE rows). Keeping the two
    apart means an MoE row never moves a stack's efficiency, so the dense rows are priced the same
    whatever MoE rows the set holds."""
    free = [r for r in runs if not _stack_file(_stack_of(r)).efficiency_fixed]
    moe_runs = [r for r in free if _is_moe(r)]
    fitted = _fit_efficiencies([r for r in free if not _is_moe(r)] or free)
    if moe_runs:
        fitted["moe_host_us_per_expert"] = round(_solve_moe_host(fitted, moe_runs), 1)
    return fitted


def _predict_with(fitted: dict, runs: list[dict]) -> list[PublishedRow]:
    table = {k: v["efficiency"] for k, v in fitted["stacks"].items()}
    with trial_efficiencies(table, fitted["pooled_efficiency"], fitted.get("moe_host_us_per_expert", 0.0)):
        return [evaluate_run(r) for r in runs]


def group_key(run: dict, by: str) -> str:
    if by == "stack":
        return _stack_of(run)
    return str(run.get(by) or run.get("name"))


def cross_validate(runs: list[dict], by: str = "family") -> list[PublishedRow]:
    """Leave-one-group-out predictions: every row predicted by a fit that never saw its group."""
    out: dict[int, PublishedRow] = {}
    for g in sorted({group_key(r, by) for r in runs}):
        held = [i for i, r in enumerate(runs) if group_key(r, by) == g]
        rest = [r for r in runs if group_key(r, by) != g]
        rows = _predict_with(fit(rest), [runs[i] for i in held])
        out.update(zip(held, rows, strict=True))
    return [out[i] for i in range(len(runs))]


def _errors(rows: list[PublishedRow]) -> list[float]:
    return [r.error for r in rows if r.error is not None]


def calibrate(path: str | Path | None = None) -> dict:
    """The fit, its in-sample error and its cross-validated error by family, device and stack."""
    runs = calibration_runs(path)
    fitted = fit(runs)
    in_sample = _predict_with(fitted, runs)
    cv = {by: cross_validate(runs, by) for by in CV_GROUPS}
    return {
        **fitted,
        "calibration_set": "workloads/validation/published_runs.yaml",
        "fitted_on": date.today().isoformat(),
        "in_sample": error_summary(_errors(in_sample)),
        "cross_validated": {f"leave_one_{'row' if by == 'name' else by}_out": error_summary(_errors(rows))
                            for by, rows in cv.items()},
        "rows": [{"name": r.name, "device": r.device, "stack": _stack_of(run), "family": str(run.get("family") or ""),
                  "dtype": str(resolve_dtype((run.get("layout") or {}).get("dtype", "bf16"))[0]), "params_b": round(_params_b(run), 2), "moe": _is_moe(run),
                  "in_sample_error": _round(r.error),
                  "cv_row_error": _round(one.error), "cv_family_error": _round(fam.error),
                  "cv_device_error": _round(dev.error), "cv_stack_error": _round(stk.error)}
                 for run, r, one, fam, dev, stk in zip(runs, in_sample, cv["name"], cv["family"], cv["device"],
                                                       cv["stack"], strict=True)],
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _row_model(run: dict):
    """A row's ModelSpec (published.run_model), or None when the model cannot express it."""
    from simulator.errors import CapsimError

    try:
        return run_model(run)
    except (CapsimError, KeyError, TypeError, ValueError):  # an unexpressible row still gets a place
        return None


def _params_b(run: dict) -> float:
    """Billions of parameters of a row's model (for the nearest-rows error band); 0 if unknown."""
    model = _row_model(run)
    return 0.0 if model is None else model.total_params() / 1e9


def write_fit(result: dict, path: Path | None = None) -> Path:
    """Write the fit atomically (temporary file, then rename)."""
    from simulator.files import atomic_write

    path = Path(path or fit_file())
    header = ("# Written by `capsim validate-perf --fit` from the calibration set named below; do not edit by\n"
              "# hand. efficiency: share of the modelled kernel time each stack achieves (simulator/perf/stacks.py).\n")
    atomic_write(path, lambda p: Path(p).write_text(header + yaml.safe_dump(result, sort_keys=False, width=110)))
    from simulator.perf import band

    fitted_efficiencies.cache_clear()
    band._rows.cache_clear()
    return path
