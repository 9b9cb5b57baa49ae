"""TPU slices on a 3-D torus (cluster/torus.py): a hand-worked sequence on a 4x4x4 cube, placements
that never overlap, and the fragmentation they leave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cluster.torus import Torus, shape_of


def test_a_hand_worked_sequence_of_slices_on_a_4x4x4_cube():
    cube = Torus((4, 4, 4))
    # A 2x2x4 at the first origin.
    assert cube.allocate("a", (2, 2, 4)) == ((0, 0, 0), (2, 2, 4))
    # 4x4x2 cannot go anywhere (x and y must span the cube and A spans every z); its next orientation,
    # 4x2x4, fits at y = 2.
    assert cube.allocate("b", (4, 4, 2)) == ((0, 2, 0), (4, 2, 4))
    # What is left is x 2-3, y 0-1, every z: a 2x2x4 goes there, and the cube is full.
    assert cube.allocate("c", (2, 2, 4)) == ((2, 0, 0), (2, 2, 4))
    assert cube.free_chips == 0 and cube.allocate("d", (1, 1, 1)) is None
    # A ends: 16 free chips in a 2x2x4 block. A 4x4x1 slice (16 chips) is refused in every orientation:
    # all 16 free chips are fragmented for it; none are for a 2x2x2.
    cube.release("a")
    assert cube.free_chips == 16
    assert cube.allocate("e", (4, 4, 1)) is None and "e" not in cube.slices
    assert cube.fragmentation((4, 4, 1)) == 16 and cube.fragmentation((2, 2, 2)) == 0
    assert cube.largest_free_slice([(4, 4, 1), (2, 2, 4), (2, 2, 2)]) == (2, 2, 4)
    assert cube.allocate("f", (2, 2, 2)) == ((0, 0, 0), (2, 2, 2))
    # The other half of that block is left: a 2x2x2 fits at z = 2, a 2x4x2 does not.
    assert cube.find((2, 4, 2)) is None and cube.find((2, 2, 2)) == ((0, 0, 2), (2, 2, 2))


def test_shapes_read_as_planners_write_them():
    assert shape_of("4x4x8") == (4, 4, 8) and shape_of("2x2") == (2, 2, 1) and shape_of("16") == (16, 1, 1)
    with pytest.raises(ValueError):
        shape_of("4x0x2")


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([(1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 4), (4, 4, 1), (2, 4, 4)]),
                          st.booleans()), min_size=1, max_size=30))
def test_slices_never_overlap_and_a_refusal_means_no_free_box_of_that_shape(ops):
    cube = Torus((4, 4, 4))
    live = []
    for k, (shape, release_first) in enumerate(ops):
        if release_first and live:
            cube.release(live.pop(0))
        placed = cube.allocate(k, shape)
        if placed is None:
            # brute force: no orientation has an all-free box anywhere
            for a, b, c in cube.orientations(shape):
                for x in range(5 - a):
                    for y in range(5 - b):
                        for z in range(5 - c):
                            assert cube.used[x:x + a, y:y + b, z:z + c].any()
        else:
            live.append(k)
        covered = np.zeros((4, 4, 4), dtype=int)
        for (x, y, z), (a, b, c) in cube.slices.values():
            covered[x:x + a, y:y + b, z:z + c] += 1
        assert covered.max(initial=0) <= 1 and (covered.astype(bool) == cube.used).all()
        assert 0 <= cube.fragmentation(shape) <= cube.free_chips
