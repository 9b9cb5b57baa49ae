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
        if found is None:
            return None
        (x, y, z), (a, b, c) = found
        self.used[x:x + a, y:y + b, z:z + c] = True
        self.slices[key] = found
        return found

    def release(self, key) -> None:
        (x, y, z), (a, b, c) = self.slices.pop(key)
        self.used[x:x + a, y:y + b, z:z + c] = False

    def fragmentation(self, shape) -> int:
        """Free chips that no placement of `shape` (any orientation) could cover."""
        table = self._box_sums()
        coverable = np.zeros(self.dims, dtype=bool)
        for a, b, c in self.orientations(shape):
            for x, y, z in np.argwhere(self._free_origins(table, (a, b, c))):
                coverable[x:x + a, y:y + b, z:z + c] = True
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

