"""Torus pools (`topology: torus`): jobs take contiguous TPU slices, first fit (cluster/torus.py), and the
free chips the waiting head cannot use are reported over time (features/slices.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.cluster.torus import Torus, TorusPool
from simulator.errors import CapsimError
from simulator.scenario import scenario_from_data

CUBE = {"name": "cube", "cluster": {"pools": [
    {"name": "pod", "device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus"}]},
    "scheduler": {"policy": "fifo"}}


def _jobs(rows):
    ids, submit, gpus, duration = zip(*rows, strict=True)
    return pd.DataFrame({"job_id": list(ids), "submit_time": [float(s) for s in submit], "gpus": list(gpus),
                         "duration": [float(d) for d in duration]})


# A 4x4x4 v4 cube (64 chips; 16 = 2x2x4, 32 = 2x4x4, 8 = 2x2x2, the standard shapes).
# t=0: A, B, C, D (16 each) fill it first fit: A at x0-1 y0-1, B at x0-1 y2-3, C at x2-3 y0-1, D at x2-3
#      y2-3 (each all z). E (32) waits: nothing is free.
# t=30: A and D end. 32 chips are free, as two diagonal 2x2x4 columns: no 2x4x4, 4x2x4 or 4x4x2 block is
#      free (B and C each cut every one), so E, 32 chips, still waits: 32 chips fragmented.
# t=40: F (8) arrives behind E: FIFO holds it (head of line). Still 32 fragmented.
# t=100: B and C end, the cube is empty: E takes 2x4x4 at the origin (ends 150), F 2x2x2 at x2 (ends 120).
#      Nothing waits: 0 fragmented. fragmented_chip_hours = 32 x 70 s / 3600; mean over 0..150 s.
WORKED = [("A", 0, 16, 30), ("B", 0, 16, 100), ("C", 0, 16, 100), ("D", 0, 16, 30), ("E", 0, 32, 50),
          ("F", 40, 8, 20)]


def test_a_hand_worked_sequence_on_a_4x4x4_cube_through_a_full_run():
    res = simulator.run(CUBE, jobs=_jobs(WORKED), progress=False)
    jobs = res.jobs.set_index("job_id")
    assert jobs["start_time"].to_dict() == {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 100.0, "F": 100.0}
    assert jobs["end_time"].to_dict() == {"A": 30.0, "B": 100.0, "C": 100.0, "D": 30.0, "E": 150.0, "F": 120.0}
    tl = res.timeline
    assert tl["time_s"].tolist() == [0.0, 30.0, 40.0, 100.0, 120.0, 150.0]
    assert tl["fragmented_chips"].tolist() == [0, 32, 32, 0, 0, 0]
    assert tl["busy_gpus"].tolist() == [64, 32, 32, 40, 32, 0]
    assert res.summary["fragmented_chip_hours"] == pytest.approx(32 * 70 / 3600)
    assert res.summary["fragmented_chips_mean"] == pytest.approx(32 * 70 / 150)


def test_the_worked_placements_and_refusal_half_way():
    sim = simulator.build(CUBE, jobs=_jobs(WORKED), progress=False)
    sim.run(until=35)
    pool = sim.cluster.pools[0]
    assert isinstance(pool, TorusPool)
    boxes = sorted(pool.torus.slices.values())
    assert boxes == [((0, 2, 0), (2, 2, 4)), ((2, 0, 0), (2, 2, 4))]  # B and C; A and D have ended
    assert pool.free == 32 and not pool.fits(32) and pool.fits(16) and pool.fits(8)
    assert pool.fragmented_chips(32) == 32 and pool.fragmented_chips(16) == 0
    # v4 hosts are 2x2x1 blocks: B's nodes are the four hosts at x0-1, y2-3 (host index (bx*2+by)*4+bz)
    (b,) = [j for j in sim.running.values() if j.id == "B"]
    assert b.alloc.nodes == [(4, 4), (5, 4), (6, 4), (7, 4)]
    assert [j.id for j in sim.policy.queue.values()] == ["E"]


def test_a_down_node_blocks_its_chips_and_a_repair_frees_them():
    pool = TorusPool("pod", "tpu-v4", 16, 4, (4, 4, 4), {64: (4, 4, 4), 4: (2, 2, 1)})
    pool.take_down(0)
    assert pool.free == 60 and pool.torus.used[0:2, 0:2, 0].all() and pool.torus.free_chips == 60
    assert not pool.fits(64) and pool.allocate(64) is None
    assert pool.allocate(4).nodes == [(1, 4)]  # the next host
    pool.bring_up(0)
    assert pool.fits(4) and pool.allocate(4).nodes == [(0, 4)]


def test_an_uninstalled_pool_has_no_free_chips_until_installed():
    pool = TorusPool("pod", "tpu-v4", 16, 4, (4, 4, 4), {64: (4, 4, 4)}, installed=False)
    assert pool.torus.free_chips == 0 and not pool.fits(64)
    pool.install()
    alloc = pool.allocate(64)
    assert alloc is not None and pool.free == 0
    pool.release(alloc)
    pool.retire()
    assert pool.torus.free_chips == 0


def test_defaults_come_from_the_standard_shapes():
    def pool(**kw):
        scenario = scenario_from_data({"cluster": {"pools": [{"name": "p", "topology": "torus", **kw}]},
                                       "workload": []})
        return scenario.cluster.pools[0]

    v5e = pool(device="tpu-v5e", nodes=32, devices_per_node=8)
    assert v5e.torus_dims == (16, 16, 1) and v5e.slice_shape_map[32] == (4, 8, 1)
    v5p = pool(device="tpu-v5p", nodes=32, devices_per_node=4)
    assert v5p.torus_dims == (4, 4, 8) and v5p.slice_shape_map[128] == (4, 4, 8) and 256 not in v5p.slice_shape_map
    mine = pool(device="tpu-v4", nodes=16, devices_per_node=4, torus=[4, 4, 4], slice_shapes={16: "4x4x1"})
    assert mine.slice_shape_map[16] == (4, 4, 1) and mine.slice_shape_map[32] == (2, 4, 4)


@pytest.mark.parametrize(("pool", "message"), [
    ({"device": "h100-sxm", "nodes": 8, "devices_per_node": 8, "topology": "torus"}, "needs a TPU device"),
    ({"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus", "torus": [4, 4, 8]},
     "torus 4x4x8 has 128 chips; the pool has 64"),
    ({"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus", "torus": [-4, -4, 4]},
     "must be positive"),
    ({"device": "tpu-v5e", "nodes": 32, "devices_per_node": 8, "topology": "torus", "torus": [4, 8, 8]},
     "tpu-v5e is a 2-D torus"),
    ({"device": "tpu-v4", "nodes": 12, "devices_per_node": 4, "topology": "torus"},
     "48 chips is no standard tpu-v4 slice shape: give torus"),
    ({"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus", "slice_shapes": {16: "4x4x2"}},
     "slice_shapes.16: 4x4x2 has 32 chips, not 16"),
    ({"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus", "slice_shapes": {16: "1x1x16"}},
     "does not fit in the 4x4x4 torus"),
    ({"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "torus": [4, 4, 4]}, "add topology: torus"),
    ({"device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus",
      "network": {"oversubscription": 2, "topology": "fat-tree", "nodes_per_leaf": 4, "placement": "rack"}},
     "a torus pool places slices"),
])
def test_bad_torus_pools_are_refused_with_the_key_path(pool, message):
    with pytest.raises(CapsimError) as info:
        scenario_from_data({"cluster": {"pools": [{"name": "p", **pool}]}, "workload": []})
    text = str(info.value)
    assert "cluster.pools[0]" in text and message in text and "\n" not in text


def test_a_size_with_no_slice_shape_is_refused_at_load():
    with pytest.raises(CapsimError, match=r"2 job\(s\) ask for 12 chips.*pod: 4, 8, 16, 32, 64.*x, y") as info:
        simulator.build(CUBE, jobs=_jobs([("w", 0, 16, 10), ("x", 0, 12, 10), ("y", 5, 12, 10)]), progress=False)
    assert info.value.where == "workload"


def test_a_node_pool_is_unchanged_by_the_torus_keys():
    base = {"name": "n", "cluster": {"pools": [{"name": "m", "device": "tpu-v4", "nodes": 4, "devices_per_node": 4}]},
            "workload": [{"kind": "synthetic", "jobs": 300, "arrival": {"process": "poisson", "rate_per_hour": 40},
                          "gpus": {"choice": [1, 2, 4, 8], "weights": [0.4, 0.2, 0.2, 0.2]},
                          "duration": {"dist": "exponential", "mean": "20m"}}]}
    explicit = {**base, "cluster": {"pools": [{**base["cluster"]["pools"][0], "topology": "nodes"}]}}
    a, b = simulator.run(base, progress=False), simulator.run(explicit, progress=False)
    assert a.jobs.equals(b.jobs) and a.timeline.equals(b.timeline)
    assert "fragmented_chips" not in a.timeline and "fragmented_chip_hours" not in a.summary


def _brute_fragmentation(torus: Torus, shape) -> int:
    coverable = np.zeros(torus.dims, dtype=bool)
    X, Y, Z = torus.dims
    for a, b, c in torus.orientations(shape):
        for x in range(X - a + 1):
            for y in range(Y - b + 1):
                for z in range(Z - c + 1):
                    if not torus.used[x:x + a, y:y + b, z:z + c].any():
                        coverable[x:x + a, y:y + b, z:z + c] = True
    return int((~torus.used & ~coverable).sum())


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from([(1, 1, 1), (2, 2, 1), (2, 1, 2), (2, 2, 2), (1, 4, 2)]), max_size=12),
       st.sampled_from([(2, 2, 2), (4, 1, 1), (2, 2, 1), (3, 1, 2)]))
def test_the_box_sum_fragmentation_matches_brute_force(placed, probe):
    torus = Torus((4, 4, 2))
    for k, shape in enumerate(placed):
        torus.allocate(k, shape)
    assert torus.fragmentation(probe) == _brute_fragmentation(torus, probe)


def test_a_preemption_frees_a_block_the_slice_fits_not_just_enough_chips():
    # J1..J4 (16 chips each) arrive at 0..3 and fill the cube first fit: J1 x0-1 y0-1, J2 x0-1 y2-3,
    # J3 x2-3 y0-1, J4 x2-3 y2-3. At 10, E (32 chips, 50 s) outranks them all under srtf; the victims
    # go longest remaining first: J1 (990 s), then J4 (893 s), whose 32 chips are diagonal and hold no
    # 2x4x4; then J2 (791 s): J1 + J2 free x0-1, and J4 is not needed, so J1 and J2 are suspended and
    # E starts at 10. (Counting free chips per node, J1 + J4 would do, E would not fit, and srtf would
    # suspend and restart them for ever.) J2 then outranks J4 and takes its place at 10 (restore 60 s:
    # ends 10 + 60 + 791 = 861). At 60 E ends: J4 and J1 restart (60 + 60 + 893 = 1013, 60 + 60 + 990).
    scenario = {**CUBE, "scheduler": {"policy": "srtf"}}
    res = simulator.run(scenario, jobs=_jobs([("J1", 0, 16, 1000), ("J2", 1, 16, 800), ("J3", 2, 16, 700),
                                              ("J4", 3, 16, 900), ("E", 10, 32, 50)]), progress=False)
    jobs = res.jobs.set_index("job_id")
    assert jobs["end_time"].to_dict() == {"J1": 1110.0, "J2": 861.0, "J3": 702.0, "J4": 1013.0, "E": 60.0}
    assert jobs.loc["E", "start_time"] == 10.0
    assert jobs["preemptions"].to_dict() == {"J1": 1, "J2": 1, "J3": 0, "J4": 1, "E": 0}
