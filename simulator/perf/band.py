"""How sure a prediction is: the cross-validated errors of the nearest calibration rows.

Training: `capsim validate-perf --fit` stores, for every row of the calibration set, the error its prediction had
when that row was left out of the fit. A new prediction takes the NEAREST
rows (same device first, then same device generation, same stack, dense or MoE, closest model size) and reports the
range of their errors as a range on its own value: if those runs came out between 12% optimistic and
5% pessimistic, the real figure is likely between prediction / 1.12 and prediction / 0.95. A prediction on a
device (or in a stack) that no calibration row has is like predicting a row whose device (stack) the fit
never saw, so its nearest rows' errors are the ones they had with their device (stack) left out of the fit.

Serving: nothing is fitted on the serving validation set, so each of its rows' errors is already out
of sample; `serving_band` takes the nearest of them the same way (device, stack, precision, size)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from simulator.errors import CapsimError
from simulator.perf.profile import load_profile
from simulator.perf.stacks import fit_file
from simulator.yaml_file import load_data_yaml

# How many nearest rows a band spans: chosen so that the band holds about 4 runs in 5. The range of k errors
# drawn alike holds a new one with probability (k - 1) / (k + 1); measured by leaving each row of a set out
# and taking the band of its k nearest others (2026-12-03), the k whose coverage is nearest 80%: training,
# the calibration set's left-out errors, 67% / 79% / 82% at k = 5 / 7 / 9; serving, the serving set's
# errors, 63% / 77% / 80%. Until 2026-12-03 both took 5.
NEAREST = 7
NEAREST_SERVING = 9


@dataclass(frozen=True)
class Band:
    low_error: float   # most pessimistic (negative = the model under-predicted) of the nearest rows
    high_error: float  # most optimistic
    rows: tuple[str, ...]
    kind: str = "cross-validated"  # how the rows' errors were obtained
    left_out: tuple[str, ...] = ()  # what each row was left out of the fit with, beyond itself: device, stack

    def interval(self, predicted: float) -> tuple[float, float]:
        """The range of the real figure for a predicted speed (tokens/s, TFLOP/s, MFU)."""
        return predicted / (1.0 + self.high_error), predicted / (1.0 + self.low_error)

    def time_interval(self, predicted: float) -> tuple[float, float]:
        """The range of the real figure for a predicted time (optimistic = predicted too short)."""
        return predicted * (1.0 + self.low_error), predicted * (1.0 + self.high_error)

    def describe(self) -> str:
        return (f"{self.kind} errors {self.low_error:+.0%} to {self.high_error:+.0%} "
                f"on the {len(self.rows)} nearest published runs")

    def as_dict(self, predicted: float | None = None) -> dict:
        left_out = "".join(f" with its {key}" if i == 0 else f" and, separately, its {key}"
                           for i, key in enumerate(self.left_out))
        out = {"low_error": self.low_error, "high_error": self.high_error, "nearest_runs": list(self.rows),
               "basis": f"errors of the nearest calibration runs (device, stack, size), each{left_out} left out of the fit"}
        if predicted is not None:
            lo, hi = self.interval(predicted)
            out["tokens_per_s_per_gpu"] = [lo, hi]
        return out


@cache
def _rows() -> tuple[dict, ...]:
    path = fit_file()
    if not path.is_file():
        return ()
    with path.open() as fh:
        data = load_data_yaml(fh) or {}
    return tuple(r for r in data.get("rows") or () if r.get("cv_row_error") is not None)


def _arch(device: str) -> str:
    try:
        return load_profile(device).arch
    except CapsimError:  # a calibration row on a device without a profile here
        return ""


def distance(row: dict, device: str, stack: str, params_b: float, dtype: str = "bf16", moe: bool = False) -> float:
    """Device mismatch counts 2 (1 within the same generation), stack 1, dense vs mixture-of-experts 1,
    precision 0.5, and each factor of 10 in size 1."""
    d = 0.0 if row.get("dtype", "bf16") == dtype else 0.5
    if bool(row.get("moe", False)) != moe:
        d += 1.0
    if row["device"] != device:
        d += 1.0 if _arch(row["device"]) == _arch(device) else 2.0
    if row["stack"] != stack:
        d += 1.0
    if params_b > 0 and row.get("params_b", 0) > 0:
        d += abs(math.log10(params_b / row["params_b"]))
    return d


def error_band(device: str, stack: str, params_b: float, dtype: str = "bf16", k: int = NEAREST,
               moe: bool = False) -> Band | None:
    """The band of the k nearest calibration rows, or None before any fit."""
    rows = _rows()
    if not rows:
        return None
    near = sorted(rows, key=lambda r: (distance(r, device, stack, params_b, dtype, moe), r["name"]))[:k]
    unseen = [key for key, value in (("device", device), ("stack", stack)) if all(r[key] != value for r in rows)]
    columns = [f"cv_{key}_error" for key in unseen] or ["cv_row_error"]
    # (a fit written before these columns existed, or a row its left-out fit could not price: the row error)
    errs = [float(r["cv_row_error"] if r.get(c) is None else r[c]) for r in near for c in columns]
    kind = f"{'- and '.join(unseen)}-out cross-validated" if unseen else "cross-validated"
    return Band(min(errs), max(errs), tuple(r["name"] for r in near), kind, tuple(unseen))


def serving_band(device: str, stack: str, params_b: float, dtype: str = "bf16",
                 k: int = NEAREST_SERVING) -> Band | None:
    """The band of the k nearest rows of the serving validation set (their errors as speed ratios:
    +10% = the model predicted 10% faster than measured), or None when the set is absent."""
    from simulator.perf.serving_validation import row_errors

    rows = row_errors()
    if not rows:
        return None
    near = sorted(rows, key=lambda r: (distance(r, device, stack, params_b, dtype), r["name"]))[:k]
    errs = [r["speed_error"] for r in near]
    return Band(min(errs), max(errs), tuple(r["name"] for r in near), kind="measured")
