"""Fat-tree fabrics and max-min sharing over their links (simulator/network/topology.py, maxmin.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.network.fabric import Fabric, Flow
from simulator.network.maxmin import EPS, max_min_shares
from simulator.network.topology import FatTree


def test_two_jobs_sharing_one_two_to_one_uplink_each_get_half_of_it():
    """Two leaves of 4 nodes at 100 GB/s, 2:1: each uplink carries 200 GB/s. Two jobs each with two
    nodes in leaf 0 and two in leaf 1, injecting 100 GB/s per node all-to-all: each sends 2 x 100 x
    2/3 = 133 GB/s up from leaf 0, 267 in all, against 200: each gets 100 of its 133, 3/4."""
    tree = FatTree(nodes=8, nodes_per_leaf=4, node_gbs=100.0, oversubscription=2.0)
    caps = tree.capacities()
    assert caps == {0: 200.0, 1: 200.0, 2: 200.0, 3: 200.0}
    a = tree.job_loads([0, 1, 4, 5], [100.0] * 4)
    b = tree.job_loads([2, 3, 6, 7], [100.0] * 4)
    assert a == pytest.approx({0: 400 / 3, 1: 400 / 3, 2: 400 / 3, 3: 400 / 3})
    shares = max_min_shares([400.0, 400.0], [a, b], caps)
    assert shares == pytest.approx([0.75, 0.75])
    # granted 300 of 400 GB/s each: each has half of every uplink and downlink (100 of 200)
    assert [s * a[0] for s in shares] == pytest.approx([100.0, 100.0])


def test_a_job_inside_one_rack_is_unaffected_by_another_racks_traffic():
    tree = FatTree(nodes=8, nodes_per_leaf=4, node_gbs=100.0, oversubscription=8.0)
    inside = tree.job_loads([0, 1, 2, 3], [100.0] * 4)
    across = tree.job_loads([4, 5, 6, 7], [100.0] * 4)
    assert inside == {} and across == {}
    spanning = tree.job_loads([0, 4], [100.0, 100.0])
    shares = max_min_shares([400.0, 200.0], [inside, spanning], tree.capacities())
    # the spanning job sends 100 GB/s up from leaf 0 against a 50 GB/s uplink; the rack-local job is untouched
    assert shares[0] == 1.0 and shares[1] == pytest.approx(0.5)


def test_ring_traffic_leaves_a_leaf_only_on_the_rings_edges_between_racks():
    """Ring over nodes 0, 1 (leaf 0) and 4, 5 (leaf 1): edges 1->4 and 5->0 cross, one each way."""
    tree = FatTree(nodes=8, nodes_per_leaf=4, node_gbs=100.0)
    loads = tree.job_loads([5, 0, 4, 1], [10.0, 20.0, 30.0, 40.0], pattern="ring")
    # node 1 (40 GB/s) sends to node 4 over up(leaf 0) and down(leaf 1); node 5 (10) to node 0 back
    assert loads == {0: 40.0, 3: 40.0, 2: 10.0, 1: 10.0}


def test_three_tiers_add_pod_links_and_hops():
    tree = FatTree(nodes=32, nodes_per_leaf=4, node_gbs=100.0, oversubscription=2.0, leaves_per_pod=2,
                   pod_oversubscription=4.0)
    caps = tree.capacities()
    assert tree.leaves == 8 and tree.pods == 4
    assert caps[2 * 8] == pytest.approx(2 * 200.0 / 4.0)  # a pod's uplink: its two leaves' uplinks / 4
    assert tree.path(0, 4) == [0, 3]  # leaf 0 to leaf 1, same pod
    assert tree.path(0, 8) == [0, 5, 16, 19]  # leaf 0 to leaf 2: pod 0 up, pod 1 down
    assert [tree.hops(n) for n in ([3], [0, 3], [0, 4], [0, 8])] == [0, 2, 4, 6]


def _pairwise_loads(tree: FatTree, nodes, injection):
    """The plain reference: every ordered pair of distinct nodes, injection / (n - 1) along its path."""
    loads = {}
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if i != j:
                for link in tree.path(a, b):
                    loads[link] = loads.get(link, 0.0) + injection[i] / (len(nodes) - 1)
    return loads


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.one_of(st.none(), st.integers(1, 3)),
       st.lists(st.tuples(st.integers(0, 47), st.floats(0.5, 100.0)), min_size=2, max_size=12,
                unique_by=lambda t: t[0]))
def test_all_to_all_loads_summed_per_group_equal_the_pairwise_sum(per_leaf, per_pod, placed):
    tree = FatTree(nodes=48, nodes_per_leaf=per_leaf, node_gbs=100.0, leaves_per_pod=per_pod)
    nodes = [n for n, _ in placed]
    injection = [g for _, g in placed]
    got = tree.job_loads(nodes, injection)
    want = _pairwise_loads(tree, nodes, injection)
    assert set(got) == set(want)
    assert all(got[k] == pytest.approx(want[k]) for k in want)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.1, 100.0), min_size=1, max_size=8), st.floats(1.0, 300.0))
def test_on_one_link_carrying_all_traffic_it_is_the_fabrics_water_filling(demands, capacity):
    fabric = Fabric(capacity, 1.0)
    for k, d in enumerate(demands):
        fabric.flows[k] = Flow(d, 1.0, 0.0)
    expected = [rate for _, _, rate in fabric.fair_rates()]
    got = max_min_shares(demands, [{0: d} for d in demands], {0: capacity})
    assert got == pytest.approx(expected, rel=1e-9)


@st.composite
def _graphs(draw, max_flows=7):
    links = draw(st.integers(1, 5))
    capacity = {link: draw(st.floats(1.0, 100.0)) for link in range(links)}
    flows = draw(st.integers(1, max_flows))
    demand, loads = [], []
    for _ in range(flows):
        d = draw(st.floats(0.5, 80.0))
        used = draw(st.lists(st.integers(0, links - 1), min_size=0, max_size=links, unique=True))
        loads.append({link: d * draw(st.floats(0.05, 1.0)) for link in used})
        demand.append(d)
    return demand, loads, capacity


@settings(max_examples=300, deadline=None)
@given(_graphs())
def test_max_min_shares_are_feasible_and_every_limited_flow_has_a_full_bottleneck(graph):
    """Feasible: no link over capacity, no flow over its demand. Max-min: a flow short of its demand
    crosses a full link on which no other flow was granted more than it (the bottleneck condition
    that characterises the max-min fair allocation)."""
    demand, loads, capacity = graph
    shares = max_min_shares(demand, loads, capacity)
    granted = [s * d for s, d in zip(shares, demand, strict=True)]
    used = {link: sum(s * ld.get(link, 0.0) for s, ld in zip(shares, loads, strict=True)) for link in capacity}
    assert all(0.0 < s <= 1.0 for s in shares)
    assert all(used[link] <= capacity[link] * (1 + 1e-9) for link in capacity)
    # uncontended exactly when no link's load at full demand, added in flow order, exceeds its capacity
    full = {link: 0.0 for link in capacity}
    for ld in loads:
        for link, load in ld.items():
            full[link] += load
    assert (shares == [1.0] * len(demand)) == all(full[link] <= capacity[link] for link in capacity)
    for f, share in enumerate(shares):
        if share < 1.0 - 1e-9:
            assert any(used[link] >= capacity[link] * (1 - 1e-9)
                       and all(granted[g] <= granted[f] * (1 + 1e-9) for g in range(len(demand)) if link in loads[g])
                       for link in loads[f])


def _filling_by_the_book(demand, per_grant, capacity):
    """Progressive filling as first written (every flow's grant and every link's slope recomputed
    each step): the reference maxmin.filling must match bit for bit."""
    n = len(demand)
    crosses = per_grant > 0
    granted, used, active = np.zeros(n), np.zeros(len(capacity)), np.ones(n, dtype=bool)
    while active.any():
        slope = per_grant[active].sum(axis=0)
        step = (demand - granted)[active].min()
        rising = slope > 0
        if rising.any():
            step = min(step, ((capacity[rising] - used[rising]) / slope[rising]).min())
        step = max(step, 0.0)
        granted[active] += step
        used += step * slope
        full = rising & (used >= capacity * (1.0 - EPS))
        active &= ~((granted >= demand * (1.0 - EPS)) | crosses[:, full].any(axis=1))
    return np.minimum(1.0, granted / demand).tolist()


@settings(max_examples=300, deadline=None)
@given(_graphs(max_flows=12), st.sampled_from([1.0, 0.5, 0.25]))
def test_progressive_filling_keeps_the_bits_of_the_plain_loop(graph, tie):
    """maxmin.filling (one level for the unfrozen flows, full links set aside), and the scalar loop
    the compiled build runs instead (network/fill.py, compiled when the tests run compiled), give the
    same floats as the plain loop; `tie` rounds demands and loads so that flows and links fill at the
    same step. Up to 12 flows: numpy sums a single link's column of 8 or more pairwise."""
    from simulator.network.fill import Filling, fill
    from simulator.network.maxmin import filling

    demand, loads, capacity = graph
    demand = [max(tie, round(d / tie) * tie) for d in demand]
    links = list(capacity)
    per_grant = np.array([[round(ld.get(link, 0.0) / tie) * tie / d for link in links]
                          for d, ld in zip(demand, loads, strict=True)])
    caps = np.array([capacity[link] for link in links])
    book = _filling_by_the_book(np.array(demand), per_grant, caps)
    assert filling(demand, per_grant, caps) == book
    if len(links) > 1:  # fill's precondition: with one column maxmin keeps its numpy loop
        assert fill(demand, per_grant, caps, 1.0 - EPS) == book
        # the same rows as their nonzero entries, last column first (the fat-tree fabric's compiled path)
        cols = [[j for j in range(len(links)) if per_grant[f, j] != 0.0][::-1] for f in range(len(demand))]
        vals = [[float(per_grant[f, j]) for j in row] for f, row in enumerate(cols)]
        assert Filling(caps).rows(demand, cols, vals, 1.0 - EPS) == book


