"""TPU slices: contiguous sub-blocks of a 3-D torus of chips, and the fragmentation they leave.

A TPU v4 or v5p pod is a 3-D torus of chips (cubes of 4 x 4 x 4 joined by optical switches; a v5e pod
a 2-D one, third dimension 1), and a job gets a *slice*: a contiguous a x b x c block of chips, whose
links are the torus' own (Jouppi et al., "TPU v4", ISCA 2023; Google Cloud TPU docs, slice shapes). A
slice is placed first fit: the requested shape first, then its other orientations (the distinct
permutations of (a, b, c) in order), each at the first free origin in (x, y, z) order, without
wrapping round the torus. So chips can be free and still unusable for a shape: 16 free chips in a
2 x 2 x 4 block cannot hold a 4 x 4 x 1 slice. `fragmentation(shape)` counts the free chips that no
placement of that shape could cover.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from simulator.cluster.pool import Allocation
from simulator.cluster.synced import NodeSyncedPool

# The slice shapes a job may take, one per chip count (the standard, most cube-like one), per family.
# 3-D (v4, v5p): Google Cloud TPU docs, "TPU v5p" configurations table (cloud.google.com/tpu/docs/v5p):
# 2x2x1, 2x2x2, 2x4x4, 4x4x4, 4x4x8, 4x8x8, 8x8x8, 8x8x16, 8x16x16, 16x16x16, 16x16x24; 2x2x4 (16 chips)
# is the docs' own example topology (cloud.google.com/tpu/docs/types-topologies, v5p-32 / v4-32). v4 takes
# the same list up to its 4,096-chip pod: its rule is AxBxC with A, B, C all <= 4 or all multiples of 4
# (same page), which every shape here meets. TPU7x (Ironwood) takes it too: a 3-D torus of 4x4x4 cubes that
# "shares many similarities with TPU v5p" (cloud.google.com/tpu/docs/tpu7x; tpu-recipes run 4x4x4 to 4x8x8).
SHAPES_3D = ((2, 2, 1), (2, 2, 2), (2, 2, 4), (2, 4, 4), (4, 4, 4), (4, 4, 8), (4, 8, 8), (8, 8, 8),
             (8, 8, 16), (8, 16, 16), (16, 16, 16), (16, 16, 24))
# 2-D (v5e, v6e): Google Cloud TPU docs, v5e and v6e configurations (cloud.google.com/tpu/docs/v5e,
# /v6e): 1x1, 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16 (a 256-chip pod).
SHAPES_2D = ((1, 1, 1), (2, 2, 1), (2, 4, 1), (4, 4, 1), (4, 8, 1), (8, 8, 1), (8, 16, 1), (16, 16, 1))
SHAPE_FAMILY = {"tpu-v4": SHAPES_3D, "tpu-v5p": SHAPES_3D, "tpu-v5e": SHAPES_2D, "tpu-v6e": SHAPES_2D,
                "tpu7x": SHAPES_3D}


class Torus:
    def __init__(self, dims: tuple[int, int, int]):
        if len(dims) != 3 or any(int(d) < 1 for d in dims):
            raise ValueError(f"a torus needs three positive dimensions, got {dims!r}")
        self.dims = tuple(int(d) for d in dims)
        self.used = np.zeros(self.dims, dtype=bool)
        self.slices: dict[object, tuple[tuple[int, int, int], tuple[int, int, int]]] = {}

    @property
    def chips(self) -> int:
        return int(np.prod(self.dims))

    @property
    def free_chips(self) -> int:
        return int(self.chips - self.used.sum())

    def orientations(self, shape) -> list[tuple[int, int, int]]:
        """The shape, then its other distinct orientations, those that fit the torus at all."""
        seen, out = set(), []
        for p in [tuple(shape), *permutations(shape)]:
            if p not in seen and all(s <= d for s, d in zip(p, self.dims, strict=True)):
                seen.add(p)
                out.append(p)
        return out

    def _box_sums(self) -> np.ndarray:
        """Summed-volume table of used chips, padded with a zero plane in front of each axis."""
        table = np.zeros(tuple(d + 1 for d in self.dims), dtype=np.int64)
        table[1:, 1:, 1:] = self.used.cumsum(0).cumsum(1).cumsum(2)
        return table

    def _free_origins(self, table: np.ndarray, shape) -> np.ndarray:
        """A boolean array over origins: is the box of `shape` at that origin all free?"""
        a, b, c = shape
        x, y, z = (d - s + 1 for d, s in zip(self.dims, shape, strict=True))
        t = table
        used = (t[a:a + x, b:b + y, c:c + z] - t[:x, b:b + y, c:c + z] - t[a:a + x, :y, c:c + z]
                - t[a:a + x, b:b + y, :z] + t[:x, :y, c:c + z] + t[:x, b:b + y, :z] + t[a:a + x, :y, :z]
                - t[:x, :y, :z])
        return used == 0

    def find(self, shape) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """(origin, oriented shape) of the first-fit placement, or None."""
        table = self._box_sums()
        for oriented in self.orientations(shape):
            free = self._free_origins(table, oriented)
            hits = np.argwhere(free)  # in (x, y, z) order
            if len(hits):
                return tuple(int(v) for v in hits[0]), oriented
        return None

    def allocate(self, key, shape) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """Place slice `key` of `shape`; None (nothing changes) when no placement is free."""
        if key in self.slices:
            raise ValueError(f"slice {key!r} is already placed")
        found = self.find(shape)
        if found is not None:
            self.occupy(key, found)
        return found

    def occupy(self, key, found) -> None:
        """Mark the placement `found` (from `find`) as slice `key`."""
        (x, y, z), (a, b, c) = found
        self.used[x:x + a, y:y + b, z:z + c] = True
        self.slices[key] = found

    def release(self, key) -> None:
        (x, y, z), (a, b, c) = self.slices.pop(key)
        self.used[x:x + a, y:y + b, z:z + c] = False

    def fragmentation(self, shape) -> int:
        """Free chips that no placement of `shape` (any orientation) could cover."""
        table = self._box_sums()
        coverable = np.zeros(self.dims, dtype=bool)
        ends = [np.arange(1, d + 1) for d in self.dims]  # prefix index just past each chip, per axis
        for oriented in self.orientations(shape):
            origins = self._free_origins(table, oriented)
            if not origins.any():
                continue
            # A chip is covered when a free origin lies within `oriented` behind it: one box sum over
            # the origins (a summed-volume table), not one slice assignment per origin.
            t = np.zeros(tuple(d + 1 for d in self.dims), dtype=np.int64)
            t[tuple(slice(1, n + 1) for n in origins.shape)] = origins
            t = t.cumsum(0).cumsum(1).cumsum(2)
            ix, iy, iz = np.ix_(*ends)
            jx, jy, jz = np.ix_(*(np.maximum(e - s, 0) for e, s in zip(ends, oriented, strict=True)))
            count = (t[ix, iy, iz] - t[jx, iy, iz] - t[ix, jy, iz] - t[ix, iy, jz]
                     + t[jx, jy, iz] + t[jx, iy, jz] + t[ix, jy, jz] - t[jx, jy, jz])
            coverable |= count > 0
        return int((~self.used & ~coverable).sum())

    def largest_free_slice(self, shapes) -> tuple[int, int, int] | None:
        """The biggest of `shapes` (by chips) that could be placed now."""
        for shape in sorted(shapes, key=lambda s: (-int(np.prod(s)), tuple(s))):
            if self.find(shape) is not None:
                return tuple(shape)
        return None


def shape_of(text: str) -> tuple[int, int, int]:
    """'4x4x8' -> (4, 4, 8); '2x2' -> (2, 2, 1)."""
    parts = [int(p) for p in str(text).lower().split("x")]
    if not 1 <= len(parts) <= 3 or any(p < 1 for p in parts):
        raise ValueError(f"a slice shape is AxBxC with positive whole numbers, got {text!r}")
    return tuple(parts + [1] * (3 - len(parts)))  # type: ignore[return-value]



def shape_text(shape) -> str:
    return "x".join(map(str, shape))


def shape_refusal(shape, device: str | None, pools) -> str | None:
    """Why a job naming slice `shape` and asking for device type `device` (None: any) could never be
    placed as that slice, or None if one of the torus pools it may use holds it in some orientation.
    `pools`: (name, device, torus dims or None for a pool of nodes), in any order."""
    tori = [(name, dims) for name, dev, dims in pools if dims is not None and device in (None, dev)]
    if any(Torus(dims).orientations(shape) for _, dims in tori):
        return None
    have = "; ".join(f"{name}: {shape_text(dims)}" for name, dims in tori) or "none"
    return (f"slice_shape {shape_text(shape)} fits no torus pool the job may use in any orientation "
            f"(torus pools{f' of {device}' if device else ''}: {have})")


def standard_shapes(device: str) -> dict[int, tuple[int, int, int]]:
    """Chip count -> the standard slice shape of that many chips for a TPU generation ({} if unknown)."""
    return {int(np.prod(s)): s for s in SHAPE_FAMILY.get(device, ())}


def host_block(dims, per_node: int) -> tuple[int, int, int]:
    """The block of chips one node (host) holds: the most compact a x b x c = per_node that tiles the
    torus (a TPU v4/v5p host is 2x2x1, Google Cloud TPU docs, v5p table: 2x2x1 = one host). One always
    exists when per_node divides the chips (each prime factor can be spread over the axes)."""
    blocks = [(a, b, per_node // (a * b)) for a in range(1, per_node + 1) for b in range(1, per_node // a + 1)
              if per_node % (a * b) == 0]
    fitting = [blk for blk in blocks if all(d % s == 0 for d, s in zip(dims, blk, strict=True))]
    return min(fitting, key=lambda blk: (sum(blk), -blk[0], -blk[1]))


class NamedShapes:
    """The slice shapes jobs name (`slice_shape`), shared by a run's torus pools: a side table from job
    index to shape, so a Job carries no slot for it and runs where no job names one pay nothing.

    The pools' `fits` and `allocate` are asked for a chip count, not a job: whoever places a job sets
    `job` (the one being placed, `ShapedClusterView.placing`) for the length of that call, and a pool
    takes that job's named shape for a request of exactly its chip count (another size, an elastic
    resize, takes the standard shape of that size)."""

    __slots__ = ("table", "job")

    def __init__(self, table: dict[int, tuple[int, int, int]]):
        self.table = table
        self.job = None

    def of(self, job) -> tuple[int, int, int] | None:
        """The shape `job` names, or None."""
        return self.table.get(job.index)


class TorusPool(NodeSyncedPool):
    """A pool whose chips form a torus: a job gets a contiguous slice (`Torus`, first fit), of the shape
    it names (`named`, a `NamedShapes`) or else the one `shapes` gives its chip count. The nodes'
    free-device index of `Pool` is kept as well (each node is a block of chips, `host_block`), so
    failures, maintenance and the timeline see nodes as usual."""

    __slots__ = ("torus", "shapes", "watcher", "named", "_node_of", "_chips_of", "_fitting")

    def __init__(self, name: str, device: str, nodes: int, per_node: int, dims, shapes: dict, index: int = 0,
                 installed: bool = True, burst_after: float | None = None):
        super().__init__(name, device, nodes, per_node, index, installed, burst_after)
        self.torus = Torus(dims)
        if self.torus.chips != self.capacity:
            raise ValueError(f"a {'x'.join(map(str, dims))} torus has {self.torus.chips} chips; pool {name!r} "
                             f"has {self.capacity}")
        self.shapes = dict(shapes)
        self.named: NamedShapes | None = None  # the shapes jobs name, when any does (runner.py)
        self._fitting: dict[tuple[int, int, int], bool] = {}  # named shape -> does it fit this torus
        # Called with no argument just before the slices or the blocked chips change (a meter's hook).
        self.watcher = None
        a, b, c = host_block(self.torus.dims, per_node)
        X, Y, Z = self.torus.dims
        bx, by, bz = np.meshgrid(np.arange(X) // a, np.arange(Y) // b, np.arange(Z) // c, indexing="ij")
        self._node_of = (bx * (Y // b) + by) * (Z // c) + bz
        self._chips_of = [self._node_of == node for node in range(nodes)]
        if not installed:
            self.torus.used[:] = True

    def can_ever_fit(self, devices: int) -> bool:
        return devices in self.shapes

    def takes_shape(self, shape) -> bool:
        """Whether a slice of `shape` fits this torus in some orientation (on an empty torus)."""
        fits = self._fitting.get(shape)
        if fits is None:
            fits = self._fitting[shape] = bool(self.torus.orientations(shape))
        return fits

    def shape_for(self, devices: int):
        """The slice a request for `devices` chips takes here: the named shape of the job being placed
        when it asks for that many (None if that shape cannot fit this torus), else the standard one."""
        named = self.named
        if named is not None:
            job = named.job
            if job is not None and job.gpus == devices:
                shape = named.table.get(job.index)
                if shape is not None:
                    return shape if self.takes_shape(shape) else None
        return self.shapes.get(devices)

    def job_shape(self, job):
        """The slice `job` (at its requested size) takes on this pool, or None if it can have none here."""
        if self.named is not None:
            shape = self.named.table.get(job.index)
            if shape is not None:
                return shape if self.takes_shape(shape) else None
        return self.shapes.get(job.gpus)

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        shape = self.shape_for(devices)
        if self.guard is not None and not self.guard.admits(self, devices, 0):
            return False
        return shape is not None and devices <= self.free and self.torus.find(shape) is not None

    def allocate(self, devices: int, spread: bool = False, gpu_milli: int = 0) -> Allocation | None:
        """First fit of the job's slice (`spread` does not apply: a slice is one block; a chip is not
        shared, so `gpu_milli` neither)."""
        shape = self.shape_for(devices)
        if shape is None or devices > self.free:
            return None
        if self.guard is not None and not self.guard.admits(self, devices, 0):
            return None
        found = self.torus.find(shape)
        if found is None:
            return None
        if self.watcher is not None:
            self.watcher()
        (x, y, z), (a, b, c) = found
        nodes, counts = np.unique(self._node_of[x:x + a, y:y + b, z:z + c], return_counts=True)
        taken = [(int(n), int(k)) for n, k in zip(nodes, counts, strict=True)]
        for node, count in taken:
            self._move(node, self._free_on[node] - count)
        self.free -= devices
        if self.guard is not None:
            self.guard.taken(self, devices)
        alloc = Allocation(self, taken, devices)
        self.torus.occupy(id(alloc), found)  # the job holds `alloc` until release: its id stays unique
        return alloc

    def release(self, alloc: Allocation) -> None:
        if self.watcher is not None:
            self.watcher()
        self.torus.release(id(alloc))
        super().release(alloc)

    def _sync(self, node: int) -> None:
        """A node's chips are blocked while it is down or the pool is out of service (it holds no slice
        then: its jobs were released first)."""
        if self.watcher is not None:
            self.watcher()
        self.torus.used[self._chips_of[node]] = not self.installed or self._holds[node] > 0

    def room(self) -> SliceRoom:
        return SliceRoom(self)

    def fragmented_chips(self, devices: int) -> int:
        """Free chips a job of `devices` chips could not use (all of them if it has no slice shape)."""
        shape = self.shapes.get(devices)
        free = self.torus.free_chips
        return free if shape is None else self.torus.fragmentation(shape)


class SliceRoom:
    """`TorusPool.room`: the torus after releasing some slices, on a copy (the pool is not changed), so a
    preempting policy suspends jobs only when that makes the waiting job's slice fit."""

    __slots__ = ("pool", "torus", "freed")

    def __init__(self, pool: TorusPool):
        self.pool = pool
        self.torus = Torus(pool.torus.dims)
        self.torus.used = pool.torus.used.copy()
        self.freed = 0  # chips released so far (what a placement guard counts as given back)

    def release(self, alloc: Allocation) -> None:
        (x, y, z), (a, b, c) = self.pool.torus.slices[id(alloc)]
        self.torus.used[x:x + a, y:y + b, z:z + c] = False
        self.freed += alloc.devices

    def fits(self, devices: int, gpu_milli: int = 0) -> bool:
        guard = self.pool.guard
        if guard is not None and not guard.admits(self.pool, devices, self.freed):
            return False
        shape = self.pool.shape_for(devices)
        return shape is not None and self.torus.find(shape) is not None
