"""The run's features beyond the core: each is an event source, a meter or both (engine/features.py).

A feature module has `build(setup) -> list` (its sources and meters for this run, none when the
scenario does not ask for it) and may declare `SECTION` (a top-level scenario key) with its `Spec`
(the pydantic model that validates it), or several keys as `SECTIONS = {key: (Spec, description)}`:
the scenario then accepts those keys and documents them.
Registering a feature is adding its module's name to FEATURES. The order is the order sources start
(ties on the calendar keep it), meters add columns, and summary keys appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType

import numpy as np
import pandas as pd

from simulator.cluster.pool import Cluster

FEATURES = (
    "power",  # timeline power_kw
    "burst",  # cloud-burst pools: a pass when a job has waited long enough; burst_gpus, burst_* keys
    "network",  # contended fabrics pace multi-node jobs; network_delay_s, network_* keys
    "failures",  # node failures and repairs; down_gpus, failures, down_gpu_hours
    "pool_service",  # pools entering service, draining and retiring
    "cost",  # cost_usd and its parts, timeline usd_per_h
    "maintenance",  # pools taken down for maintenance windows
    "runtime_bands",  # how sure the performance model is of each model job's runtime
    "capacity",  # peak_pflops_bf16 (and _fp8): the aggregate dense peak of the devices in service at the start
    "serving",  # LLM services' replicas on the pools and their requests; requests.parquet, services keys
    "sites",  # sites (prices, carbon, PUE), WAN links moving jobs' input, the site policy; the `sites` key
    "slices",  # TPU slices on torus pools: fragmented_chips, fragmented_chip_hours, fragmented_chips_mean
    "sharing",  # GPU sharing pools: fragmented_gpus, fragmented_shared_gpus, fragmented_gpu_hours, ...
    "spot",  # spot burst pools whose nodes are interrupted; jobs' spot_interruptions, the `spot` key
)


def modules() -> list[ModuleType]:
    return [import_module(f"{__name__}.{name}") for name in FEATURES]


def scenario_sections() -> dict[str, tuple[type, str]]:
    """The scenario keys features declare: key -> (its Spec model, a one-line description). A module
    declares one key with `SECTION` and `Spec` (described by its docstring's first sentence), or
    several with `SECTIONS = {key: (Spec, description)}`."""
    sections = {}
    for m in modules():
        if hasattr(m, "SECTION"):
            sections[m.SECTION] = (m.Spec, _first_sentence(m.__doc__))
        sections.update(getattr(m, "SECTIONS", {}))
    return sections


def _first_sentence(text: str) -> str:
    return " ".join(text.split()).split(". ")[0].rstrip(".") + "."


@dataclass
class Setup:
    """What a feature is built from: the validated scenario, its cluster and job table, and the run's
    seed with the index of its first child stream left to features (after the workload's and the
    policy's)."""

    scenario: object
    cluster: Cluster
    jobs: pd.DataFrame
    seed: np.random.SeedSequence
    first_stream: int

    def rng(self, stream: int) -> np.random.Generator:
        """A feature's own random stream: each feature that draws keeps its number forever, so adding
        a feature never changes the draws of another (the child `SeedSequence.spawn` would give)."""
        seed = self.seed
        child = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, self.first_stream + stream),
                                       pool_size=seed.pool_size)
        return np.random.default_rng(child)


def build_features(setup: Setup) -> list:
    """Every registered feature's sources and meters for this run, in registration order."""
    return [part for module in modules() for part in module.build(setup)]
