"""Kernel times from measured points: GEMM efficiency by size under a roofline, HBM bandwidth by size,
and attention (fused FlashAttention-style or unfused batched GEMMs + softmax)."""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

from simulator.perf.profile import Profile, dtype_class, load_profile
from simulator.profiles import list_devices

# Without any measured point of a kind (and no prior), these cover the gap. They are typical of
# vendor libraries at large sizes: cuBLAS reaches ~80% of dense peak (Azure cublaslt 8192^3 on
# A100: 254/312), STREAM copy ~85% of HBM spec (Azure BabelStream A100: 1.61/2.04 ... H100 2.9/3.35).
DEFAULT_GEMM_EFF = 0.75
DEFAULT_HBM_EFF = 0.85
# A kernel launch costs a few microseconds that no bandwidth hides (CUDA launch latency ~3-5 us).
KERNEL_OVERHEAD_S = 4e-6
# A point counts as compute-bound (and defines the efficiency curve) when the memory roofline
# explains less than this share of its measured time; memory-bound points are left to the roofline.
COMPUTE_BOUND_SHARE = 0.5
# A device with no measured attention point for the kernel (nor a reference device with one) runs
# fused attention at this fraction of its GEMM efficiency for the same FLOPs (FlashAttention-2 on A100,
# Dao 2023: 50-73% of peak forward, less backward, where cuBLAS reaches ~80%).
FLASH_EFF_FACTOR = 0.7
# Where a device has no measured point for a stack's kernel, the nearest kernel generation that it has.
KERNEL_FALLBACK = {"fa3": ("cudnn", "fa2"), "cudnn": ("fa3", "fa2"), "splash": ("fa3", "fa2"), "triton": ("fa2",),
                   "fa2": ()}
# Block-sparse kernels that compute every (query block, key block) tile the mask touches in full, masking
# inside it: Pallas splash attention, whose mask info is per block (MaxText kernels/attention/
# splash_attention_kernel.py: a block runs when block_mask is nonzero and loops over all of its
# block_kv_compute chunks). Their default block, queries and keys: MaxText base.yml sa_block_q = sa_block_kv
# = 512 (at e591f30c).
BLOCK_SPARSE_KERNELS = {"splash": (512, 512)}
# Backward attention does 2.5x the forward matmul FLOPs (five s x s x d products against two:
# FlashAttention-2 paper, Dao 2023, Sec. 4.1: bwd FLOPs = 2.5 x fwd).
BWD_FLOP_RATIO = 2.5
# fp4 (NVFP4): a 4-bit element plus one FP8 E4M3 scale per 16-element block, 0.5 + 1/16 = 0.5625 B
# (arXiv 2509.25149 sec. 2; Transformer Engine docs, NVFP4 recipe); the per-tensor FP32 scale is negligible.
BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1, "fp4": 0.5625}
# Whose measured GEMM points set a class's efficiency curve (relative to each class's own peak): its
# own, else the next class's. No device has absolute FP4 points: FP4 follows same-run FP4/BF16 ratios where a
# device in reach measured them (gemm_curve), else borrows the FP8 curve, else BF16's.
CURVE_CHAIN = {"bf16": ("bf16", "fp8"), "fp8": ("fp8", "bf16"), "fp4": ("fp4", "fp8", "bf16")}


def interp(x: float, xs, ys) -> float:
    """np.interp(x, xs, ys) for one float x, bit for bit (numpy's arr_interp: flat beyond the ends,
    the measured value at a measured x, else slope * (x - xs[j]) + ys[j]), without numpy's per-call
    array conversions, which cost ten times the arithmetic here (tests/test_perf_interp.py)."""
    n = len(xs)
    if n == 1:
        return ys[0]  # numpy's left, right and measured value alike, even for a nan x
    if x != x:
        return x
    if x < xs[0]:
        return ys[0]
    if x > xs[n - 1]:
        return ys[n - 1]
    j = bisect_right(xs, x) - 1  # xs[j] <= x < xs[j + 1]
    if j == n - 1 or xs[j] == x:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    y = slope * (x - xs[j]) + ys[j]
    if y != y:  # numpy's fallback when one direction gives nan
        y = slope * (x - xs[j + 1]) + ys[j + 1]
        if y != y and ys[j] == ys[j + 1]:
            y = ys[j]
    return y


