"""Typed view of a hardware profile YAML (spec sheet + measured kernel points + efficiency prior)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

from simulator.errors import CapsimError
from simulator.profiles import load_profile_yaml, profiles_dir

# 16-bit formats share one tensor-core peak. fp32 only appears in CPU-calibrated profiles (numpy has
# no bf16), where the measured fp32 GEMM is the machine's matmul peak. fp4 is NVFP4 (E2M1 elements, one
# E4M3 scale per 16: NVIDIA, "Pretraining Large Language Models with NVFP4", arXiv 2509.25149, sec. 2).
DTYPE_CLASS = {"bf16": "bf16", "fp16": "bf16", "fp32": "bf16", "fp8": "fp8", "fp4": "fp4"}
# The peaks a class runs at, first one the profile has: a device without FP4 tensor cores (Hopper) runs
# FP4 GEMMs at its FP8 peak, weight-only FP4 kernels dequantizing in the GEMM, else (Ampere, TPUs) at its
# 16-bit peak; a device without FP8 runs FP8 at its 16-bit peak. Only the Blackwell profiles (b200,
# gb200, b300, gb300) have an fp4 peak, each with its source in spec.sources.peak_tflops.
PEAK_CHAIN = {"bf16": ("bf16",), "fp8": ("fp8", "bf16"), "fp4": ("fp4", "fp8", "bf16")}


@dataclass(frozen=True)
class GemmPoint:
    m: int
    n: int
    k: int
    dtype: str
    tflops: float

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k


@dataclass(frozen=True)
class HbmPoint:
    bytes: float
    gbs: float


@dataclass(frozen=True)
class RelativeGemmPoint:
    """One GEMM size timed in two dtypes in the same run (same machine, clocks and harness): the rate in
    `dtype` against the rate in `against`. Their ratio carries over to a curve measured elsewhere where
    the two absolute rates would not (one harness's L2 flushes, shapes and clocks differ from another's)."""

    flops: float
    dtype: str
    tflops: float
    against: str
    against_tflops: float


@dataclass(frozen=True)
class CollectivePoint:
    op: str
    bytes: float
    group: int
    scope: str  # scale_up | scale_out
    busbw_gbs: float


@dataclass(frozen=True)
class AttentionPoint:
    """A fused-attention kernel's measured throughput (FLOPs counted as the kernel's authors count them:
    4*s*s*d per head forward, 2.5x that backward, halved when causal). A sliding-window point (`window`
    set: each query attends to at most that many keys, itself and the ones before it) counts the band,
    4*d*(s*w - w*(w-1)/2) per head forward (cuDNN's sdpa_benchmark_training count), 2.5x backward."""

    kernel: str     # fa2 | fa3 | cudnn | splash
    direction: str  # fwd | bwd
    causal: bool
    head_dim: int
    seq: int
    dtype: str
    tflops: float
    window: int | None = None  # sliding-window size; None = dense (full causal or non-causal) attention


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    vendor: str
    kind: str
    peak_tflops: dict
    memory_gib: float
    memory_bw_gbs: float
    scale_up_bw_gbs: float
    scale_up_domain: int
    scale_out_bw_gbs: float
    scale_out_latency_us: float
    tdp_w: float
    node_w: float
    devices_per_node: int
    price_usd: float | None
    gemm: tuple[GemmPoint, ...] = ()
    # the best GEMM a shape search found (mamf-finder's MAMF): compared across devices, not a curve point
    best_gemm: tuple[GemmPoint, ...] = ()
    # a dtype's rate against another's, timed together (kernels.gemm_curve: FP4 on Blackwell)
    relative_gemm: tuple[RelativeGemmPoint, ...] = ()
    hbm: tuple[HbmPoint, ...] = ()
    collectives: tuple[CollectivePoint, ...] = ()
    attention: tuple[AttentionPoint, ...] = ()
    prior_reference: str | None = None
    # whose fused-attention tables stand in for missing ones, where not prior_reference's: the same die
    # measured in another board (B300 HGX takes GB300's, not the older B200's)
    attention_reference: str | None = None
    arch: str = "default"  # device generation (ampere, hopper, blackwell, ...): picks a stack's attention kernel
    # share of the short-burst GEMM rate that a long, power-limited training GEMM keeps (None: not measured)
    sustained_gemm_fraction: float | None = None
    # side of a TPU's square systolic matrix unit (MXU); None: no such constraint modelled (GPUs)
    mxu_width: int | None = None

    def peak(self, dtype: str) -> float:
        """Peak dense TFLOP/s for dtype: the first of PEAK_CHAIN[its class] the profile has (fp4 -> fp8
        -> bf16; fp8 -> bf16)."""
        return float(next(self.peak_tflops[c] for c in PEAK_CHAIN[dtype_class(dtype)] if self.peak_tflops.get(c)))


def dtype_class(dtype: str) -> str:
    try:
        return DTYPE_CLASS[dtype]
    except KeyError:
        raise CapsimError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_CLASS)}", where="--dtype") from None


