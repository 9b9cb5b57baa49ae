"""The cluster view of a run in which some jobs name their TPU slice shape (`slice_shape`).

Pools are asked for a number of devices, never for a job; a torus pool learns which job it is placing
from the run's `NamedShapes` (cluster/torus.py), which this view sets around each placement. Runs where
no job names a shape use the plain `ClusterView` and pay nothing for it.
"""

from __future__ import annotations

from simulator.cluster.torus import NamedShapes
from simulator.policies.base import ClusterView


class ShapedClusterView(ClusterView):
    def __init__(self, cluster, named: NamedShapes, spread: bool = False):
        super().__init__(cluster, spread)
        self.named = named

    def placing(self, job) -> None:
        self.named.job = job

    def allocate(self, job, devices: int | None = None):
        named = self.named
        named.job = job
        try:
            return ClusterView.allocate(self, job, devices)
        finally:
            named.job = None

    def fits(self, job, devices: int | None = None) -> bool:
        named = self.named
        named.job = job
        try:
            return ClusterView.fits(self, job, devices)
        finally:
            named.job = None