def test_the_scalar_filling_keeps_the_bits_on_fat_tree_sized_graphs():
    """Dozens of jobs spread at random over a 32-leaf, 16:1 fat-tree (the network benchmark's stress
    case): the scalar loop gives the plain loop's floats with many flows summed per link."""
    from simulator.network.fill import fill

    rng = np.random.default_rng(7)
    tree = FatTree(nodes=128, nodes_per_leaf=4, node_gbs=400.0, oversubscription=16.0)
    caps = np.array(list(tree.capacities().values()))
    for _ in range(40):
        jobs = int(rng.integers(2, 40))
        demand = rng.uniform(10.0, 500.0, jobs).tolist()
        per_grant = np.zeros((jobs, len(caps)))
        for f, d in enumerate(demand):
            nodes = rng.choice(128, int(rng.integers(2, 9)), replace=False).tolist()
            for link, load in tree.job_loads(nodes, [d / len(nodes)] * len(nodes)).items():
                per_grant[f, link] = load / d
        assert fill(demand, per_grant, caps, 1.0 - EPS) == _filling_by_the_book(np.array(demand), per_grant, caps)


def test_the_scalar_filling_from_row_entries_gives_the_dense_rows_floats():
    """Filling.rows (each flow's entries in any order, zeros included, as the fat-tree fabric's compiled
    re-share passes them) gives fill's floats on the dense rows, on the stress case's fat-tree; one
    Filling serves every call, as a fabric's does, its arrays grown and reused."""
    from simulator.network.fill import Filling, fill

    rng = np.random.default_rng(11)
    tree = FatTree(nodes=128, nodes_per_leaf=4, node_gbs=400.0, oversubscription=16.0)
    caps = np.array(list(tree.capacities().values()))
    filling = Filling(caps)
    for _ in range(40):
        jobs = int(rng.integers(1, 40))
        demand = rng.uniform(10.0, 500.0, jobs).tolist()
        per_grant = np.zeros((jobs, len(caps)))
        cols, vals = [], []
        for f, d in enumerate(demand):
            nodes = rng.choice(128, int(rng.integers(2, 9)), replace=False).tolist()
            loads = tree.job_loads(nodes, [d / len(nodes)] * len(nodes))
            spare = next(j for j in range(len(caps)) if j not in loads)
            entries = [(link, load / d) for link, load in loads.items()] + [(spare, 0.0)]
            rng.shuffle(entries)
            for link, value in entries:
                per_grant[f, link] = value
            cols.append([int(link) for link, _ in entries])
            vals.append([value for _, value in entries])
        assert filling.rows(demand, cols, vals, 1.0 - EPS) == fill(demand, per_grant, caps, 1.0 - EPS)