def _need(mapping: dict, key: str, path: str, source: str):
    if not isinstance(mapping, dict) or key not in mapping or mapping[key] is None:
        raise CapsimError(f"missing required key {path}{key}", source=source)
    return mapping[key]


def profile_from_dict(data: dict, source: str = "<profile>") -> Profile:
    """Validate and convert the raw YAML mapping; errors name the key path."""
    spec = _need(data, "spec", "", source)
    peaks = _need(spec, "peak_tflops", "spec.", source)
    _need(peaks, "bf16", "spec.peak_tflops.", source)
    up = _need(spec, "scale_up", "spec.", source)
    out = _need(spec, "scale_out", "spec.", source)
    power = _need(spec, "power", "spec.", source)
    measured = data.get("measured") or {}
    try:
        gemm, best_gemm = (tuple(GemmPoint(int(p["m"]), int(p["n"]), int(p["k"]), str(p["dtype"]), float(p["tflops"]))
                                 for p in measured.get(key) or ()) for key in ("gemm", "best_gemm"))
        hbm = tuple(HbmPoint(float(p["bytes"]), float(p["gbs"])) for p in measured.get("hbm") or ())
        coll = tuple(CollectivePoint(str(p["op"]), float(p["bytes"]), int(p["group"]),
                                     str(p.get("scope", "scale_up")), float(p["busbw_gbs"]))
                     for p in measured.get("collectives") or ())
        attention = tuple(AttentionPoint(str(p["kernel"]), str(p["direction"]), bool(p["causal"]), int(p["head_dim"]),
                                         int(p["seq"]), str(p.get("dtype", "bf16")), float(p["tflops"]),
                                         None if p.get("window") is None else int(p["window"]))
                          for p in measured.get("attention") or ())
    except (KeyError, TypeError, ValueError) as exc:
        raise CapsimError(f"bad measured point: {exc!r}", source=source, where="measured") from None
    for g in best_gemm:  # compared with other devices' as a fraction of peak: a known dtype, a positive rate
        if g.dtype not in DTYPE_CLASS or not (math.isfinite(g.tflops) and g.tflops > 0):
            raise CapsimError(f"expected a dtype of {sorted(DTYPE_CLASS)} and a positive tflops, got {g}",
                              source=source, where="measured.best_gemm")
    relative = _relative_gemm(measured.get("relative_gemm") or (), source)
    if any(a.window is not None and a.window < 1 for a in attention):
        raise CapsimError("an attention point's window must be a positive integer", source=source,
                          where="measured.attention.window")
    prior = (data.get("efficiency_prior") or {}).get("reference")
    attention_ref = (data.get("efficiency_prior") or {}).get("attention_reference")
    if attention_ref is not None and not isinstance(attention_ref, str):
        raise CapsimError(f"expected a device id, got {attention_ref!r}", source=source,
                          where="efficiency_prior.attention_reference")
    sustained = (data.get("sustained") or {}).get("gemm_clock_fraction")
    if sustained is not None and (isinstance(sustained, bool) or not isinstance(sustained, int | float)
                                  or not 0.3 <= sustained <= 1.0):
        raise CapsimError(f"expected a number in [0.3, 1], got {sustained!r}", source=source,
                          where="sustained.gemm_clock_fraction")
    try:
        profile = _profile(data, source, spec, peaks, up, out, power, gemm, best_gemm, hbm, coll, attention, prior,
                           sustained, attention_ref)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise CapsimError(f"expected numbers in the spec: {exc}", source=source, where="spec") from None
    _check_spec_numbers(profile, source)
    return replace(profile, relative_gemm=relative, mxu_width=_mxu_width(spec, source))


def _mxu_width(spec: dict, source: str) -> int | None:
    """spec.mxu_width: a positive integer when given (a TPU's systolic-array side), else None."""
    width = spec.get("mxu_width")
    if width is None:
        return None
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise CapsimError(f"expected a positive integer, got {width!r}", source=source, where="spec.mxu_width")
    return width


