"""Rail-optimised fabrics (topology: rail, simulator/network/topology.py RailTree): device k of every
node of a rail group sits on the group's rail leaf k, so traffic between nodes of one group crosses
one rail leaf and traffic between groups goes through the spine."""

from __future__ import annotations

import pytest

from simulator.errors import CapsimError
from simulator.network.fabric import Flow, TreeFabric
from simulator.network.maxmin import max_min_shares
from simulator.network.topology import FatTree, RailTree
from simulator.scenario import scenario_from_data
from tests.helpers import jobs, run_jobs


def rail(oversubscription: float, nodes_per_leaf: int, **keys) -> dict:
    return {"network": {"topology": "rail", "nodes_per_leaf": nodes_per_leaf, "oversubscription": oversubscription,
                        **keys}}


def test_two_jobs_across_rail_groups_sharing_a_two_to_one_spine_each_get_half():
    """H100 nodes (8 rails of 50 GB/s), rail groups of 2 nodes at 2:1: each rail leaf's uplink is
    2 x 50 / 2 = 50 GB/s. Job a (8 GPUs, no traffic) holds node 0; b (16 GPUs, comm 1) takes nodes 1-2
    (groups 0 and 1), c nodes 3-4 (groups 1 and 2). Two nodes all-to-all: each sends its whole 400 GB/s
    to the other, 50 on each rail. Group 1's rail uplinks carry b's node 2 and c's node 3: 100 GB/s per
    rail against 50, so each gets half and runs at 1/2: 100 s of work end at 200 s."""
    js = jobs(submit_time=[0, 0, 0], gpus=[8, 16, 16], duration=[1000, 100, 100], comm_fraction=[0.0, 1.0, 1.0])
    res = run_jobs(js, ((6, 8),), "fifo", pool_keys=rail(2.0, 2)).jobs.set_index("job_id")
    assert res.loc[["b", "c"], "end_time"].tolist() == pytest.approx([200.0, 200.0])
    assert res.loc[["b", "c"], "network_hops"].tolist() == [4, 4]
    # per rail by hand: 8 rail uplinks of 50 GB/s each are one link of 400 for the group
    tree = RailTree(6, 2, 400.0, oversubscription=2.0, rails=8)
    assert tree.capacities()[2] == 8 * 50.0


def test_a_job_within_one_rail_group_is_unaffected_by_spine_traffic():
    """Rail groups of 4 H100 nodes at 4:1 (a group's rails carry 4 x 400 / 4 = 400 GB/s up). A (32
    GPUs, comm 1) is nodes 0-3, all of group 0: one rail leaf per pair of devices, no spine, 2 hops,
    full speed. B (64 GPUs, comm 1) is nodes 4-11 over groups 1 and 2: each group sends 4 x 400 x 4/7
    = 914.3 GB/s up against 400, so B runs at 7/16 and its 100 s take 228.6 s."""
    js = jobs(submit_time=[0, 0], gpus=[32, 64], duration=[100, 100], comm_fraction=[1.0, 1.0])
    res = run_jobs(js, ((12, 8),), "fifo", pool_keys=rail(4.0, 4)).jobs.set_index("job_id")
    assert res.loc["a", "end_time"] == 100.0 and res.loc["a", "network_hops"] == 2
    assert res.loc["b", "end_time"] == pytest.approx(100 / (7 / 16))
    assert res.loc["b", "network_delay_s"] == pytest.approx(100 / (7 / 16) - 100)


def test_rail_links_are_named_by_group_and_rails():
    res = run_jobs(jobs(submit_time=[0], gpus=[64], duration=[100], comm_fraction=[1.0]), ((12, 8),), "fifo",
                   pool_keys=rail(4.0, 4))
    names = {link["link"] for link in res.summary["network_busiest_links"]}
    assert names == {"rail group 0 up (8 rails)", "rail group 0 down (8 rails)", "rail group 1 up (8 rails)",
                     "rail group 1 down (8 rails)"}