@dataclass(frozen=True)
class Curve:
    """Piecewise-linear efficiency (0-1) against log2 of a size; flat beyond the ends."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, size: float) -> float:
        if not self.xs:
            raise ValueError("empty curve")
        return float(interp(math.log2(max(size, 1.0)), self.xs, self.ys))


def _isotonic(ys: list[float], ws: list[float]) -> list[float]:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for y, w in zip(ys, ws, strict=True):
        blocks.append([y, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            y2, w2, n2 = blocks.pop()
            y1, w1, n1 = blocks.pop()
            blocks.append([(y1 * w1 + y2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [b[0] for b in blocks for _ in range(int(b[2]))]


def _binned_curve(points: list[tuple[float, float]], monotone: bool) -> Curve:
    """Average points in unit log2 bins (repeats and shape noise), then optionally make it
    non-decreasing (a bigger GEMM is never less efficient on the same library) by an isotonic
    least-squares fit: a running maximum would let one short burst run (8192^3 at boost clock)
    stand for every larger training GEMM, which measured sustained shapes contradict (vidur H100
    4096x28672x8192: 709 TFLOP/s against 798 for the burst)."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for x, y in points:
        bins.setdefault(round(x), []).append((x, y))
    xs, ys, ws = [], [], []
    for key in sorted(bins):
        vals = bins[key]
        xs.append(sum(v[0] for v in vals) / len(vals))
        ys.append(sum(v[1] for v in vals) / len(vals))
        ws.append(float(len(vals)))
    if monotone:
        ys = _isotonic(ys, ws)
    return Curve(tuple(xs), tuple(ys))


def _own_gemm_points(p: Profile, cls: str, hbm_bw: float) -> list[tuple[float, float]]:
    out = []
    peak = p.peak(cls)
    for g in p.gemm:
        if dtype_class(g.dtype) != cls:
            continue
        t = g.flops / (g.tflops * 1e12)
        mem = (g.m * g.k + g.k * g.n + g.m * g.n) * BYTES[g.dtype] / hbm_bw
        if mem < COMPUTE_BOUND_SHARE * t:
            out.append((math.log2(g.flops), min(1.0, g.tflops / peak)))
    return out


def best_gemm_ratio(device: str, reference: str, cls: str) -> float:
    """How much nearer to its peak `device` runs its best GEMM than `reference` runs its own: the ratio of
    their best-shape efficiencies (profiles' measured.best_gemm, each from one shape search with the same
    tool), for the first class in CURVE_CHAIN that both measured; 1 where they share none. A borrowed
    curve is scaled by it: the same fraction of peak on a faster part is not a measurement (mamf-finder:
    H100 80.3% of peak, B200 77.6%, GB200 72.9%, MI300X 51.4%)."""
    dev, ref = load_profile(device), load_profile(reference)
    for c in CURVE_CHAIN[cls]:
        mine = [g.tflops / dev.peak(c) for g in dev.best_gemm if dtype_class(g.dtype) == c]
        theirs = [g.tflops / ref.peak(c) for g in ref.best_gemm if dtype_class(g.dtype) == c]
        if mine and theirs:
            return max(mine) / max(theirs)
    return 1.0


def relative_gemm_points(device: str, cls: str):
    """(device that measured them, points) of the same-run ratio points (profile measured.relative_gemm)
    for dtype class `cls`: the device's own, else the nearest along its reference chain's; None if none."""
    seen = set()
    while device and device not in seen:
        seen.add(device)
        p = load_profile(device)
        pts = tuple(r for r in p.relative_gemm if dtype_class(r.dtype) == cls)
        if pts:
            return device, pts
        device = p.prior_reference
    return None


def _relative_curve(device: str, lender: str, points) -> Curve:
    """`device`'s curve for a class it has no own points of, from same-run ratios (`lender`'s): at each size,
    the efficiency of the class timed against (its own curve) times the ratio of the two efficiencies as
    fractions of `lender`'s peaks. NVFP4 on B200 reaches 0.24 to 0.72 of BF16's efficiency in one run
    (vLLM bench_nvfp4_gemm), not the FP8 curve at twice the peak that FP4 would otherwise borrow."""
    lp = load_profile(lender)
    against = points[0].against
    ratio = _binned_curve([(math.log2(r.flops), (r.tflops / lp.peak(r.dtype)) / (r.against_tflops / lp.peak(r.against)))
                           for r in points if r.against == against], monotone=False)
    base = gemm_curve(device, against)
    xs = sorted(set(base.xs) | set(ratio.xs))
    return Curve(tuple(xs), tuple(min(1.0, base(2.0**x) * ratio(2.0**x)) for x in xs))