def _run_tree(js, nodes, oversubscription, nodes_per_leaf=4, traffic="all-to-all"):
    from tests.helpers import run_jobs

    network = {"network": {"topology": "fat-tree", "oversubscription": oversubscription,
                           "nodes_per_leaf": nodes_per_leaf, "traffic": traffic}}
    return run_jobs(js, ((nodes, 8),), "fifo", pool_keys=network)


@pytest.mark.parametrize("k", [1.0, 2.0, 4.0, 8.0])
def test_a_communication_bound_jobs_slowdown_under_k_to_1_is_its_bottleneck_links(k):
    """A 48-GPU job takes nodes 0-5 (leaf 0 whole, two nodes of leaf 1) of 8 H100 nodes, 4 per leaf.
    With comm_fraction c each node injects c x 8 x 50 GB/s; all-to-all, leaf 0 sends 4 x inj x 2/5 =
    1.6 inj up, against an uplink of 4 x 400 / k GB/s: it runs at a = min(1, 1600 / (k x 1.6 x 400 c))
    = min(1, 2.5 / (k c)) of full speed, so 100 s of work take 100 / a."""
    from tests.helpers import jobs

    c = 0.5
    res = _run_tree(jobs(submit_time=[0], gpus=[48], duration=[100], comm_fraction=[c]), 8, k)
    rate = min(1.0, 2.5 / (k * c))
    job = res.jobs.iloc[0]
    assert job["end_time"] == pytest.approx(100.0 / rate)
    assert job["network_delay_s"] == pytest.approx(100.0 / rate - 100.0)
    assert job["network_hops"] == 4
    links = res.summary["network_busiest_links"]
    assert {link["link"] for link in links} <= {"leaf 0 up", "leaf 0 down", "leaf 1 up", "leaf 1 down"}
    # every link the job loads carried 1.6 inj x a GB/s for the whole run
    assert links[0]["tb_moved"] == pytest.approx(1.6 * c * 400 * rate * job["end_time"] / 1e3)


