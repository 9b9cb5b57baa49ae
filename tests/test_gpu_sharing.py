"""GPU sharing: placing fractional-GPU tasks (cluster/sharing.py) and replaying the Alibaba GPU 2023
trace on its node list (experiment/gpu_sharing.py, `capsim gpu-sharing`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.cluster.sharing import FULL, POLICIES, SharedCluster, TaskClass, inflate, target_workload

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "alibaba-gpu-2023"


def share(milli, cpu=1000, mem=1024):
    return TaskClass(cpu, mem, 0, milli)


def whole(n, cpu=1000, mem=1024):
    return TaskClass(cpu, mem, n, 0)


def test_fragmentation_is_the_free_gpu_each_task_class_cannot_use_weighted_by_popularity():
    """GPUs free [1000, 300]: a half-GPU task cannot use the 300 (fragmented 300); a whole-GPU task
    cannot use a partly taken GPU (300); a CPU-only task uses no GPU (all 1300 idle to it)."""
    c = SharedCluster([8000], [65536], [2])
    c.gpu_free[0] = [1000, 300]
    assert c.fragmentation([(share(500), 1.0)])[0] == 300
    assert c.fragmentation([(whole(1), 1.0)])[0] == 300
    assert c.fragmentation([(whole(2), 1.0)])[0] == 1300  # cannot run at all: everything is fragmented
    assert c.fragmentation([(TaskClass(1000, 1024, 0, 0), 1.0)])[0] == 1300
    mixed = [(share(500), 0.25), (whole(1), 0.25), (whole(2), 0.5)]
    assert c.fragmentation(mixed)[0] == pytest.approx(0.25 * 300 + 0.25 * 300 + 0.5 * 1300)
    c.cpu[0] = 500  # a node without the CPU a task needs: all its free GPU is fragmented to it
    assert c.fragmentation([(share(500), 1.0)])[0] == 1300


def test_each_policy_places_a_hand_worked_sequence():
    """Two nodes of two GPUs. After a 0.6 share lands on node 0 GPU 0 (every policy, lowest index):
    a 0.3 share goes to the same GPU under best-fit and pack (the fullest that fits), to node 1 under
    spread (most free left); a whole GPU under pack goes to node 0 (a node in use) and under spread to
    node 1."""
    placed = {}
    for policy in ("best-fit", "spread", "pack"):
        c = SharedCluster([8000, 8000], [65536, 65536], [2, 2])
        first = c.place(share(600), policy)
        second = c.place(share(300), policy)
        placed[policy] = (first, second, c.gpu_free.tolist())
    assert placed["best-fit"] == (0, 0, [[100, 1000], [1000, 1000]])
    assert placed["pack"] == (0, 0, [[100, 1000], [1000, 1000]])
    assert placed["spread"] == (0, 1, [[400, 1000], [700, 1000]])
    c = SharedCluster([8000, 8000], [65536, 65536], [2, 2])
    c.place(share(600), "pack")
    assert c.place(whole(1), "pack") == 0 and c.gpu_free.tolist() == [[400, 0], [1000, 1000]]


def test_fgd_places_where_fragmentation_grows_least():
    """Node 0 has GPUs free [1000, 500], node 1 [1000, 1000]; the workload is all half-GPU tasks. A
    0.5 share on node 0's half-free GPU leaves nothing fragmented (fragmentation +0), where on a whole
    GPU it would leave a 500 that half tasks can still use (+0 too) — ties go to the lowest node and
    the fullest GPU. With a workload of 0.7 tasks instead, the 500 left on node 0 is already
    fragmented: filling it costs -500, the least increase."""
    for m in (500, 700):
        c = SharedCluster([8000, 8000], [65536, 65536], [2, 2])
        c.gpu_free[0] = [1000, 500]
        before = c.fragmentation([(share(m), 1.0)]).sum()
        assert c.place(share(500), "fgd", [(share(m), 1.0)]) == 0
        assert c.gpu_free[0].tolist() == [1000, 0]
        assert c.fragmentation([(share(m), 1.0)]).sum() == before - (500 if m == 700 else 0)


@st.composite
def _clusters_and_tasks(draw):
    nodes = draw(st.integers(1, 6))
    gpus = draw(st.lists(st.sampled_from([0, 1, 2, 4, 8]), min_size=nodes, max_size=nodes))
    cpu = draw(st.lists(st.integers(1000, 64000), min_size=nodes, max_size=nodes))
    tasks = draw(st.lists(st.one_of(
        st.builds(share, st.integers(1, 999), st.integers(0, 8000), st.integers(0, 8192)),
        st.builds(whole, st.integers(0, 8), st.integers(0, 8000), st.integers(0, 8192))), min_size=1, max_size=40))
    return gpus, cpu, tasks


@settings(max_examples=150, deadline=None)
@given(_clusters_and_tasks(), st.sampled_from(POLICIES))
def test_placements_never_exceed_a_node_and_account_for_every_placed_task(setup, policy):
    gpus, cpu, tasks = setup
    c = SharedCluster(cpu, [65536] * len(gpus), gpus)
    workload = target_workload(tasks)
    placed_milli, placed_cpu = 0, 0
    for t in tasks:
        node = c.place(t, policy, workload)
        if node is not None:
            placed_milli += t.gpu_milli or t.num_gpu * FULL
            placed_cpu += t.cpu_milli
        assert (c.cpu >= 0).all() and (c.mem >= 0).all()
        assert ((c.gpu_free >= 0) | (c.gpu_free == -1)).all() and (c.gpu_free <= FULL).all()
    assert c.gpu_allocated_milli == placed_milli
    assert int((c.cpu_cap - c.cpu).sum()) == placed_cpu


def test_inflation_stops_at_the_asked_multiple_and_reports_the_capacity_point():
    c = SharedCluster([64000] * 4, [262144] * 4, [2] * 4)
    tasks = [share(500), share(250), whole(1)]
    out = inflate(c, tasks, "best-fit", np.random.default_rng(1), until=1.3, workload=target_workload(tasks))
    assert out["arrived"][-1] >= 1.3 and out["arrived"][-2] < 1.3
    assert (np.diff(out["arrived"]) > 0).all() and (np.diff(out["allocated"]) >= 0).all()
    full = out["at_full"]
    assert full["unallocated_gpus"] == pytest.approx(8 * (1 - full["allocation_rate"]))


def test_the_command_refuses_a_node_list_without_its_columns(tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib\nn0,64000,262144\n")
    pods = tmp_path / "pods.csv"
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,1,500\n")
    result = CliRunner().invoke(main, ["gpu-sharing", str(nodes), str(pods)])
    assert result.exit_code != 0 and "gpu" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(not TRACE.is_dir(), reason="../shared/data/traces/alibaba-gpu-2023 is absent")
def test_the_alibaba_2023_trace_on_its_own_node_list(tmp_path):
    """The whole default pod list inflated on the 1,213 GPU nodes (6,212 GPUs): spreading leaves the
    most GPUs unallocated and packing the fewest (the ordering the trace's paper reports between
    spreading and packing schedulers), and what is unallocated when the demand reaches the capacity
    is almost all fragmented."""
    curves = tmp_path / "curves.csv"
    result = CliRunner().invoke(main, ["gpu-sharing", str(TRACE / "openb_node_list_gpu_node.csv"),
                                       str(TRACE / "openb_pod_list_default.csv"), "--curves", str(curves)])
    assert result.exit_code == 0, result.output
    from simulator.experiment.gpu_sharing import replay

    table, _ = replay(TRACE / "openb_node_list_gpu_node.csv", TRACE / "openb_pod_list_default.csv")
    by = table.set_index("policy")
    assert (by["gpus"] == 6212).all()
    assert by.loc["spread", "unallocated_gpus_at_100pct"] > by.loc["best-fit", "unallocated_gpus_at_100pct"] \
        > by.loc["pack", "unallocated_gpus_at_100pct"]
    assert (by["fragmented_gpus_at_100pct"] >= 0.99 * by["unallocated_gpus_at_100pct"] - 1).all()
    assert curves.is_file()


def test_a_node_list_without_gpus_is_one_clear_error(tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,0,\n")
    pods = tmp_path / "pods.csv"
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,1,500\n")
    result = CliRunner().invoke(main, ["gpu-sharing", str(nodes), str(pods)])
    assert result.exit_code != 0 and "no GPU" in result.output and "Traceback" not in result.output