@lru_cache(maxsize=256)
def gemm_curve(device: str, dtype: str) -> Curve:
    """Efficiency vs log2(FLOPs): the device's own points of the first class in CURVE_CHAIN that it
    measured (relative to that class's peak), filling uncovered sizes from the prior reference device's
    curve for this dtype, scaled by the two devices' best-GEMM ratio (best_gemm_ratio). A class without own
    points that same-run ratio points reach (relative_gemm_points) is priced from them (_relative_curve)."""
    p = load_profile(device)
    cls = dtype_class(dtype)
    bw = hbm_curve(device)(2**30) * p.memory_bw_gbs * 1e9
    relative = relative_gemm_points(device, cls)
    if relative and not _own_gemm_points(p, cls, bw):
        return _relative_curve(device, *relative)
    pts = []
    for c in CURVE_CHAIN[cls]:
        pts = _own_gemm_points(p, c, bw)
        if pts:
            break
    if p.prior_reference and p.prior_reference != device:
        ref = gemm_curve(p.prior_reference, cls)
        scale = best_gemm_ratio(device, p.prior_reference, cls)
        covered = {round(x) for x, _ in pts}
        pts += [(x, min(1.0, y * scale)) for x, y in zip(ref.xs, ref.ys, strict=True) if round(x) not in covered]
    if not pts:
        return Curve((30.0,), (DEFAULT_GEMM_EFF,))
    return _binned_curve(pts, monotone=True)


@lru_cache(maxsize=256)
def hbm_curve(device: str) -> Curve:
    """Achieved fraction of spec HBM bandwidth vs log2(bytes moved).

    Sizes a device did not measure (small reads: decode GEMVs) take its reference device's fraction,
    scaled by how the two compare where the device did measure (hbm_ratio): a part whose large copies
    reach 77% of its spec (MI300X) does not reach H100's 79% on a 100 MB read."""
    p = load_profile(device)
    pts = [(math.log2(h.bytes), min(1.0, h.gbs / p.memory_bw_gbs)) for h in p.hbm]
    if p.prior_reference and p.prior_reference != device:
        ref = hbm_curve(p.prior_reference)
        scale = hbm_ratio(pts, ref)
        covered = {round(x) for x, _ in pts}
        pts += [(x, min(1.0, y * scale)) for x, y in zip(ref.xs, ref.ys, strict=True) if round(x) not in covered]
    if not pts:
        return Curve((30.0,), (DEFAULT_HBM_EFF,))
    return _binned_curve(pts, monotone=True)


def hbm_ratio(own: list[tuple[float, float]], ref: Curve) -> float:
    """A device's measured fraction of its spec bandwidth over its reference's, at the largest size the
    device measured (the mean of its points there: copy, triad); 1 when it measured nothing."""
    if not own:
        return 1.0
    top = max(round(x) for x, _ in own)
    at_top = [(x, y) for x, y in own if round(x) == top]
    mine = sum(y for _, y in at_top) / len(at_top)
    theirs = ref(2.0 ** (sum(x for x, _ in at_top) / len(at_top)))
    return mine / theirs


@lru_cache(maxsize=64)
def sustained_fraction(device: str) -> float:
    """Share of the short-burst GEMM rate a long, power-limited training kernel keeps: the profile's
    `sustained.gemm_clock_fraction`, else its reference device's, else 1 (nothing known)."""
    p = load_profile(device)
    if p.sustained_gemm_fraction is not None:
        return p.sustained_gemm_fraction
    if p.prior_reference and p.prior_reference != device:
        return sustained_fraction(p.prior_reference)
    return 1.0


def roofline_time(flops: float, bytes_: float, peak_tflops: float, bw_gbs: float) -> float:
    """The lower bound max(flops/peak, bytes/bw) in seconds."""
    return max(flops / (peak_tflops * 1e12), bytes_ / (bw_gbs * 1e9))


