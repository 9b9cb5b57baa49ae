"""The performance model's scalar interpolation equals np.interp bit for bit (it replaced it for speed:
the serving fleet prices thousands of prefill shapes a day through it)."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.perf.kernels import interp

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def table(draw):
    xs = sorted(draw(st.lists(finite, min_size=1, max_size=12)))
    ys = draw(st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=len(xs),
                       max_size=len(xs)))
    return xs, ys


@given(table(), st.one_of(finite, st.just(math.nan)), st.data())
def test_interp_is_np_interp_bit_for_bit(tab, x, data):
    xs, ys = tab
    at = [x, *data.draw(st.lists(st.sampled_from(xs), max_size=2))]  # measured points and repeats too
    for v in at:
        want = float(np.interp(v, xs, ys))
        got = interp(v, xs, ys)
        assert (math.isnan(want) and math.isnan(got)) or got.hex() == want.hex(), (v, xs, ys)


def test_hand_worked():
    xs, ys = (0.0, 1.0, 3.0), (10.0, 20.0, 0.0)
    assert [interp(v, xs, ys) for v in (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 9.0)] == [10.0, 10.0, 15.0, 20.0, 10.0, 0.0,
                                                                                 0.0]
