"""Slice shapes a job names (`slice_shape`: a trace column, or `classes[].slice_shape` of a generator): on a
torus pool the job takes that block (in some orientation), not the standard shape of its size."""

from __future__ import annotations

import pandas as pd
import pytest

import simulator
from simulator.cluster.torus import NamedShapes, TorusPool
from simulator.errors import CapsimError
from simulator.policies.base import Policy
from simulator.policies.shaped import ShapedClusterView

CUBE = {"name": "cube", "cluster": {"pools": [
    {"name": "pod", "device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus"}]},
    "scheduler": {"policy": "fifo"}}


def _jobs(rows):
    ids, submit, gpus, duration, shape = zip(*rows, strict=True)
    return pd.DataFrame({"job_id": list(ids), "submit_time": [float(s) for s in submit], "gpus": list(gpus),
                         "duration": [float(d) for d in duration], "slice_shape": list(shape)})


# A 4x4x4 v4 cube; 16 chips is 2x2x4 by default. A 4x4x1 slice in any orientation is a whole plane of
# the cube (z = k: 4x4x1; y = k: 4x1x4; x = k: 1x4x4).
# t=0: A, B, C, D (16 chips, no shape named: 2x2x4) fill the cube first fit: A x0-1 y0-1, B x0-1 y2-3,
#      C x2-3 y0-1, D x2-3 y2-3, each all z. E (16, named 4x4x1) and F (16, named 2x2x4) wait.
# t=30: A and D end: 32 chips free as two diagonal 2x2x4 columns. B cuts every z-plane and the planes
#      x = 0, 1 and y = 2, 3; C every z-plane and x = 2, 3, y = 0, 1: no plane is free, so E still waits,
#      while F (not blocked behind E: a greedy policy) takes A's column at the origin (ends 230). The
#      head of the queue is E: all 16 free chips (D's column) are fragmented for a plane.
# t=100: B and C end. F holds x0-1 y0-1: every z-plane and the planes x = 0, 1, y = 0, 1 are cut; the
#      first free orientation in order (4x4x1, 4x1x4, 1x4x4) is 4x1x4, first free at y = 2: E takes
#      (0, 2, 0) + 4x1x4 and runs to 140. Nothing waits: 0 fragmented.
WORKED = [("A", 0, 16, 30, None), ("B", 0, 16, 100, None), ("C", 0, 16, 100, None), ("D", 0, 16, 30, None),
          ("E", 0, 16, 40, "4x4x1"), ("F", 0, 16, 200, "2x2x4")]


def test_a_named_plane_waits_where_a_named_column_fits_the_same_16_chips():
    res = simulator.run(CUBE, jobs=_jobs(WORKED), policy=Policy, progress=False)
    jobs = res.jobs.set_index("job_id")
    assert jobs["start_time"].to_dict() == {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 100.0, "F": 30.0}
    assert jobs["end_time"].to_dict() == {"A": 30.0, "B": 100.0, "C": 100.0, "D": 30.0, "E": 140.0, "F": 230.0}
    tl = res.timeline
    assert tl["time_s"].tolist() == [0.0, 30.0, 100.0, 140.0, 230.0]
    assert tl["fragmented_chips"].tolist() == [0, 16, 0, 0, 0]
    assert res.summary["fragmented_chip_hours"] == pytest.approx(16 * 70 / 3600)


def test_the_worked_placements_half_way_and_the_pool_answers_per_job():
    sim = simulator.build(CUBE, jobs=_jobs(WORKED), policy=Policy, progress=False)
    assert isinstance(sim.view, ShapedClusterView)
    sim.run(until=50)
    pool = sim.cluster.pools[0]
    assert isinstance(pool, TorusPool)
    assert sorted(pool.torus.slices.values()) == [((0, 0, 0), (2, 2, 4)), ((0, 2, 0), (2, 2, 4)),
                                                  ((2, 0, 0), (2, 2, 4))]  # F, B, C
    (e,) = sim.policy.queue.values()
    assert e.id == "E" and pool.job_shape(e) == (4, 4, 1)
    assert not sim.view.fits(e) and pool.fits(16)  # the size alone (2x2x4) would fit D's column
    assert sim.view.allocate(e) is None and pool.free == 16
    assert pool.torus.fragmentation((4, 4, 1)) == 16 and pool.torus.fragmentation((2, 2, 4)) == 0
    sim.run(until=120)
    assert pool.torus.slices[id(e.alloc)] == ((0, 2, 0), (4, 1, 4))