def memory_time(device: str, bytes_: float, kernels: int = 1) -> float:
    """A memory-bound op (elementwise, norm, optimizer) moving bytes_ at the measured bandwidth."""
    if bytes_ <= 0:
        return 0.0
    p = load_profile(device)
    bw = p.memory_bw_gbs * 1e9 * hbm_curve(device)(bytes_ / max(kernels, 1))
    return bytes_ / bw + kernels * KERNEL_OVERHEAD_S


def gemm_time(device: str, m: float, n: float, k: float, dtype: str = "bf16", batch: float = 1,
              sustained: bool = True) -> float:
    """Time of batch x (m,k)@(k,n): measured efficiency at this FLOP count, bounded by the roofline.
    sustained: at the clock a power-limited training run holds (False: the micro-benchmark's burst)."""
    flops = 2.0 * m * n * k * batch
    if flops <= 0:
        return 0.0
    p = load_profile(device)
    peak = p.peak(dtype)
    eff = gemm_curve(device, dtype)(flops) * (sustained_fraction(device) if sustained else 1.0)
    bytes_ = (m * k + k * n + m * n) * batch * BYTES.get(dtype, 2)
    bw = p.memory_bw_gbs * hbm_curve(device)(bytes_)
    compute = flops / (peak * eff * 1e12)
    return max(compute, roofline_time(flops, bytes_, peak, bw)) + KERNEL_OVERHEAD_S


def mxu_fill(device: str, head_dim: float, backward: bool = False) -> float:
    """Share of a fused attention kernel's matmul rate a TPU keeps when the head dimension is narrower than
    its systolic array (spec.mxu_width): an operand's contracted side is padded to the array's, so a product
    that sums over head_dim fills head_dim / width of it; the others sum over a sequence block and put
    head_dim on a side the kernel can stream (taken as filled). Forward, QK^T is one of two equal
    products (PV the other); backward, QK^T and dO V^T are two of five. 1 where no width is known (GPUs)
    or head_dim reaches it."""
    width = load_profile(device).mxu_width
    if not width or head_dim >= width:
        return 1.0
    padded = width / head_dim  # time of a product contracting over head_dim, against a filled one
    return 5.0 / (2.0 * padded + 3.0) if backward else 2.0 / (padded + 1.0)


def attention_lender(device: str) -> str | None:
    """Whose fused-attention tables a device borrows where it has none: its attention_reference, else its
    reference device."""
    p = load_profile(device)
    return p.attention_reference or p.prior_reference


@lru_cache(maxsize=1024)
def _attention_points(device: str, kernel: str, direction: str, causal: bool, dtype: str):
    """(device whose points they are, points) for one kernel, direction and masking: the device's own,
    else its reference device's; a direction-specific table first, else a combined fwd+bwd one (the
    rate of the whole pass, used for both); None when neither device measured it. Cached: it does not
    depend on the sequence length that attention_efficiency is asked for."""
    cls = dtype_class(dtype)
    for dev in (device, attention_lender(device)):
        if not dev:
            continue
        for d in (direction, "fwd_bwd"):
            pts = tuple(a for a in load_profile(dev).attention
                        if a.kernel == kernel and a.direction == d and a.causal == causal and dtype_class(a.dtype) == cls
                        and a.window is None)
            if pts:
                return dev, pts
    return None


# A measured sliding-window rate stands for windows within this factor of its own: a band's rate depends on
# its width (cuDNN on GB200: a 128-key band runs at ~6% of peak, tile edges and short rows; a 4096-key band
# is nearly dense work), so a point measured at w=128 says nothing about w=4096.
WINDOW_MATCH_FACTOR = 2.0


def window_lenders(device: str) -> tuple[str, ...]:
    """Devices whose sliding-window points a device may use: its own, its attention lender's, then those
    of the other devices of its architecture, by name (a window's rate is the kernel's tiling on that
    architecture: B200 runs cuDNN's Blackwell kernel as GB200 does)."""
    arch = load_profile(device).arch
    same = (d for d in list_devices() if d != device and arch and load_profile(d).arch == arch)
    return tuple(dict.fromkeys(d for d in (device, attention_lender(device), *same) if d))