def test_rack_local_jobs_are_not_slowed_by_a_spanning_job_on_a_thin_spine():
    """Two 32-GPU jobs fill leaf 0 and leaf 1 (nodes 0-3, 4-7); a third, 16 GPUs, lands on nodes 8-9
    of leaf 2 and stays rack-local too: nobody crosses a leaf, at 64:1 nobody is slowed. A 64-GPU
    job submitted after them needs nodes across two leaves (10-11 of leaf 2, 12-15 of leaf 3)."""
    from tests.helpers import jobs

    js = jobs(submit_time=[0, 0, 0, 1], gpus=[32, 32, 16, 48], duration=[100, 100, 100, 100],
              comm_fraction=[1.0, 1.0, 1.0, 1.0])
    res = _run_tree(js, 16, 64.0)
    by_id = res.jobs.set_index("job_id")
    assert by_id.loc[["a", "b", "c"], "end_time"].tolist() == [100.0, 100.0, 100.0]
    assert by_id.loc[["a", "b", "c"], "network_hops"].tolist() == [2, 2, 2]
    assert by_id.loc["d", "network_hops"] == 4 and by_id.loc["d", "end_time"] > 101.0


def test_without_a_topology_the_shared_fabric_runs_as_before_and_the_keys_are_checked():
    from simulator.errors import CapsimError
    from tests.helpers import jobs, run_jobs

    js = jobs(submit_time=[0], gpus=[16], duration=[100], comm_fraction=[1.0])
    shared = run_jobs(js, ((5, 8),), "fifo", pool_keys={"network": {"oversubscription": 2.0}})
    assert "network_hops" not in shared.jobs and "network_busiest_links" not in shared.summary
    with pytest.raises(CapsimError, match="nodes_per_leaf"):
        run_jobs(js, ((5, 8),), "fifo", pool_keys={"network": {"oversubscription": 2.0, "topology": "fat-tree"}})