def _relative_gemm(points, source: str) -> tuple[RelativeGemmPoint, ...]:
    """measured.relative_gemm: each entry a GEMM size (m, n, k, or its flops) timed in two known dtypes of
    different classes, both rates positive."""
    out = []
    for i, p in enumerate(points):
        where = f"measured.relative_gemm[{i}]"
        try:
            flops = float(p["flops"]) if p.get("flops") is not None else 2.0 * int(p["m"]) * int(p["n"]) * int(p["k"])
            point = RelativeGemmPoint(flops, str(p["dtype"]), float(p["tflops"]), str(p["against"]),
                                      float(p["against_tflops"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CapsimError(f"expected m, n, k (or flops), dtype, tflops, against, against_tflops: {exc!r}",
                              source=source, where=where) from None
        known = point.dtype in DTYPE_CLASS and point.against in DTYPE_CLASS
        if not known or DTYPE_CLASS[point.dtype] == DTYPE_CLASS[point.against]:
            raise CapsimError(f"expected two dtypes of different classes among {sorted(DTYPE_CLASS)}, got "
                              f"{point.dtype!r} against {point.against!r}", source=source, where=where)
        if not all(math.isfinite(v) and v > 0 for v in (flops, point.tflops, point.against_tflops)):
            raise CapsimError(f"expected positive finite flops and rates, got {p!r}", source=source, where=where)
        out.append(point)
    return tuple(out)


# Where each figure sits in the profile YAML, for the error: rates and sizes something is divided by,
# which must be positive, and figures that may be 0 (unknown, as in a CPU-calibrated profile).
_SPEC_KEYS = {"memory_bw_gbs": "spec.memory_bw_gbs", "scale_up_bw_gbs": "spec.scale_up.bw_gbs",
              "scale_up_domain": "spec.scale_up.domain", "scale_out_bw_gbs": "spec.scale_out.bw_gbs",
              "devices_per_node": "spec.power.devices_per_node"}
_SPEC_KEYS_ZERO_OK = {"memory_gib": "spec.memory_gib", "tdp_w": "spec.power.tdp_w",
                      "scale_out_latency_us": "spec.scale_out.latency_us", "node_w": "spec.power.node_w",
                      "price_usd": "spec.price_usd"}


def _check_spec_numbers(profile: Profile, source: str) -> None:
    """A profile's figures are finite and not negative, and those something is divided by (peaks,
    bandwidths, domain and node sizes) positive: a NaN TDP or an infinite bandwidth would otherwise
    surface as NaN energy or an infinite run time after the run."""
    numbers = {f"spec.peak_tflops.{k}": v for k, v in profile.peak_tflops.items() if v is not None}
    numbers.update({key: getattr(profile, attr) for attr, key in _SPEC_KEYS.items()})
    for key, value in numbers.items():
        if not (math.isfinite(value) and 0 < value < 1e12):
            raise CapsimError(f"expected a finite positive number, got {value!r}", source=source, where=key)
    for attr, key in _SPEC_KEYS_ZERO_OK.items():
        value = getattr(profile, attr)
        if value is not None and not (math.isfinite(value) and 0 <= value < 1e12):
            raise CapsimError(f"expected a finite number >= 0, got {value!r}", source=source, where=key)


def _profile(data, source, spec, peaks, up, out, power, gemm, best_gemm, hbm, coll, attention, prior,
             sustained, attention_ref) -> Profile:
    return Profile(
        id=str(data.get("id", source)), name=str(data.get("name", "")), vendor=str(data.get("vendor", "")),
        kind=str(data.get("kind", "gpu")),
        peak_tflops={k: (float(v) if v is not None else None) for k, v in peaks.items()},
        memory_gib=float(_need(spec, "memory_gib", "spec.", source)),
        memory_bw_gbs=float(_need(spec, "memory_bw_gbs", "spec.", source)),
        scale_up_bw_gbs=float(_need(up, "bw_gbs", "spec.scale_up.", source)),
        scale_up_domain=int(_need(up, "domain", "spec.scale_up.", source)),
        scale_out_bw_gbs=float(_need(out, "bw_gbs", "spec.scale_out.", source)),
        scale_out_latency_us=float(out.get("latency_us", 5.0)),
        tdp_w=float(_need(power, "tdp_w", "spec.power.", source)),
        node_w=float(power.get("node_w") or 0.0),
        devices_per_node=int(power.get("devices_per_node") or 8),
        price_usd=float(spec["price_usd"]) if spec.get("price_usd") is not None else None,
        gemm=gemm, best_gemm=best_gemm, hbm=hbm, collectives=coll, attention=attention, prior_reference=prior,
        attention_reference=attention_ref, arch=str(data.get("arch") or "default"),
        sustained_gemm_fraction=None if sustained is None else float(sustained),
    )


@lru_cache(maxsize=64)
def load_profile(device: str) -> Profile:
    """The typed profile of a device id (file name in hardware_profiles/ without .yaml)."""
    data = load_profile_yaml(device)
    return profile_from_dict(data, source=str(profiles_dir() / f"{device}.yaml"))