@lru_cache(maxsize=1024)
def _window_points(device: str, kernel: str, direction: str, window: int, dtype: str):
    """(device, points) of the measured sliding-window points of one kernel and direction at the measured
    window nearest `window` (in log2; ties: the larger), if within WINDOW_MATCH_FACTOR of it, from the first
    of window_lenders(device) that measured one; None when none did."""
    cls = dtype_class(dtype)
    for dev in window_lenders(device):
        for d in (direction, "fwd_bwd"):
            pts = [a for a in load_profile(dev).attention
                   if a.kernel == kernel and a.direction == d and a.window is not None and dtype_class(a.dtype) == cls]
            if pts:
                best = min({a.window for a in pts}, key=lambda w: (abs(math.log2(w / window)), -w))
                if abs(math.log2(best / window)) <= math.log2(WINDOW_MATCH_FACTOR):
                    return dev, tuple(a for a in pts if a.window == best)
    return None


def _interp_points(dev: str, pts, head_dim: int, seq: float) -> float:
    """Efficiency on the measured head dimension nearest to head_dim (ties: the larger), interpolated
    in log2(seq) and flat beyond the measured lengths."""
    peak = load_profile(dev).peak(pts[0].dtype)
    best_hd = min({a.head_dim for a in pts}, key=lambda d: (abs(math.log2(d / head_dim)), -d))
    row = sorted((a.seq, a.tflops) for a in pts if a.head_dim == best_hd)
    return float(interp(math.log2(max(seq, 1.0)), [math.log2(q) for q, _ in row], [t / peak for _, t in row]))


@lru_cache(maxsize=4096)
def attention_efficiency(device: str, kernel: str, direction: str, causal: bool, head_dim: int, seq: int,
                         dtype: str = "bf16", window: int | None = None) -> float | None:
    """Measured fraction of dense peak a fused attention kernel reaches at this sequence length (or the
    kernel generation that stands in for it, KERNEL_FALLBACK); None when no table covers it. A masking
    the table lacks (published backward panels are non-causal) takes the other masking's rate times the
    forward's causal / non-causal ratio at the same length.

    Sliding-window attention (`window` set, below the sequence length): the measured window points
    (AttentionPoint.window) of the kernel or its stand-ins, on the device or its reference device, at the
    nearest measured window within WINDOW_MATCH_FACTOR of the requested one, interpolated in seq; where no
    device in reach measured such a window, the dense table at seq = window.
    That fallback is optimistic for small windows: cuDNN's window-128 band on GB200 runs at 104-167
    TFLOP/s forward where its dense causal 2048-token rate is ~1,100 (a 128-key band is short, thin work
    per tile and masked edges)."""
    hd = int(head_dim)
    if window is not None:
        for k in (kernel, *KERNEL_FALLBACK.get(kernel, ())):
            found = _window_points(device, k, direction, int(window), dtype)
            if found is not None:
                return _interp_points(*found, hd, seq)
        seq = int(window)
    for k in (kernel, *KERNEL_FALLBACK.get(kernel, ())):
        found = _attention_points(device, k, direction, causal, dtype)
        if found is not None:
            return _interp_points(*found, hd, seq)
        other = _attention_points(device, k, direction, not causal, dtype)
        fwd_same = _attention_points(device, k, "fwd", causal, dtype)
        fwd_other = _attention_points(device, k, "fwd", not causal, dtype)
        if other and fwd_same and fwd_other:
            ratio = _interp_points(*fwd_same, hd, seq) / _interp_points(*fwd_other, hd, seq)
            return _interp_points(*other, hd, seq) * ratio
    return None


def band_pairs(seq: float, window: int) -> float:
    """Query-key pairs a causal sliding window of `window` keys (the query and the ones before it) scores
    over a `seq`-token sequence: s*w - w*(w-1)/2 for w < s (the first w-1 queries see fewer keys), the
    count cuDNN's benchmark divides by (checked against its time_ms: GB200 forward, 2 x 128 heads of 64,
    s 2048, w 128: 1.665e10 FLOPs / 0.109 ms = 153 TFLOP/s as published)."""
    w = min(float(window), seq)
    return seq * w - w * (w - 1.0) / 2.0