def test_the_named_shape_applies_only_to_the_job_being_placed():
    pool = TorusPool("pod", "tpu-v4", 16, 4, (4, 4, 4), {16: (2, 2, 4), 64: (4, 4, 4)})

    class J:
        def __init__(self, index, gpus):
            self.index, self.gpus = index, gpus

    named = NamedShapes({0: (1, 1, 16)})  # cannot fit a 4x4x4 torus
    pool.named = named
    plane, plain = J(0, 16), J(1, 16)
    assert pool.job_shape(plane) is None and pool.job_shape(plain) == (2, 2, 4)
    named.job = plane
    assert not pool.fits(16) and pool.allocate(16) is None
    assert pool.fits(64)  # another size: the standard shape
    named.job = plain
    assert pool.fits(16) and pool.allocate(16) is not None


def test_without_named_shapes_the_plain_view_is_used_and_results_are_unchanged():
    rows = [r[:4] + (None,) for r in WORKED]
    plain = _jobs(rows).drop(columns="slice_shape")
    sim = simulator.build(CUBE, jobs=plain, progress=False)
    assert type(sim.view).__name__ == "ClusterView" and sim.cluster.pools[0].named is None
    a = simulator.run(CUBE, jobs=plain, progress=False)
    b = simulator.run(CUBE, jobs=_jobs(rows), progress=False)  # an empty column is no shape
    assert a.jobs.equals(b.jobs) and a.timeline.equals(b.timeline)


def test_a_named_shape_not_standard_for_its_size_is_placed():
    # Two 16-chip jobs named 1x4x4 (x-planes) run side by side; 12 chips have no standard shape, so the
    # size is refused at load without a name, and named 3x4x1 the job runs.
    res = simulator.run(CUBE, jobs=_jobs([("P", 0, 16, 10, "1x4x4"), ("Q", 0, 16, 10, "1x4x4")]),
                        progress=False)
    assert res.jobs["end_time"].tolist() == [10.0, 10.0]
    torus = {**CUBE, "cluster": {"pools": [{**CUBE["cluster"]["pools"][0], "torus": [4, 4, 4]}]}}
    with pytest.raises(CapsimError, match="ask for 12 chips"):
        simulator.build(torus, jobs=_jobs([("R", 0, 12, 10, None)]), progress=False)
    res = simulator.run(torus, jobs=_jobs([("R", 0, 12, 10, "3x4x1")]), progress=False)
    assert res.jobs["end_time"].tolist() == [10.0]


