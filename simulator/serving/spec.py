"""The scenario's `services:` and `requests:` sections, validated (the features/serving.py module
declares them as scenario keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.units import parse_duration

# Far beyond any model's context or shape, and small enough that token and block arithmetic stays in
# 64-bit integers (a prompt of 10^30 tokens overflowed numpy's int64).
MAX_TOKENS = 10**9
MAX_SHAPE = 10**9
MAX_INT = 2**63 - 1


class _Spec(BaseModel):
    # Numbers must be finite (an infinite rate divided by zero), as in the core scenario's sections.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelShape(_Spec):
    """A transformer given by its shape instead of a zoo name."""

    layers: int = Field(ge=1, le=MAX_SHAPE)
    hidden: int = Field(ge=1, le=MAX_SHAPE)
    heads: int = Field(ge=1, le=MAX_SHAPE)
    kv_heads: int | None = Field(default=None, ge=1, le=MAX_SHAPE)
    ffn: int | None = Field(default=None, ge=1, le=MAX_SHAPE)
    mlp: Literal["gelu", "swiglu"] = "gelu"
    vocab: int = Field(default=51200, ge=1, le=MAX_SHAPE)
    seq_len: int = Field(default=8192, ge=1, le=MAX_TOKENS, description="the longest context the service accepts")


class ReplicaLayout(_Spec):
    """How one replica holds the model: tensor parallelism over `tp` devices of one node."""

    tp: int = Field(default=1, ge=1, le=MAX_INT, description="devices per replica (tensor parallel, within a node)")
    dtype: Literal["bf16", "fp16", "fp8", "fp4"] = Field(default="bf16", description=(
        "weights' and GEMMs' type (fp4: NVFP4 weights, GEMMs at the FP4 rate on Blackwell, else the FP8 or BF16 rate)"))
    kv_dtype: Literal["bf16", "fp16", "fp8"] | None = Field(default=None, description=(
        "the KV cache's (default: dtype; fp8 with fp4 weights)"))
    stack: str | None = Field(default=None, description="a serving stack of perf/serving_stacks.py (default: vLLM)")


class ReplicaScheduler(_Spec):
    """The replica's iteration-level scheduler (vLLM-style continuous batching, prefill-first).

    At each iteration boundary waiting requests are admitted first come first served while the batch
    has fewer than `max_num_seqs` sequences, their prompts fit `max_batched_tokens` together, and
    their whole KV cache (prompt + output, in blocks of `block_size`) fits what is free; an iteration
    that admits requests prefills them (and only them), otherwise every running sequence decodes one
    token. With `kv_allocation: reserve` (the default) the KV a request will need is reserved when it is
    admitted, so no request is ever preempted; with `paged` (vLLM's block manager) blocks are taken as
    tokens are written, a request is admitted when its prompt's blocks fit, and when a step's blocks do
    not fit the most recently admitted sequences are preempted by recompute or swap. With both
    `chunked_prefill` and `paged` (vLLM V1's default) each iteration takes the decodes' blocks first
    (preempting by recompute the prompt in progress, then the newest sequences, when out), then the
    next prompt chunk's blocks when they fit (serving/paged.py)."""

    policy: Literal["vllm"] = Field(default="vllm", description="the scheduler (vllm: prefill-first)")
    max_num_seqs: int = Field(default=256, ge=1, le=MAX_INT, description="most sequences in one batch")
    max_batched_tokens: int = Field(default=8192, ge=1, le=MAX_INT, description=(
        "most prompt tokens one prefill iteration processes (a longer prompt is rejected); with chunked_prefill "
        "the token budget of every iteration, decodes and the prompt chunk together"))
    chunked_prefill: bool = Field(default=False, description=(
        "Sarathi-style: every iteration decodes the running sequences and prefills one chunk of one prompt "
        "in the budget left (max_batched_tokens - running)"))
    block_size: int = Field(default=16, ge=1, le=MAX_INT, description="tokens per KV-cache block")
    memory_utilization: float = Field(default=0.9, gt=0, le=1, description=(
        "share of device memory for weights and KV cache (vLLM's gpu_memory_utilization)"))
    kv_tokens: int | None = Field(default=None, ge=1, le=MAX_INT, description=(
        "KV-cache capacity in tokens, overriding device memory minus weights"))
    kv_allocation: Literal["reserve", "paged"] = Field(default="reserve", description=(
        "reserve: a request's whole KV (prompt + output) when admitted, never preempted; paged: blocks as "
        "tokens are written (a chunked prompt's as its chunks run), preempting the newest sequences when out (vLLM)"))
    preemption: Literal["recompute", "swap"] = Field(default="recompute", description=(
        "paged: a preempted sequence's KV is dropped and recomputed by a prefill of prompt + tokens so far "
        "(recompute), or copied to host memory and back (swap)"))
    swap_bandwidth_gbs: float = Field(default=25.0, gt=0, le=1e6, description=(
        "swap: GB/s of each device's link to host memory (PCIe), each way"))
    prefix_caching: bool = Field(default=False, description=(
        "vLLM's automatic prefix caching of sessions: a replica keeps the contexts of sessions whose turns "
        "finished there in the KV blocks no request has reserved (least recently finished evicted first), "
        "and a later turn of such a session prefills only what follows the cached whole blocks; with "
        "kv_allocation: paged (not with chunked_prefill yet) the entries live in the free blocks, evicted least "
        "recently used as blocks are taken, and a sequence preempted by recompute leaves its blocks cached"))

    @model_validator(mode="after")
    def _paged(self):
        if self.kv_allocation == "paged" and self.prefix_caching and self.chunked_prefill:
            raise ValueError("prefix_caching with kv_allocation: paged goes without chunked_prefill only yet")
        if self.chunked_prefill and self.preemption == "swap":
            raise ValueError("preemption: swap does not go with chunked_prefill (vLLM V1 preempts by recompute only)")
        if self.kv_allocation == "reserve" and self.preemption == "swap":
            raise ValueError("preemption: swap needs kv_allocation: paged (a reserved cache never preempts)")
        return self


class ServiceLevel(_Spec):
    """Latency thresholds a request must meet to count toward the service's SLO attainment and goodput:
    each one given applies to every request (a request with one output token has no TPOT)."""

    ttft_s: float | None = Field(default=None, gt=0, description="time to first token at most this (seconds)")
    tpot_s: float | None = Field(default=None, gt=0, description=(
        "time per output token after the first at most this (seconds): (end - first token) / (output - 1)"))
    e2e_s: float | None = Field(default=None, gt=0, description="end-to-end latency at most this (seconds)")

    @model_validator(mode="after")
    def _some(self):
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None:
            raise ValueError("give at least one of ttft_s, tpot_s, e2e_s")
        return self


class ReplicaRange(_Spec):
    """An autoscaled service's replica count: between `min` and `max`, starting at `initial`."""

    min: int = Field(ge=0, le=MAX_INT, description="fewest replicas (0: scale to zero when idle)")
    max: int = Field(ge=1, le=MAX_INT, description="most replicas")
    initial: int | None = Field(default=None, ge=0, le=MAX_INT, description=(
        "replicas ready when the run starts, without provisioning (default: min)"))

    @model_validator(mode="after")
    def _ordered(self):
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"initial ({self.initial}) must lie between min ({self.min}) and max ({self.max})")
        return self

    @property
    def start(self) -> int:
        return self.min if self.initial is None else self.initial


class Autoscale(_Spec):
    """How an autoscaled service (replicas: {min, max}) picks its replica count, and how long a new replica
    takes to become ready.

    Every `interval` from the run's start the service's recommendation is computed: with `metric:
    utilization`, ceil(B / target) where B is the replicas' busy replica-seconds over the last `window`
    divided by the window (the mean number of replicas in an iteration); with `metric: queue`,
    ceil(outstanding / target) where outstanding counts the service's requests arrived and not finished;
    with `metric: ttft` (a custom latency metric, as with Kubernetes HPA or KEDA), ceil(current x observed
    / target), the HPA formula, where current counts the replicas provisioning or ready and observed is the
    `quantile` (nearest rank) of the time to first token of the requests arrived in the last `window` and
    of the earlier ones still waiting, a request without its first token counting its age so far
    (serving/autoscale.py LatencyWindow).
    Each is at least 1 while a request is outstanding, and is clipped to [min, max]. Above the
    replicas provisioning or ready, new ones start at once; the count goes down only to the largest
    recommendation of the last `scale_down_delay` (Kubernetes' scale-down stabilization window)."""

    metric: Literal["utilization", "queue", "ttft"] = Field(description=(
        "utilization: the replicas' busy fraction over the window; queue: outstanding requests per replica; "
        "ttft: a quantile of the time to first token of the requests arrived in the window and of older ones "
        "still waiting (waiting ones: their age)"))
    target: float = Field(gt=0, le=1e9, description=(
        "utilization: the busy fraction to aim for (0-1]; queue: the outstanding requests per replica to aim for; "
        "ttft: the time to first token to aim for (seconds, or a duration such as 500ms)"))
    quantile: float | None = Field(default=None, gt=0, le=1, description=(
        "ttft: the quantile of the window's times to first token compared with the target, in (0, 1], nearest "
        "rank (default 0.95)"))
    interval: float = Field(default=15.0, ge=1, le=1e9, description=(
        "time between evaluations, at least 1 s (default: Kubernetes HPA's sync period, 15 s)"))
    window: float | None = Field(default=None, gt=0, le=1e9, description=(
        "utilization: the window the busy fraction is measured over; ttft: the window of arrivals whose times "
        "to first token count; a whole number of intervals (default: one interval)"))
    scale_down_delay: float = Field(default=300.0, ge=0, le=1e9, description=(
        "scale down only to the largest recommendation of this long (Kubernetes HPA's default scale-down "
        "stabilization window, 300 s)"))
    boot_time: float = Field(default=60.0, ge=0, le=1e9, description=(
        "a new replica's node and serving-engine start before its weights load (assumed: 60 s)"))
    weight_load_gbs: float = Field(default=2.0, gt=0, le=1e6, description=(
        "GB/s at which a new replica loads its weights from storage (assumed: 2 GB/s per replica)"))

    _d = field_validator("interval", "window", "scale_down_delay", "boot_time", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @field_validator("target", mode="before")
    @classmethod
    def _latency_target(cls, v, info):
        """A ttft target is a time: a duration string ("500ms") is read as one; other metrics take numbers."""
        if info.data.get("metric") == "ttft" and isinstance(v, str):
            return parse_duration(v)
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.metric == "utilization" and self.target > 1:
            raise ValueError(f"a utilization target is a busy fraction in (0, 1]; got {self.target:g}")
        if self.quantile is not None and self.metric != "ttft":
            raise ValueError("quantile goes with metric: ttft")
        if self.window is not None:
            if self.metric == "queue":
                raise ValueError("window goes with metric: utilization or ttft")
            ratio = self.window / self.interval
            if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-9 * ratio:
                raise ValueError(f"window ({self.window:g} s) must be a whole number of intervals "
                                 f"({self.interval:g} s)")
        return self

    @property
    def ttft_quantile(self) -> float:
        """metric: ttft's quantile (0.95 when not given: a p95 latency, as latency-based scaling commonly uses)."""
        return 0.95 if self.quantile is None else self.quantile


class GroupLayout(_Spec):
    """A disaggregated group's own layout: what is given replaces the service's `layout` for that group's
    replicas (their iteration times, KV capacity, devices each, weight load); the KV cache's type stays the
    service's (it is sent from one group to the other as is)."""

    tp: int | None = Field(default=None, ge=1, le=MAX_INT, description=(
        "devices per replica of the group (tensor parallel, within a node; default: layout.tp)"))
    dtype: Literal["bf16", "fp16", "fp8", "fp4"] | None = Field(default=None, description=(
        "the group's weights' and GEMMs' type (default: layout.dtype)"))


class Disaggregated(_Spec):
    """Prefill and decode on separate replicas (Splitwise, DistServe): prompts run on the prefill group,
    then each request's KV goes to a decode replica over the scale-out network, concurrent transfers
    sharing the replicas' links max-min fairly (serving/disagg.py). Each group may run on a pool of its
    own and with a layout of its own (tp, dtype). With `autoscale`, each group is a range and scales on
    its own: the service's autoscale policy applied to that group's replicas and requests, within its own
    min and max, on its own pool."""

    prefill_replicas: Annotated[int, Field(ge=1, le=MAX_INT)] | ReplicaRange = Field(description=(
        "replicas that run prompts only; or {min, max, initial} with autoscale (min at least 1)"))
    decode_replicas: Annotated[int, Field(ge=1, le=MAX_INT)] | ReplicaRange = Field(description=(
        "replicas that run decodes only; or {min, max, initial} with autoscale (min at least 1)"))
    prefill_pool: str | None = Field(default=None, description=(
        "the pool the prefill replicas run on (cluster.pools[].name; default: the service's pool)"))
    decode_pool: str | None = Field(default=None, description=(
        "the pool the decode replicas run on, their cost and KV capacity from its device (default: the "
        "service's pool)"))
    prefill_layout: GroupLayout | None = Field(default=None, description=(
        "the prefill replicas' tp and dtype, e.g. {tp: 2} (default: the service's layout)"))
    decode_layout: GroupLayout | None = Field(default=None, description=(
        "the decode replicas' tp and dtype, e.g. {tp: 4} (default: the service's layout)"))

    @property
    def ranges(self) -> bool:
        return isinstance(self.prefill_replicas, ReplicaRange) or isinstance(self.decode_replicas, ReplicaRange)


class ServiceSpec(_Spec):
    """A served model: its replicas on a pool, their layout, scheduler and router."""

    name: str = Field(description="unique service name (requests[].service, requests.parquet `service`)")
    model: str | ModelShape = Field(description="a zoo name (workloads/models/) or a shape")
    pool: str = Field(description="the pool its replicas run on (cluster.pools[].name)")
    replicas: Annotated[int, Field(ge=1, le=MAX_INT)] | ReplicaRange = Field(description=(
        "replicas, each taking layout.tp devices of one node from the start; or {min, max, initial} with autoscale"))
    autoscale: Autoscale | None = Field(default=None, description=(
        "how the replica count follows the load (needs replicas: {min, max}): metric, target, interval, "
        "scale-down delay, provisioning time"))
    layout: ReplicaLayout = Field(default=ReplicaLayout(), description="tensor parallelism and dtypes")
    scheduler: ReplicaScheduler = Field(default=ReplicaScheduler(), description="the replica's scheduler")
    router: Literal["round-robin", "least-outstanding", "least-outstanding-tokens", "session-affinity"] = Field(
        default="round-robin", description=(
            "round-robin; least-outstanding (fewest requests routed and not finished); least-outstanding-tokens "
            "(fewest prompt tokens routed and not finished); session-affinity (a session's later turns go to the "
            "replica of its previous turn while it is routable, else as least-outstanding); lowest index on ties"))
    slo: ServiceLevel | None = Field(default=None, description=(
        "latency thresholds per request: the summary's slo_attainment and goodput count the requests meeting all"))
    disaggregated: Disaggregated | None = Field(default=None, description=(
        "split the replicas into a prefill and a decode group (adding up to replicas; with autoscale each group "
        "a range that scales on its own; each group optionally on a pool and with a layout of its own); the KV of each prompt goes "
        "from one to the other over the devices' scale-out links, shared max-min fairly by concurrent transfers"))

    @model_validator(mode="after")
    def _groups(self):
        d = self.disaggregated
        if d is None:
            return self
        if self.autoscale is None:
            if d.ranges:
                raise ValueError("disaggregated: prefill_replicas or decode_replicas {min, max} needs an autoscale "
                                 "block (or give fixed numbers)")
            if d.prefill_replicas + d.decode_replicas != self.replicas:
                raise ValueError(f"disaggregated: prefill_replicas + decode_replicas ({d.prefill_replicas} + "
                                 f"{d.decode_replicas}) must equal replicas ({self.replicas})")
        else:
            groups = (("prefill_replicas", d.prefill_replicas), ("decode_replicas", d.decode_replicas))
            for key, group in groups:
                if not isinstance(group, ReplicaRange):
                    raise ValueError(f"disaggregated.{key} must be {{min, max}} in an autoscaled service (each "
                                     "group scales on its own)")
                if group.min < 1:
                    raise ValueError(f"disaggregated.{key}.min must be at least 1: a disaggregated service does not "
                                     "scale a group to zero yet")
            total = ReplicaRange(min=d.prefill_replicas.min + d.decode_replicas.min,
                                 max=d.prefill_replicas.max + d.decode_replicas.max,
                                 initial=d.prefill_replicas.start + d.decode_replicas.start)
            r = self.replicas
            if isinstance(r, ReplicaRange) and (r.min, r.max, r.start) != (total.min, total.max, total.start):
                raise ValueError(f"disaggregated: replicas must be the groups' sums, {{min: {total.min}, max: "
                                 f"{total.max}, initial: {total.start}}}; got {{min: {r.min}, max: {r.max}, "
                                 f"initial: {r.start}}}")
        if self.autoscale is not None and self.autoscale.metric == "ttft":
            raise ValueError("autoscale.metric: ttft does not go with disaggregated yet (scale the groups on "
                             "utilization or queue)")
        if self.scheduler.chunked_prefill or self.scheduler.kv_allocation != "reserve" \
                or self.scheduler.prefix_caching:
            raise ValueError("disaggregated goes with the default scheduler only (no chunked_prefill, "
                             "kv_allocation: reserve, no prefix_caching) yet")
        return self

    @model_validator(mode="after")
    def _autoscaled(self):
        if isinstance(self.replicas, ReplicaRange) and self.autoscale is None:
            raise ValueError("replicas: {min, max} needs an autoscale: {metric, target} block")
        if self.autoscale is not None and not isinstance(self.replicas, ReplicaRange):
            raise ValueError("autoscale needs replicas: {min, max} (a fixed number does not scale)")
        return self

    @property
    def autoscaled(self) -> bool:
        return self.autoscale is not None

    def group_layout(self, group: str) -> ReplicaLayout:
        """The layout of a disaggregated service's "prefill" or "decode" replicas: the service's `layout` with
        what the group's own layout gives (tp, dtype); the KV cache's type stays the service's."""
        d = self.disaggregated
        own = getattr(d, f"{group}_layout") if d is not None else None
        base = self.layout
        if own is None:
            return base
        from simulator.perf.decode import kv_dtype_of

        return ReplicaLayout(tp=own.tp or base.tp, dtype=own.dtype or base.dtype,
                             kv_dtype=kv_dtype_of(base.dtype, base.kv_dtype), stack=base.stack)

    @property
    def most_replicas(self) -> int:
        return self.replicas.max if isinstance(self.replicas, ReplicaRange) else self.replicas

    @property
    def start_replicas(self) -> int:
        return self.replicas.start if isinstance(self.replicas, ReplicaRange) else self.replicas


def _distribution_parameters(spec):
    """A lognormal, exponential or uniform distribution's spec has the parameters its `dist` needs."""
    need = {"lognormal": ("median", "sigma"), "exponential": ("mean",), "uniform": ("low", "high")}[spec.dist]
    missing = [k for k in need if getattr(spec, k) is None]
    if missing:
        raise ValueError(f"{spec.dist} needs {', '.join(missing)}")
    if spec.dist == "uniform" and spec.high < spec.low:
        raise ValueError("high must be at least low")
    return spec


class LengthDist(_Spec):
    """Token counts drawn from a distribution, rounded to whole tokens (at least 1)."""

    dist: Literal["lognormal", "exponential", "uniform"]
    median: float | None = Field(default=None, gt=0, le=MAX_TOKENS, description="lognormal: the median")
    sigma: float | None = Field(default=None, gt=0, le=20, description="lognormal: the log's standard deviation")
    mean: float | None = Field(default=None, gt=0, le=MAX_TOKENS, description="exponential: the mean")
    low: int | None = Field(default=None, ge=1, le=MAX_TOKENS, description="uniform: the least (inclusive)")
    high: int | None = Field(default=None, ge=1, le=MAX_TOKENS, description="uniform: the most (inclusive)")
    max: int | None = Field(default=None, ge=1, le=MAX_TOKENS, description="clip at this many tokens")

    _parameters = model_validator(mode="after")(lambda self: _distribution_parameters(self))


Length = Annotated[int, Field(ge=1, le=MAX_TOKENS)] | LengthDist


class Sinusoid(_Spec):
    """A sinusoid, daily by default: the rate is rate_per_s x (1 + a cos(2 pi (t - peak_hour h) / period)), with
    a = (peak_to_trough - 1) / (peak_to_trough + 1), so rate_per_s stays the mean over a period and the
    highest rate is peak_to_trough times the lowest. Time t counts from the run's start."""

    peak_to_trough: float = Field(ge=1, le=1e6, description="highest rate over lowest (1: flat)")
    peak_hour: float = Field(default=14.0, ge=0, description="hours after the run's start of the first peak")
    period: float = Field(default=86400.0, gt=0, description="the cycle's length (default one day)")

    _d = field_validator("period", mode="before")(parse_duration)


class Arrival(_Spec):
    """The arrival process: Poisson (exponential gaps) or gamma gaps with a coefficient of variation
    (cv > 1: bursty; < 1: regular), at a mean rate that may follow a daily profile and grow year on year.
    With a profile or growth, the gaps are drawn at unit rate and mapped through the integral of the
    rate (time rescaling: a non-homogeneous Poisson process, or its gamma-renewal analogue)."""

    process: Literal["poisson", "gamma"] = Field(description="poisson (exponential gaps) or gamma (gaps with cv)")
    rate_per_s: float = Field(gt=0, le=1e9, description=(
        "mean requests per second (over a day with a profile; at the run's start with growth)"))
    cv: float | None = Field(default=None, gt=0, le=100, description=(
        "gamma: the gaps' coefficient of variation, standard deviation over mean (1 is Poisson's)"))
    sinusoid: Sinusoid | None = Field(default=None, description="a daily (or other period's) sinusoid of the rate")
    hourly: list[Annotated[float, Field(ge=0, le=1e6)]] | None = Field(default=None, description=(
        "24 relative rates, one per hour from the run's start, repeating daily (scaled to mean 1)"))
    annual_growth: float = Field(default=0.0, gt=-1, le=1e3, description=(
        "yearly growth of the rate: x (1 + annual_growth) per 365 days, continuously"))

    @model_validator(mode="after")
    def _consistent(self):
        if (self.process == "gamma") != (self.cv is not None):
            raise ValueError("cv goes with process: gamma, and gamma needs cv")
        if self.sinusoid is not None and self.hourly is not None:
            raise ValueError("give sinusoid or hourly, not both")
        if self.hourly is not None:
            if len(self.hourly) != 24:
                raise ValueError(f"hourly needs 24 relative rates, one per hour; got {len(self.hourly)}")
            if not any(self.hourly):
                raise ValueError("hourly needs at least one rate above 0")
        return self

    @property
    def modulated(self) -> bool:
        return self.sinusoid is not None or self.hourly is not None or self.annual_growth != 0


PoissonRate = Arrival  # the first slice's name


class ThinkTime(_Spec):
    """A time drawn from a distribution (seconds, or a duration string for mean, median, low, high)."""

    dist: Literal["exponential", "lognormal", "uniform"]
    mean: float | None = Field(default=None, gt=0, le=1e9, description="exponential: the mean")
    median: float | None = Field(default=None, gt=0, le=1e9, description="lognormal: the median")
    sigma: float | None = Field(default=None, gt=0, le=20, description="lognormal: the log's standard deviation")
    low: float | None = Field(default=None, ge=0, le=1e9, description="uniform: the least")
    high: float | None = Field(default=None, ge=0, le=1e9, description="uniform: the most")

    _d = field_validator("mean", "median", "low", "high", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    _parameters = model_validator(mode="after")(lambda self: _distribution_parameters(self))


class Sessions(_Spec):
    """Multi-turn sessions: the arrival process starts sessions, each of `turns` requests; a later turn
    arrives `think_time` after the previous turn's arrival (open loop: it does not wait for the answer),
    or with closed_loop after the previous turn's last token, and its prompt is the previous turn's
    prompt and output followed by prompt_tokens new tokens."""

    turns: Length = Field(description="requests per session: a number, or {dist: ...}")
    think_time: Annotated[float, Field(ge=0, le=1e9)] | ThinkTime = Field(description=(
        "from one turn's arrival (closed_loop: its last token) to the next one's arrival: seconds (or a "
        "duration string), or {dist: ...}"))
    closed_loop: bool = Field(default=False, description=(
        "a later turn is sent think_time after the previous turn's last token (the user reads the answer "
        "first), so a slow fleet gets fewer turns a second; a turn rejected, or unfinished when the run "
        "ends, sends none after it (status unsent in requests.parquet). The same draws as open loop"))

    _d = field_validator("think_time", mode="before")(
        lambda v: parse_duration(v) if isinstance(v, str | int | float) and not isinstance(v, bool) else v)


class SyntheticRequests(_Spec):
    """Requests generated for one service: arrivals (Poisson or gamma, with a daily profile and growth),
    prompt and output lengths."""

    kind: Literal["synthetic"]
    service: str = Field(description="the service they go to (services[].name)")
    requests: int | None = Field(default=None, ge=1, description="how many (or give until)")
    until: float | None = Field(default=None, gt=0, description="generate arrivals up to this time (or give requests)")
    start: float = Field(default=0.0, ge=0, description="the first arrival's earliest time, after the run's start")
    arrival: Arrival = Field(description="the arrival process")
    prompt_tokens: Length = Field(description="prompt length: a number, or {dist: ...}")
    output_tokens: Length = Field(description="generated tokens: a number, or {dist: ...}")
    sessions: Sessions | None = Field(default=None, description=(
        "multi-turn sessions: the arrivals (and requests or until) are the sessions' first turns, prompt_tokens "
        "the tokens each turn adds to the context"))

    _d = field_validator("until", "start", mode="before")(lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _one_bound(self):
        if (self.requests is None) == (self.until is None):
            raise ValueError("give exactly one of requests and until")
        return self


class TraceRequests(_Spec):
    """A request list or a public LLM-serving trace (serving/traces.py): `csv` or `parquet` with columns
    arrival_s, prompt_tokens, output_tokens (seconds from the run's start) and optionally session (a whole
    number >= 0 shared by a session's turns; blank: none); `azure` (Azure LLM inference
    2023 and 2024: TIMESTAMP, ContextTokens, GeneratedTokens), `burstgpt` (Timestamp, Request tokens,
    Response tokens) or `mooncake` (JSON lines: timestamp in ms, input_length, output_length), whose
    first request arrives at `start`. The path is relative to the scenario file."""

    kind: Literal["trace"]
    service: str = Field(description="the service they go to (services[].name)")
    format: Literal["csv", "parquet", "azure", "burstgpt", "mooncake"] = Field(description="the file's format")
    path: Path = Field(description="the file, relative to the scenario file")
    strict: bool = Field(default=True, description=(
        "stop at the first malformed row (file and line); false skips them and warns with their count"))
    start: float = Field(default=0.0, ge=0, description=(
        "a public trace's first request arrives this long after the run's start (csv/parquet: added to arrival_s)"))
    speedup: float = Field(default=1.0, gt=0, le=1e6, description=(
        "divide the trace's gaps by this (2: the same requests in half the time)"))
    until: float | None = Field(default=None, gt=0, description=(
        "keep the requests arriving before this time (after the run's start, once start and speedup apply)"))

    _d = field_validator("until", "start", mode="before")(lambda v: None if v is None else parse_duration(v))


RequestSource = Annotated[SyntheticRequests | TraceRequests, Field(discriminator="kind")]
Services = list[ServiceSpec]
Requests = list[RequestSource]