def test_spreading_over_rails_shares_as_the_rails_taken_together():
    """Why a group's rails are one link pair: with every node's traffic split evenly over r rails, max-min
    sharing over the r rail uplinks (each carrying 1/r of every flow) grants what one link of r times
    the capacity grants. Three flows, two groups of 2 nodes, 4 rails of 25 GB/s at 1:1."""
    rails = 4
    flows = {"a": ([0, 2], 100.0), "b": ([1, 3], 60.0), "c": ([0, 1, 2], 90.0)}
    tree = RailTree(4, 2, rails * 25.0, rails=rails)
    demand, together, per_rail = [], [], []
    for nodes, gbs in flows.values():
        loads = tree.job_loads(nodes, [gbs / len(nodes)] * len(nodes))
        demand.append(gbs)
        together.append(loads)
        per_rail.append({(link, k): load / rails for link, load in loads.items() for k in range(rails)})
    caps = tree.capacities()
    rail_caps = {(link, k): cap / rails for link, cap in caps.items() for k in range(rails)}
    assert max_min_shares(demand, together, caps) == pytest.approx(max_min_shares(demand, per_rail, rail_caps))


def test_a_rail_fabric_runs_as_the_fat_tree_of_its_groups():
    """Flow level, a rail group is a leaf: the same jobs on `rail` and on `fat-tree` with the group as the
    leaf end at the same times (only the link names differ)."""
    js = jobs(submit_time=[0, 5, 5, 20, 30], gpus=[24, 48, 16, 40, 64], duration=[300, 200, 400, 100, 150],
              comm_fraction=[0.8, 0.5, 1.0, 0.3, 0.6])
    by_rail = run_jobs(js, ((16, 8),), "fifo", pool_keys=rail(8.0, 3, leaves_per_pod=2)).jobs
    by_tree = run_jobs(js, ((16, 8),), "fifo", pool_keys={"network": {
        "topology": "fat-tree", "nodes_per_leaf": 3, "oversubscription": 8.0, "leaves_per_pod": 2}}).jobs
    assert by_rail.equals(by_tree)
    assert by_rail["network_delay_s"].gt(0).any()


def test_rail_fabric_and_domains_build_and_join_with_nvl72_racks():
    """GB200 trays of 4 in NVL72 racks (18 trays) on a rail fabric of 36-tray groups: a job inside a rack
    joins no flow; one over two racks of a group crosses only rail leaves (no shared link); one over two
    groups loads both groups' rails."""
    tree = RailTree(72, 36, 4 * 50.0, oversubscription=2.0, rails=4)
    fabric = TreeFabric(tree, 50.0, domain_nodes=18)
    assert not fabric.join("rack", Flow(100.0, 1.0, 0.0), [(n, 4) for n in range(18)])
    assert not fabric.join("group", Flow(100.0, 1.0, 0.0), [(n, 4) for n in range(10, 30)])  # no shared link
    assert fabric.hops["group"] == 2
    assert fabric.join("across", Flow(100.0, 1.0, 0.0), [(n, 4) for n in range(30, 42)])
    assert fabric.hops["across"] == 4 and set(fabric.links_of("across")) == {0, 1, 2, 3}


@pytest.mark.parametrize(("network", "message"), [
    ({"topology": "rail", "oversubscription": 2}, "a rail fabric needs nodes_per_leaf"),
    ({"topology": "rail", "oversubscription": 2, "nodes_per_leaf": 0}, "nodes_per_leaf"),
    ({"topology": "shared", "oversubscription": 2, "nodes_per_leaf": 4}, "add topology: fat-tree (or rail)"),
    ({"topology": "rails", "oversubscription": 2, "nodes_per_leaf": 4}, "'shared', 'fat-tree' or 'rail'"),
])
def test_bad_rail_networks_are_refused_on_one_line_with_the_key_path(network, message):
    pool = {"name": "p", "device": "h100-sxm", "nodes": 8, "devices_per_node": 8, "network": network}
    with pytest.raises(CapsimError) as info:
        scenario_from_data({"cluster": {"pools": [pool]}, "workload": []})
    text = str(info.value)
    assert "cluster.pools[0].network" in text and message in text and "\n" not in text


def test_a_rail_tree_is_a_fat_tree_with_group_leaves():
    rt, ft = RailTree(10, 4, 400.0, oversubscription=2.0, rails=8), FatTree(10, 4, 400.0, oversubscription=2.0)
    assert rt.capacities() == ft.capacities() and rt.leaves == 3
    assert rt.job_loads([0, 5, 9], [1.0, 2.0, 3.0]) == ft.job_loads([0, 5, 9], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="rail"):
        RailTree(10, 4, 400.0, rails=0)