@pytest.mark.parametrize(("shape", "gpus", "message"), [
    ("8x2x1", 16, "jobs: job 'X' (row 1), column 'slice_shape': slice_shape 8x2x1 fits no torus pool the job "
                  "may use in any orientation (torus pools: pod: 4x4x4); 1 job(s) name it"),
    ("4x4x2", 16, "jobs: job 'X' (row 1): column 'slice_shape' must be empty or a shape of as many chips as the "
                  "job's gpus (A x B x C = gpus), got '4x4x2' (gpus 16)"),
    ("4 by 4", 16, "column 'slice_shape' must be empty or AxBxC (or AxB) of positive whole numbers, got '4 by 4'"),
])
def test_a_shape_that_cannot_fit_is_refused_before_the_run(shape, gpus, message):
    with pytest.raises(CapsimError) as info:
        simulator.build(CUBE, jobs=_jobs([("X", 0, gpus, 10, shape)]), progress=False)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_trace_column_is_read_and_refused_with_its_file_and_line(tmp_path):
    (tmp_path / "ok.csv").write_text("job_id,submit_time,gpus,duration,slice_shape\n"
                                     "a,0,16,10,4x4x1\nb,0,16,10,\nc,0,8,10,2x4\n")
    scenario = {**CUBE, "workload": [{"kind": "trace", "format": "csv", "path": "ok.csv"}]}
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(scenario))
    sim = simulator.build(str(path), progress=False)
    assert sim.cluster.pools[0].named.table == {0: (4, 4, 1), 2: (2, 4, 1)}
    sim.run()
    (tmp_path / "bad.csv").write_text("job_id,submit_time,gpus,duration,slice_shape\na,0,16,10,4x4x1\n"
                                      "b,0,16,10,4x2x1\n")
    path.write_text(yaml.safe_dump({**scenario, "workload": [{"kind": "trace", "format": "csv", "path": "bad.csv"}]}))
    with pytest.raises(CapsimError, match=r"bad\.csv.*line 3.*'slice_shape'.*as many chips as the row's gpus"):
        simulator.build(str(path), progress=False)
    (tmp_path / "far.csv").write_text("job_id,submit_time,gpus,duration,slice_shape\na,0,16,10,16x1x1\n")
    path.write_text(yaml.safe_dump({**scenario, "workload": [{"kind": "trace", "format": "csv", "path": "far.csv"}]}))
    with pytest.raises(CapsimError) as info:
        simulator.build(str(path), progress=False)
    assert str(info.value).startswith(f"{tmp_path / 'far.csv'}: column 'slice_shape', job 'a': slice_shape "
                                      "16x1x1 fits no torus pool")


def _synthetic(classes):
    return {**CUBE, "workload": [{"kind": "synthetic", "jobs": 40, "arrival": {"process": "poisson",
                                                                             "rate_per_hour": 60},
                                  "classes": classes}]}


def test_a_generator_class_names_a_shape():
    classes = [{"weight": 1, "gpus": 16, "duration": {"dist": "exponential", "mean": "20m"}, "slice_shape": "4x4x1"},
               {"weight": 1, "gpus": 16, "duration": {"dist": "exponential", "mean": "20m"}}]
    sim = simulator.build(_synthetic(classes), progress=False)
    shapes = sim.context.jobs["slice_shape"]
    assert set(shapes.dropna()) == {"4x4x1"} and 0 < shapes.notna().sum() < 40
    unnamed = [{k: v for k, v in c.items() if k != "slice_shape"} for c in classes]
    plain = simulator.build(_synthetic(unnamed), progress=False).context.jobs
    # naming a shape draws nothing: the same jobs, with the column added
    assert plain.equals(sim.context.jobs.drop(columns="slice_shape"))
    sim.run()


@pytest.mark.parametrize(("shape", "gpus", "where", "message"), [
    ("8x8x1", 64, "workload[0].classes[0].slice_shape", "slice_shape 8x8x1 fits no torus pool"),
    ("4x4x2", 16, "workload[0].classes[0]", "slice_shape 4x4x2 has 32 chips: give gpus: 32"),
])
def test_a_generator_shape_is_refused_with_its_key_path(shape, gpus, where, message):
    classes = [{"weight": 1, "gpus": gpus, "duration": {"dist": "exponential", "mean": "20m"}, "slice_shape": shape}]
    with pytest.raises(CapsimError) as info:
        simulator.build(_synthetic(classes), progress=False)
    assert where in str(info.value) and message in str(info.value) and "\n" not in str(info.value)


def test_a_named_shape_needs_a_torus_pool():
    gpus = {"name": "g", "cluster": {"pools": [{"name": "h", "device": "h100-sxm", "nodes": 4,
                                                 "devices_per_node": 8}]}}
    with pytest.raises(CapsimError, match=r"slice_shape 2x2x1 fits no torus pool .*\(torus pools: none\)"):
        simulator.build(gpus, jobs=_jobs([("X", 0, 4, 10, "2x2")]), progress=False)