def block_band_pairs(seq: float, window: int, tile: tuple[int, int]) -> float:
    """Query-key pairs a block-sparse kernel computes for a causal sliding window of `window` keys: every
    (queries, keys) tile that holds a pair of the band, in full. Query block i (queries i*Bq .. i*Bq+Bq-1)
    reaches keys from i*Bq - (w - 1) to i*Bq + Bq - 1, so key tiles floor(max(0, i*Bq - w + 1) / Bk) ..
    floor((i*Bq + Bq - 1) / Bk). A last block that the sequence does not fill counts whole (the kernel
    pads it)."""
    bq, bk = (int(b) for b in tile)
    w, n = int(min(window, seq)), math.ceil(seq / bk) - 1  # n: the last key tile
    tiles = sum(min((i * bq + bq - 1) // bk, n) - max(0, i * bq - w + 1) // bk + 1 for i in range(math.ceil(seq / bq)))
    return float(tiles) * bq * bk


def attention_time(device: str, batch: float, heads: float, kv_heads: float, q_len: float, kv_len: float,
                   head_dim: float, dtype: str = "bf16", kernel: str = "fa2", causal: bool = True,
                   backward: bool = False, window: int | None = None, tile: tuple[int, int] | None = None) -> float:
    """Core attention (QK^T, softmax, AV) for `heads` local heads.

    Fused (`kernel` fa2, fa3, cudnn, splash): one kernel at the efficiency its authors measured for
    this sequence length, head dimension and masking (profiles' `measured.attention` tables), at the
    sustained clock; causal masking skips half the tiles; no s^2 tensor touches HBM. Unfused
    (Megatron 2021-22): two batched GEMMs over the full s x s score matrix plus fused
    scale-mask-softmax and dropout passes over it in HBM; backward does twice the matmuls.

    `window` (< kv_len): causal sliding-window attention, each query against at most `window` keys: a
    fused kernel scores the band, band_pairs(kv_len, window) pairs over the whole sequence (q_len/kv_len
    of them on this rank under context parallelism), not halved again for causality, at the measured
    windowed rate (attention_efficiency); the unfused path still materialises and masks the full s x s
    score matrix and is priced as full attention. A block-sparse kernel (BLOCK_SPARSE_KERNELS: splash, with
    `tile` (queries, keys), else its default) computes the whole tiles the band touches, block_band_pairs,
    at the dense non-causal rate of rows as long as a query block's tiles (splash at 1024-token blocks runs
    a 128-key window as two whole tiles, 2048 keys a query)."""
    p = load_profile(device)
    peak = p.peak(dtype)
    windowed = window is not None and window < kv_len
    if kernel != "unfused":
        direction = "bwd" if backward else "fwd"
        if windowed:
            if kernel in BLOCK_SPARSE_KERNELS:
                pairs = block_band_pairs(kv_len, window, tile or BLOCK_SPARSE_KERNELS[kernel])
                eff = attention_efficiency(device, kernel, direction, False, int(head_dim), round(pairs / kv_len),
                                           dtype)
            else:
                pairs = band_pairs(kv_len, window)
                eff = attention_efficiency(device, kernel, direction, causal, int(head_dim), int(q_len), dtype,
                                           int(window))
            flops = 4.0 * batch * heads * pairs * q_len / kv_len * head_dim * (BWD_FLOP_RATIO if backward else 1.0)
        else:
            flops = 4.0 * batch * heads * q_len * kv_len * head_dim * (BWD_FLOP_RATIO if backward else 1.0)
            flops *= 0.5 if causal else 1.0
            eff = attention_efficiency(device, kernel, direction, causal, int(head_dim), int(q_len), dtype)
        if eff is None:
            eff = gemm_curve(device, dtype)(flops) * FLASH_EFF_FACTOR
        eff *= sustained_fraction(device)
        if not p.attention:  # a GPU's tables stand in: no systolic array of the device's width in them
            eff *= mxu_fill(device, head_dim, backward)
        io = (2 * heads + 2 * kv_heads) * batch * q_len * head_dim * 2 * (2.0 if backward else 1.0)
        bw = p.memory_bw_gbs * hbm_curve(device)(io)
        return max(flops / (peak * eff * 1e12), io / (bw * 1e9)) + KERNEL_OVERHEAD_S
    mult = 2.0 if backward else 1.0
    bh = batch * heads
    t = mult * (gemm_time(device, q_len, kv_len, head_dim, dtype, bh) + gemm_time(device, q_len, head_dim, kv_len, dtype, bh))
    scores = bh * q_len * kv_len
    # fwd: softmax r+w (4 B/elt) and dropout r+w+mask (5 B/elt); bwd: softmax 6 B/elt, dropout 5 B/elt
    t += memory_time(device, scores * (11.0 if backward else 9.0), kernels=2)
    return t