@pytest.mark.parametrize("placement", ["pack", "rack"])
def test_rack_placement_keeps_a_multi_node_job_under_one_leaf_where_packing_spans_two(placement):
    """8 nodes, 4 per leaf. A takes nodes 0-1. B needs 3 whole nodes: packing takes the lowest free
    ones, 2-4, across both leaves, and on a 64:1 spine its all-to-all traffic is throttled; rack
    placement takes 4-6 from leaf 1 (the one leaf with 3 free) and B runs at full speed."""
    from tests.helpers import jobs, run_jobs

    network = {"network": {"topology": "fat-tree", "oversubscription": 64.0, "nodes_per_leaf": 4,
                           "placement": placement}}
    js = jobs(submit_time=[0, 0], gpus=[16, 24], duration=[1000, 100], comm_fraction=[0.0, 1.0])
    by_id = run_jobs(js, ((8, 8),), "fifo", pool_keys=network).jobs.set_index("job_id")
    if placement == "rack":
        assert by_id.loc["b", "network_hops"] == 2 and by_id.loc["b", "end_time"] == 100.0
    else:
        assert by_id.loc["b", "network_hops"] == 4 and by_id.loc["b", "end_time"] > 100.0


def test_rack_placement_takes_the_fullest_leaves_first_when_no_leaf_has_room():
    from simulator.cluster.pool import Pool

    pool = Pool("p", "h100-sxm", 12, 8, leaf_size=4)
    held = [pool.allocate(8) for _ in range(3)]  # nodes 0, 1, 2: rack placement is for whole-node jobs only
    assert [a.nodes for a in held] == [[(0, 8)], [(1, 8)], [(2, 8)]]
    pool.release(held[1])  # leaf 0: nodes 1 and 3 free; leaves 1 and 2: four each
    alloc = pool.allocate(48)  # six nodes: no leaf has six, so leaf 1 (4) then leaf 2 (its first two)
    assert [n for n, _ in alloc.nodes] == [4, 5, 6, 7, 8, 9]
    # two nodes: leaves 0 (nodes 1, 3) and 2 (10, 11) each have exactly two: the lower leaf
    assert pool.allocate(16).nodes == [(1, 8), (3, 8)]


def _joins_and_leaves(fabric, ops):
    """Apply `ops` (nodes, demand, leave the oldest first?) to `fabric`, re-sharing only the flows around
    each change; yields the rates kept so far after each applied one."""
    rates, live = {}, []
    for k, (nodes, demand, leave_first) in enumerate(ops):
        if leave_first and live:
            gone = live.pop(0)
            around = fabric.leave(gone)
            del rates[gone]
        else:
            if not fabric.join(k, Flow(demand, 1.0, 0.0), [(n, 8) for n in nodes]):
                continue
            live.append(k)
            around = fabric.links_of(k)
        rates.update({job: rate for job, _, rate in fabric.fair_rates(around)})
        yield rates


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 15), min_size=2, max_size=6, unique=True),
                          st.floats(1.0, 400.0), st.booleans()), min_size=1, max_size=25))
def test_resharing_only_the_connected_flows_gives_the_rates_of_a_full_resharing(ops):
    """A fat-tree fabric re-shares only the flows connected (through shared links) to the one that
    joined or left; the rates it keeps and the rates it recomputes equal a re-share of every flow."""
    from simulator.network.fabric import TreeFabric

    fabric = TreeFabric(FatTree(16, 2, 400.0, oversubscription=8.0, leaves_per_pod=2, pod_oversubscription=2.0),
                        50.0)
    for rates in _joins_and_leaves(fabric, ops):
        full = {job: rate for job, _, rate in fabric.fair_rates(None)}
        assert set(full) == set(rates)
        assert all(rates[j] == pytest.approx(full[j], rel=1e-9, abs=1e-12) for j in full)


def _plain_link_load(fabric, link, rates):
    """A link's load by the documented rule, as a plain loop: over the flows crossing it in the order
    they joined, each one's GB/s at full demand times its granted fraction, added left to right from 0."""
    total = 0.0
    for job in fabric.flows:
        load = fabric.loads[job].get(link)
        if load is not None:
            total += load * rates[job]
    return total


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 15), min_size=2, max_size=6, unique=True),
                          st.floats(1.0, 400.0), st.booleans()), min_size=1, max_size=25),
       st.sampled_from([1.0, 8.0]))
