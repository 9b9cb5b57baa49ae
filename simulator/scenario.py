"""The scenario file: YAML validated into typed models. Every error names the file, key path and line."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from simulator.cluster.sharing import POLICIES as SHARING_POLICIES
from simulator.cluster.torus import SHAPE_FAMILY, SHAPES_2D, Torus, shape_of, standard_shapes
from simulator.errors import CapsimError
from simulator.features import scenario_sections
from simulator.profiles import list_devices, load_profile_yaml
from simulator.units import parse_duration
from simulator.workload.size import MAX_DEVICES_PER_NODE, MAX_NODES, MAX_POOLS, check_size
from simulator.workload.spec import WorkloadSpec
from simulator.yaml_file import load_yaml, validation_error, yaml_error

# Bounds on money and power: far beyond any real figure, and small enough that what is computed from
# them (price x devices x time) stays finite.
MAX_PRICE_USD = 1e9  # per device
MAX_USD_PER_HOUR = 1e6  # per device-hour
MAX_USD_PER_KWH = 1e3
MAX_PUE = 10.0


# An HGX/OAM baseboard joins 8 devices inside one server (NVIDIA HGX, AMD MI300X OAM platform): a
# profile's scale-up domain of at most this many is a server's, never spanning nodes; larger ones (GB200
# NVL72 racks, TPU ICI pods) do.
SERVER_BOARD_DEVICES = 8


class _Spec(BaseModel):
    # Numbers must be finite everywhere: NaN and infinity are refused like any value out of range.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NetworkSpec(_Spec):
    """A pool's scale-out fabric, modelled as a shared resource (simulator/network/): one fabric that
    carries the nodes' injection bandwidth (devices x the profile's scale-out GB/s) divided by
    `oversubscription` (`topology: shared`), a fat-tree of leaf switches whose uplinks are
    oversubscribed, optionally grouped in pods under a core (`topology: fat-tree`), or a rail-optimised
    fabric whose groups of nodes have one rail leaf per device of a node (`topology: rail`)."""

    oversubscription: float = Field(ge=1, le=1000, description=(
        "injection bandwidth / fabric capacity (1 = non-blocking); with a fat-tree, of each leaf's uplink (rail: of "
        "each rail leaf's)"))
    topology: Literal["shared", "fat-tree", "rail"] = Field(default="shared", description=(
        "shared: one fabric for the pool; fat-tree: leaf switches of nodes_per_leaf nodes under a spine; "
        "rail: groups of nodes_per_leaf nodes, device k of each node on the group's rail leaf k, under a spine"))
    nodes_per_leaf: int | None = Field(default=None, ge=1, le=MAX_NODES, description=(
        "nodes under each leaf (rack) switch (fat-tree), or in each rail group (rail: every rail leaf of the "
        "group has one port per node)"))
    leaves_per_pod: int | None = Field(default=None, ge=1, le=MAX_NODES, description=(
        "leaves (rail groups) per pod under a core tier (fat-tree, rail; none: two tiers)"))
    pod_oversubscription: float = Field(default=1.0, ge=1, le=1000, description=(
        "a pod's leaf uplinks / its own uplink to the core (fat-tree or rail with pods)"))
    traffic: Literal["all-to-all", "ring"] = Field(default="all-to-all", description=(
        "how a job's traffic spreads over its nodes (fat-tree, rail): all-to-all (an upper bound) or ring"))
    placement: Literal["pack", "rack"] = Field(default="pack", description=(
        "pack: whole free nodes lowest first; rack (fat-tree, rail): a multi-node job's nodes from as few "
        "leaves (rail groups) as possible"))

    @model_validator(mode="after")
    def _fat_tree_has_leaves(self):
        if self.topology != "shared" and self.nodes_per_leaf is None:
            raise ValueError(f"a {'rail fabric' if self.topology == 'rail' else 'fat-tree'} needs nodes_per_leaf")
        if self.topology == "shared" and (self.nodes_per_leaf or self.leaves_per_pod or self.placement == "rack"):
            raise ValueError("nodes_per_leaf, leaves_per_pod and placement: rack describe a fat-tree: add "
                             "topology: fat-tree (or rail)")
        return self


class SharingSpec(_Spec):
    """GPU sharing on a pool: jobs asking for a fraction of one GPU (the job table's gpu_fraction) share GPUs."""

    policy: Literal[SHARING_POLICIES] = Field(default="best-fit", description=(
        "where a share (or a whole-GPU job within one node) goes, as in `capsim gpu-sharing`: best-fit (the "
        "node left with the least free GPU, the fullest GPU that fits), spread (the emptiest node and GPU), "
        "pack (a GPU already shared first, then a node in use), fgd (fragmentation gradient descent, Weng "
        "et al. ATC '23: the placement that least increases fragmentation for the run's mix of requests)"))


class PoolSpec(_Spec):
    """A pool of identical nodes: owned, an expansion that arrives on a date, a retirement, or cloud burst."""

    name: str = Field(description="unique pool name (jobs.parquet `pool`)")
    device: str = Field(description="a device id: a file name in hardware_profiles/ without .yaml")
    nodes: int = Field(ge=1, le=MAX_NODES, description="nodes in the pool (for a burst pool, the quota)")
    devices_per_node: int = Field(ge=1, le=MAX_DEVICES_PER_NODE, description="devices (GPUs, TPU chips) per node")
    # Costing (used when the scenario has `cost`): a purchase price per device overriding the
    # profile's list price, or a rental rate for pools that are rented rather than bought.
    price_usd: float | None = Field(default=None, ge=0, le=MAX_PRICE_USD, description=(
        "purchase price per device, overriding the profile's list price (with `cost:`)"))
    usd_per_device_hour: float | None = Field(default=None, ge=0, le=MAX_USD_PER_HOUR, description=(
        "a rented pool's price per device-hour (with `cost:`); burst pools are billed per device-hour used"))
    # An expansion: the pool enters service this long after the first job's submission (its devices
    # are not used, not powered, not costed and cannot fail before then). A retirement: it leaves
    # service at `available_until`; the jobs on it checkpoint and move. With `drain_before`, it stops
    # taking new jobs that long before, so the jobs on it can finish first.
    available_from: float = Field(default=0.0, ge=0, description=(
        "enters service this long after the first submission (an expansion)"))
    available_until: float | None = Field(default=None, gt=0, description=(
        "leaves service at this time after the first submission; its jobs checkpoint and move (a retirement)"))
    drain_before: float | None = Field(default=None, ge=0, description=(
        "takes no new jobs this long before available_until, so the jobs on it can finish"))
    # A cloud-burst pool: capacity rented on demand (nodes is the quota). A job goes there only once
    # it has waited `burst_after` in the queue and no owned pool fits it; it is paid per device-hour
    # used (usd_per_device_hour) and draws no power on site.
    burst_after: float | None = Field(default=None, ge=0, description=(
        "a cloud-burst pool: a job goes there once it has waited this long and no owned pool fits it"))
    # A contended scale-out fabric; without it the pool's network is not modelled (never a bottleneck).
    network: NetworkSpec | None = Field(default=None, description=(
        "the pool's scale-out fabric as a shared resource; without it the network is never a bottleneck"))
    # A scale-up (NVLink) domain of several nodes, e.g. a GB200 NVL72 rack of 18 trays of 4 GPUs: a job
    # inside one sends nothing over the fabric, and placement keeps a job inside one when it can.
    scale_up_nodes: int | None = Field(default=None, ge=1, le=MAX_NODES, description=(
        "consecutive nodes forming one scale-up (NVLink) domain, with network: a job inside one puts no "
        "traffic on the scale-out fabric and multi-node jobs are placed inside one when one has room "
        "(default: for a domain larger than one 8-device server board, the profile's scale-up domain / "
        "devices_per_node when that is a whole number above 1, e.g. gb200 with 4 per node: 18; 1 turns it off)"))

    # A TPU pool as a torus of chips: each job takes a contiguous slice of it (cluster/torus.py).
    topology: Literal["nodes", "torus"] = Field(default="nodes", description=(
        "nodes: jobs take devices on nodes (best fit); torus (TPU devices only): jobs take contiguous "
        "slices of a torus of chips, first fit, so free chips can be stranded (fragmentation)"))
    torus: list[int] | None = Field(default=None, min_length=2, max_length=3, description=(
        "the torus' dimensions [x, y, z] ([x, y] or z = 1 for a 2-D v5e/v6e torus); their product is the "
        "pool's chips (default: the standard slice shape of that many chips, e.g. 64 -> 4x4x4)"))
    slice_shapes: dict[int, str] | None = Field(default=None, description=(
        "chip count -> slice shape (AxBxC) a job of that size takes, added to or replacing the standard "
        "shapes (v4/v5p: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, 4x4x8, ...; v5e/v6e: 1x1, 2x2, 2x4, 4x4, ...)"))
    # GPU sharing (cluster/shared_pool.py): without it a fractional job takes a whole GPU.
    sharing: SharingSpec | None = Field(default=None, description=(
        "jobs asking for a fraction of one GPU (gpu_fraction < 1, gpus 1) share GPUs on this pool, several "
        "per GPU, placed by `policy`; without it a fractional job takes a whole GPU"))

    _available = field_validator("available_from", "available_until", "drain_before", "burst_after", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _service_window(self):
        if self.available_until is not None and self.available_until <= self.available_from:
            raise ValueError("available_until must come after available_from")
        if self.drain_before is not None:
            if self.available_until is None:
                raise ValueError("drain_before needs available_until (the retirement it leads up to)")
            if self.available_until - self.drain_before < self.available_from:
                raise ValueError("drain_before would start draining before the pool enters service")
        if self.burst_after is not None and self.price_usd is not None:
            raise ValueError("a burst pool is rented by the hour: give usd_per_device_hour, not price_usd")
        if self.topology == "torus":
            if self.sharing is not None:
                raise ValueError("sharing splits GPUs between jobs; a torus pool's chips are taken as whole slices")
            self._check_torus()
        elif self.torus is not None or self.slice_shapes is not None:
            raise ValueError("torus and slice_shapes describe a torus pool: add topology: torus")
        if self.scale_up_nodes is not None:
            self._check_scale_up_nodes()
        return self

    def _check_scale_up_nodes(self) -> None:
        if self.topology == "torus":
            raise ValueError("scale_up_nodes groups nodes into NVLink domains; a torus pool's chips are joined "
                             "by the torus")
        if self.network is None and self.scale_up_nodes > 1:
            raise ValueError("scale_up_nodes only changes the modelled scale-out fabric and placement on it: "
                             "add network")
        domain = self._profile_domain()
        if self.scale_up_nodes * self.devices_per_node > domain:
            raise ValueError(f"scale_up_nodes: {self.scale_up_nodes} nodes x {self.devices_per_node} devices "
                             f"exceed {self.device}'s scale-up domain of {domain} devices (spec.scale_up.domain)")

    def _profile_domain(self) -> int:
        return int(load_profile_yaml(self.device).get("spec", {}).get("scale_up", {}).get("domain", 1))

    @property
    def scale_up_domain_nodes(self) -> int:
        """Nodes per scale-up domain on the modelled fabric: `scale_up_nodes`, else the profile's domain
        in whole nodes; 1 (no domain beyond a node) without a network or on a torus."""
        if self.network is None or self.topology == "torus":
            return 1
        if self.scale_up_nodes is not None:
            return self.scale_up_nodes
        domain = self._profile_domain()
        if domain <= SERVER_BOARD_DEVICES:  # one server's NVLink board: nodes of fewer devices are split boards
            return 1
        nodes, left = divmod(domain, self.devices_per_node)
        # a domain that is not whole nodes is not automatic: which devices share it is not known
        return nodes if nodes > 1 and left == 0 else 1

    def _check_torus(self) -> None:
        # GPUs sit on nodes joined by switches, not in a torus of chips: only TPU pools take slices.
        if load_profile_yaml(self.device).get("kind") != "tpu":
            raise ValueError(f"topology: torus needs a TPU device (tpu-v4, tpu-v5p, tpu-v5e, ...), not {self.device!r}")
        if self.network is not None and self.network.placement == "rack":
            raise ValueError("placement: rack places nodes under leaf switches; a torus pool places slices")
        dims = self.torus_dims  # raises if no default
        if int(np.prod(dims)) != self.devices:
            raise ValueError(f"torus {'x'.join(map(str, dims))} has {int(np.prod(dims))} chips; the pool has "
                             f"{self.devices} (nodes x devices_per_node)")
        if any(d < 1 for d in dims):
            raise ValueError("torus dimensions must be positive")
        if SHAPE_FAMILY.get(self.device) is SHAPES_2D and dims[2] != 1:
            raise ValueError(f"{self.device} is a 2-D torus: give torus: [x, y] (or z = 1)")
        Torus(dims)  # the allocator accepts it
        for chips, shape in self.slice_shape_map.items():
            torus = Torus(dims)
            if not torus.orientations(shape):
                raise ValueError(f"slice shape {'x'.join(map(str, shape))} ({chips} chips) does not fit in the "
                                 f"{'x'.join(map(str, dims))} torus in any orientation")

    @property
    def torus_dims(self) -> tuple[int, int, int]:
        """The torus' dimensions: as given, else the standard slice shape of the pool's chip count."""
        if self.torus is not None:
            return tuple([*self.torus, 1][:3])
        shape = standard_shapes(self.device).get(self.devices)
        if shape is None:
            raise ValueError(f"{self.devices} chips is no standard {self.device} slice shape: give torus: [x, y, z]")
        return shape

    @property
    def slice_shape_map(self) -> dict[int, tuple[int, int, int]]:
        """Chip count -> slice shape: the standard ones that fit the torus, then `slice_shapes`."""
        torus = Torus(self.torus_dims)
        shapes = {chips: shape for chips, shape in standard_shapes(self.device).items() if torus.orientations(shape)}
        for chips, text in (self.slice_shapes or {}).items():
            try:
                shape = shape_of(text)
            except ValueError as exc:
                raise ValueError(f"slice_shapes.{chips}: {exc}") from None
            if int(np.prod(shape)) != chips:
                raise ValueError(f"slice_shapes.{chips}: {text} has {int(np.prod(shape))} chips, not {chips}")
            shapes[int(chips)] = shape
        return shapes

    @property
    def burst(self) -> bool:
        return self.burst_after is not None

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v not in list_devices():
            raise ValueError(f"unknown device {v!r}; expected one of: {', '.join(list_devices())}")
        return v

    @property
    def devices(self) -> int:
        return self.nodes * self.devices_per_node


class ClusterSpec(_Spec):
    """The pools of the cluster, owned and rented."""

    pools: list[PoolSpec] = Field(min_length=1, max_length=MAX_POOLS, description=(
        "one entry per pool; names must be unique"))

    @model_validator(mode="after")
    def _unique_names(self):
        names = [p.name for p in self.pools]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(sorted(dup))}")
        nodes = sum(p.nodes for p in self.pools)
        if nodes > MAX_NODES:
            raise ValueError(f"the pools have {nodes:,} nodes in all; at most {MAX_NODES:,} can be simulated")
        return self

    @property
    def devices(self) -> int:
        return sum(p.devices for p in self.pools)


class PreemptionSpec(_Spec):
    """What a preempted job loses and pays: work since its last checkpoint, then a restore."""

    checkpoint_interval: float | None = Field(default=None, gt=0, description=(
        "how often running jobs checkpoint (none: a suspended job loses nothing)"))
    checkpoint_cost: float = Field(default=0.0, ge=0, description=(
        "time to write one checkpoint (needs checkpoint_interval)"))
    # The scheduler's preemptions checkpoint first (Gavel/Themis lease ends, Tiresias): only node
    # failures then lose the work since the last periodic checkpoint.
    checkpoint_on_preempt: bool = Field(default=False, description=(
        "the scheduler's preemptions checkpoint first: only failures lose work since the last checkpoint"))
    restore: float = Field(default=60.0, ge=0, description=(
        "time to resume a preempted job (Tiresias, NSDI'19: about a minute)"))

    _d = field_validator("checkpoint_interval", "checkpoint_cost", "restore", mode="before")(
        lambda v: None if v is None else parse_duration(v))

    @model_validator(mode="after")
    def _cost_needs_interval(self):
        if self.checkpoint_cost and self.checkpoint_interval is None:
            raise ValueError("checkpoint_cost needs a checkpoint_interval (how often the cost is paid)")
        return self


class PowerSpec(_Spec):
    """How devices draw power (simulator/models/power.py): idle devices at `idle_fraction` of TDP, and the
    facility's power usage effectiveness on top of IT power."""

    # Assumed, not measured here: nvidia-smi reports roughly 50-90 W for idle A100/H100 SXM parts.
    idle_fraction: float = Field(default=0.15, ge=0.0, le=1.0, description=(
        "an idle device's draw as a share of its TDP (assumed; nvidia-smi shows ~50-90 W idle on A100/H100)"))
    pue: float = Field(default=1.0, ge=1.0, le=MAX_PUE, description=(
        "power usage effectiveness: 1.0 reports IT power, ~1.1-1.6 facility power"))


class CostSpec(_Spec):
    """What the simulated period costs (simulator/models/cost.py): bought devices amortised straight-line,
    rented ones by the hour, and the energy."""

    usd_per_kwh: float = Field(default=0.08, ge=0, le=MAX_USD_PER_KWH, description=(
        "electricity price (assumed default: about the 2023 US industrial average, EIA)"))
    amortization_years: float = Field(default=4.0, ge=0.01, le=100, description=(
        "straight-line depreciation period of bought devices (assumed default)"))


class FailureSpec(_Spec):
    """Node failures (models/failures.py): each device fails as a Poisson process; a failure takes its
    node down for `repair` and interrupts the jobs on it, which lose the work since their last checkpoint."""

    # Llama 3 (Dubey et al. 2024, sec. 3.3.4): 419 unexpected interruptions in 54 days on 16,384 H100s,
    # i.e. one per 16,384 x 54 x 24 / 419 = 50,700 device-hours.
    device_mtbf: float = Field(default=50_700 * 3600.0, gt=0, description=(
        "mean time between failures per device (default from Llama 3: 419 interruptions in 54 days on 16,384 H100)"))
    repair: float = Field(default=4 * 3600.0, ge=0, description=(
        "time a failed node stays down (assumed default: a node swap or reboot)"))

    _d = field_validator("device_mtbf", "repair", mode="before")(parse_duration)


class SchedulerSpec(BaseModel):
    """`policy` names a registered policy; its own options sit beside it and are validated by the policy."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    policy: str = Field(default="fifo", description=(
        "a registered policy name (fifo, sjf, srtf, easy-backfill, conservative-backfill, quota, tiresias, "
        "gittins, themis, gavel, edf, elastic-fifo, ...) or a 'module:Class' reference"))
    placement: Literal["pack", "spread"] = Field(default="pack", description=(
        "pack: best fit on the fullest node; spread: the emptiest"))
    preemption: PreemptionSpec = Field(default=PreemptionSpec(), description="what preemptions cost")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class _CoreScenario(_Spec):
    """A scenario file: the cluster, the work that arrives, the scheduler, and what power, money and
    failures cost."""

    name: str = Field(default="scenario", description="shown in outputs and reports")
    seed: int = Field(default=0, ge=0, lt=2**63, description="the run's random seed (`capsim run --seed` overrides it)")
    seeds: int = Field(default=1, ge=1, description=(
        "`capsim run` repeats the run with seeds seed, seed+1, ... and reports each figure with its 95% "
        "interval (`--seeds` overrides it; sweeps and plans set their own seeds)"))
    cluster: ClusterSpec = Field(description="the pools")
    # Required, except by simulator.run / build called with a job table (jobs=...), which replaces it.
    workload: list[WorkloadSpec] = Field(default_factory=list, description=(
        "the job sources (synthetic generators, presets, traces), merged in submission order"))
    scheduler: SchedulerSpec = Field(default=SchedulerSpec(), description="the policy and its options")
    power: PowerSpec = Field(default=PowerSpec(), description="how devices draw power")
    cost: CostSpec | None = Field(default=None, description="prices: with it the summary holds cost_usd")
    failures: FailureSpec | None = Field(default=None, description="node failures: none unless set")
    # Where relative paths (trace files) are resolved; set by the loader, not the file.
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: str = Field(default="<scenario>", exclude=True)


# The sections features bring with them (simulator/features/): optional, after the core's keys.
Scenario = create_model("Scenario", __base__=_CoreScenario, __doc__=_CoreScenario.__doc__, __module__=__name__,
                        **{key: (spec | None, Field(default=None, description=description))
                           for key, (spec, description) in scenario_sections().items()})


def scenario_from_text(text: str, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    try:
        data, root = load_yaml(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, source) from None
    return scenario_from_data(data, source, base_dir, root)


def scenario_from_data(data: Any, source: str = "<scenario>", base_dir: Path | None = None,
                       root: yaml.Node | None = None) -> Scenario:
    """Validate parsed scenario data; `root`, the composed YAML when there is one, gives error lines.
    A scenario too big for this machine is refused here too (workload/size.py), before anything is built."""
    if not isinstance(data, dict):
        raise CapsimError("expected a mapping of scenario keys (name, cluster, workload, ...)", source=source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source, root) from None
    scenario = scenario.model_copy(update={"base_dir": base_dir or Path("."), "source": source})
    check_size(scenario)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CapsimError(f"cannot read scenario file: {exc.strerror}", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise CapsimError(f"cannot read scenario file: not UTF-8 text (byte {exc.start})", source=str(path)) from None
    return scenario_from_text(text, source=str(path), base_dir=path.resolve().parent)


def default_scenario_text() -> str:
    return resources.files("simulator").joinpath("default_scenario.yaml").read_text()


def default_scenario() -> Scenario:
    return scenario_from_text(default_scenario_text(), source="<embedded default scenario>")