def test_link_loads_are_a_plain_per_link_sum_in_join_order(ops, oversubscription):
    """After every join and leave, each link's recorded load at the rates in force is the plain sum of
    the crossing flows' loads times their granted fractions, in the order they joined (no BLAS
    product); and its last recorded change is that value."""
    from simulator.network.fabric import TreeFabric

    fabric = TreeFabric(FatTree(16, 2, 400.0, oversubscription=oversubscription, leaves_per_pod=2,
                                pod_oversubscription=2.0), 50.0)
    for rates in _joins_and_leaves(fabric, ops):
        last = {}
        for _, link, gbs in fabric.usage_changes:
            last[link] = gbs
        for j, link in enumerate(fabric._links):
            expected = _plain_link_load(fabric, link, rates)
            assert fabric._used_list[j] == expected
            assert last.get(link, 0.0) == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 15), min_size=2, max_size=6, unique=True),
                          st.floats(1.0, 400.0), st.booleans()), min_size=1, max_size=25))
def test_without_contention_every_job_keeps_its_whole_demand(ops):
    """With links wide enough for every flow at once, each join and leave leaves every rate 1, slows no
    flow, and the load on each link is the plain sum of the loads at full demand."""
    from simulator.network.fabric import TreeFabric

    fabric = TreeFabric(FatTree(16, 2, 1e9, oversubscription=1.0), 50.0)
    live = []
    for k, (nodes, demand, leave_first) in enumerate(ops):
        if leave_first and live:
            around = fabric.leave(live.pop(0))
        else:
            if not fabric.join(k, Flow(demand, 1.0, 0.0), [(n, 8) for n in nodes]):
                continue
            live.append(k)
            around = fabric.links_of(k)
        assert all(rate == 1.0 for _, _, rate in fabric.fair_rates(around))
        assert not fabric._shares and not fabric._over
        ones = dict.fromkeys(fabric.flows, 1.0)
        assert fabric._used_list == [_plain_link_load(fabric, link, ones) for link in fabric._links]
    assert all(rate == 1.0 for _, _, rate in fabric.fair_rates(None))


def test_an_uncontended_fat_tree_run_slows_no_job():
    """12 nodes, 4 per leaf, 4:1, packing: jobs of 3 nodes take 0-2, 3-5, 6-8 and 9-11, so two of them
    cross leaf 1's uplink together; at a tenth of their time communicating it is not contended, and every
    job ends at its start plus its duration, with no network delay."""
    from tests.helpers import jobs, run_jobs

    network = {"network": {"topology": "fat-tree", "oversubscription": 4.0, "nodes_per_leaf": 4}}
    js = jobs(submit_time=[0, 0, 0, 0], gpus=[24] * 4, duration=[1000, 500, 200, 300], comm_fraction=[0.1] * 4)
    res = run_jobs(js, ((12, 8),), "fifo", pool_keys=network)
    assert (res.jobs["network_hops"] == 4).sum() == 2  # two jobs cross the uplinks
    assert (res.jobs["network_delay_s"] == 0.0).all() and res.summary["network_delayed_jobs"] == 0
    assert (res.jobs["end_time"] - res.jobs["start_time"] == res.jobs["duration"]).all()
    assert all(0.0 < row["peak_utilisation"] <= 1.0 for row in res.summary["network_busiest_links"])


def test_fabric_all_to_all_matches_the_trees_hops_and_loads():
    """TreeFabric's one-pass all-to-all (network/fabric.py, compiled with it) gives FatTree's hops and
    job_loads exactly: the same links in the same order, the same floats."""
    import random

    from simulator.network.fabric import all_to_all
    from simulator.network.topology import FatTree, RailTree

    rng = random.Random(15)
    trees = [FatTree(64, 4, 400.0, 4), FatTree(96, 4, 400.0, 2, leaves_per_pod=3, pod_oversubscription=2),
             RailTree(256, 36, 200.0, 4, rails=4), RailTree(500, 18, 200.0, 4, 4, 2, rails=4)]
    for tree in trees:
        for _ in range(300):
            nodes = rng.sample(range(tree.nodes), rng.randint(2, 40))
            if len({tree.leaf_of(n) for n in nodes}) < 2:
                continue
            pairs = [(n, rng.randint(1, 8)) for n in nodes]
            demand = rng.uniform(1.0, 5000.0)
            devices = sum(c for _, c in pairs)
            hops, loads = all_to_all(tree, pairs, demand)
            expected = tree.job_loads(nodes, [demand * c / devices for _, c in pairs])
            assert hops == tree.hops(nodes)
            assert list(loads.items()) == list(expected.items())
