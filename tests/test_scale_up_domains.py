"""Scale-up domains larger than a node (GB200 NVL72: 18 trays of 4 GPUs on one NVLink switch fabric):
a job inside one domain puts nothing on the scale-out fabric, and placement keeps multi-node jobs
inside one when it can (simulator/network/fabric.py, simulator/cluster/pool.py)."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator.cluster.pool import Pool
from simulator.errors import CapsimError
from simulator.network.fabric import Fabric, Flow, TreeFabric
from simulator.network.topology import FatTree
from simulator.scenario import scenario_from_data
from tests.helpers import jobs


def gb200_run(js, nodes: int, network: dict, **pool_keys):
    """GB200 trays of 4 GPUs (the profile: 72-GPU NVLink domain, 50 GB/s scale-out per GPU)."""
    scen = {"name": "nvl72", "seed": 1, "scheduler": {"policy": "fifo"}, "workload": [],
            "cluster": {"pools": [{"name": "nvl", "device": "gb200", "nodes": nodes, "devices_per_node": 4,
                                   "network": network, **pool_keys}]}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return simulator.run(scen, jobs=js, progress=False).jobs.set_index("job_id")


def test_the_domain_comes_from_the_profile_and_the_pool_key_overrides_it():
    pool = {"name": "p", "device": "gb200", "nodes": 36, "devices_per_node": 4, "network": {"oversubscription": 2}}
    spec = scenario_from_data({"cluster": {"pools": [pool]}, "workload": []}).cluster.pools[0]
    assert spec.scale_up_domain_nodes == 18  # 72 / 4
    for keys, nodes in (({"scale_up_nodes": 1}, 1), ({"scale_up_nodes": 9}, 9), ({"devices_per_node": 72}, 1),
                        ({"devices_per_node": 5}, 1), ({"network": None}, 1)):
        spec = scenario_from_data({"cluster": {"pools": [{**pool, **keys}]}, "workload": []}).cluster.pools[0]
        assert spec.scale_up_domain_nodes == nodes, keys
    # an H100 node is its own 8-GPU domain: nothing changes for existing pools
    h100 = {**pool, "device": "h100-sxm", "devices_per_node": 8}
    assert scenario_from_data({"cluster": {"pools": [h100]}, "workload": []}).cluster.pools[0].scale_up_domain_nodes == 1


@pytest.mark.parametrize(("keys", "message"), [
    ({"scale_up_nodes": 19}, "scale_up_nodes: 19 nodes x 4 devices exceed gb200's scale-up domain of 72 devices"),
    ({"scale_up_nodes": 0}, "scale_up_nodes"),
    ({"scale_up_nodes": 2, "network": None}, "scale_up_nodes only changes the modelled scale-out fabric"),
    ({"device": "h100-sxm", "devices_per_node": 8, "scale_up_nodes": 2}, "h100-sxm's scale-up domain of 8"),
])
def test_bad_scale_up_nodes_are_refused_on_one_line_with_the_key_path(keys, message):
    pool = {"name": "p", "device": "gb200", "nodes": 36, "devices_per_node": 4, "network": {"oversubscription": 2},
            **keys}
    with pytest.raises(CapsimError) as info:
        scenario_from_data({"cluster": {"pools": [pool]}, "workload": []})
    text = str(info.value)
    assert "cluster.pools[0]" in text and message in text and "\n" not in text


def test_a_job_inside_one_nvl72_domain_ignores_a_saturated_fabric_while_spanning_jobs_share_it():
    """Four NVL72 racks (72 trays of 4 GB200s), one shared fabric at 8:1: 288 x 50 / 8 = 1800 GB/s.
    A (72 GPUs, comm 1) fills rack 0; B and C (100 GPUs = 25 trays each, comm 0.5) fit no rack, take
    trays 18-42 and 43-67 and each ask 0.5 x 100 x 50 = 2500 GB/s. With domains B and C share 1800:
    900 each, rate 0.36, 100 s of work end at 277.8 s; A never touches the fabric and ends at 100.
    Without domains (scale_up_nodes: 1) A asks 3600 too: three flows get 600 each, A at 1/6 and B, C
    at 0.24 until they end at 416.7 s (A has done 69.4 s); then A alone gets 1800 of 3600, rate 1/2,
    and its last 30.6 s take 61.1: it ends at 477.8 s."""
    js = jobs(submit_time=[0, 0, 0], gpus=[72, 100, 100], duration=[100, 100, 100], comm_fraction=[1.0, 0.5, 0.5])
    shared = {"oversubscription": 8}
    on = gb200_run(js, 72, shared)
    assert on["end_time"].tolist() == pytest.approx([100.0, 100 / 0.36, 100 / 0.36])
    assert on.loc["a", "network_delay_s"] == 0.0
    off = gb200_run(js, 72, shared, scale_up_nodes=1)
    t_bc = 100 / 0.24
    assert off.loc[["b", "c"], "end_time"].tolist() == pytest.approx([t_bc, t_bc])
    assert off.loc["a", "end_time"] == pytest.approx(t_bc + (100 - t_bc / 6) / 0.5)


def test_on_a_fat_tree_a_job_inside_one_domain_crosses_no_switch_and_spanning_jobs_are_throttled():
    """The same racks under a fat-tree of one leaf per rack (18 trays) at 8:1: a leaf uplink carries
    18 x 200 / 8 = 450 GB/s. A 76-GPU job (19 trays: 18-36, racks 1 and 2) all-to-all sends from leaf
    1 18 x 200 x 1/18 = 200 GB/s, and tray 36 sends its 200 GB/s up leaf 2: within capacity, full
    speed, 4 hops. A 72-GPU job in rack 0 is 0 hops."""
    js = jobs(submit_time=[0, 0], gpus=[72, 76], duration=[100, 100], comm_fraction=[1.0, 1.0])
    res = gb200_run(js, 72, {"topology": "fat-tree", "nodes_per_leaf": 18, "oversubscription": 8})
    assert res["network_hops"].tolist() == [0, 4]
    assert res["end_time"].tolist() == [100.0, 100.0]
    # at 64:1 (56.25 GB/s per uplink) the spanning job is throttled to 56.25 / 200 of full speed
    res = gb200_run(js, 72, {"topology": "fat-tree", "nodes_per_leaf": 18, "oversubscription": 64})
    assert res["end_time"].tolist() == pytest.approx([100.0, 100 * 200 / 56.25])


def test_a_64_gpu_job_goes_inside_one_domain_when_one_has_room():
    """Two racks of 18 trays. A 12-GPU job takes trays 0-2 (both racks tie: the lower). A 64-GPU job
    (16 trays) does not fit in rack 0's 15 free trays: it takes 18-33 in rack 1, where plain packing
    would have taken trays 3-18 across both racks."""
    pool = Pool("p", "gb200", 36, 4, domain_size=18)
    assert [n for n, _ in pool.allocate(12).nodes] == [0, 1, 2]
    assert [n for n, _ in pool.allocate(64).nodes] == list(range(18, 34))
    plain = Pool("p", "gb200", 36, 4)
    plain.allocate(12)
    assert [n for n, _ in plain.allocate(64).nodes] == list(range(3, 19))
    # best fit: a 32-GPU job (8 trays) goes to rack 0 (15 free), the rack with the fewest that do
    assert [n for n, _ in pool.allocate(32).nodes] == list(range(3, 11))


def test_a_remainder_shares_a_partly_free_tray_of_the_same_domain():
    """A 2-GPU job holds half of tray 0. A 70-GPU job (17 trays + 2 GPUs) fits in rack 0: trays 1-17
    whole and the other half of tray 0 (best fit for the remainder); a second 70-GPU job goes to rack 1
    as 17 whole trays and 2 GPUs of its 18th."""
    pool = Pool("p", "gb200", 36, 4, domain_size=18)
    assert pool.allocate(2).nodes == [(0, 2)]
    assert pool.allocate(70).nodes == [(n, 4) for n in range(1, 18)] + [(0, 2)]
    assert pool.allocate(70).nodes == [(n, 4) for n in range(18, 35)] + [(35, 2)]
    assert pool.free == 2 and pool.free_devices_on(35) == 2


def test_with_no_domain_room_a_job_falls_back_to_rack_placement():
    """Domains of 2 trays, leaves of 6: free trays 1, 3, 5 (leaf 0) and 7, 9 (leaf 1), one per domain.
    A 2-tray job fits in no domain, so rack placement takes the leaf with the fewest free trays that
    has room: 7 and 9 (plain packing would take 1 and 3). Once trays 10 and 11 (domain 5) are freed,
    the next 2-tray job goes there, past the lower free trays 3 and 5."""
    pool = Pool("p", "gb200", 12, 4, leaf_size=6, domain_size=2)
    held = [pool.allocate(4) for _ in range(12)]  # one tray each: trays 0-11 in order
    for tray in (1, 3, 5, 7, 9):
        pool.release(held[tray])
    assert [n for n, _ in pool.allocate(8).nodes] == [7, 9]
    pool.release(held[10])
    pool.release(held[11])
    pool.allocate(4)  # one tray: plain best fit, the lowest whole free tray (1)
    assert [n for n, _ in pool.allocate(8).nodes] == [10, 11]


def test_fabrics_skip_a_job_inside_one_domain():
    shared = Fabric(1000.0, 50.0, domain_nodes=18)
    assert not shared.join("a", Flow(100.0, 1.0, 0.0), [(0, 4), (17, 4)])
    assert shared.join("b", Flow(100.0, 1.0, 0.0), [(17, 4), (18, 4)])
    tree = TreeFabric(FatTree(36, 9, 200.0, oversubscription=4.0), 50.0, domain_nodes=18)
    assert not tree.join("a", Flow(100.0, 1.0, 0.0), [(0, 4), (17, 4)]) and tree.hops["a"] == 0
    assert tree.join("b", Flow(100.0, 1.0, 0.0), [(17, 4), (18, 4)]) and tree.hops["b"] == 4


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.booleans()), min_size=1, max_size=40))
def test_domain_placement_keeps_the_index_right_and_uses_a_domain_whenever_one_has_room(ops):
    """Random allocations (1-40 GPUs on 4-GPU trays, domains of 5 trays, leaves of 10) and releases:
    every allocation holds exactly its devices on trays that had them free, the free-capacity index
    matches the trays, and a job of more than one tray lands inside one domain exactly when (by brute
    force over the free trays) some domain had room for it."""
    pool = Pool("p", "gb200", 23, 4, leaf_size=10, domain_size=5)  # the last domain is 3 trays
    live = []
    for devices, release in ops:
        if release and live:
            pool.release(live.pop(0))
            continue
        before = [pool.free_devices_on(n) for n in range(23)]
        whole, rest = divmod(devices, 4)
        room = any(_domain_has_room(before[d * 5:d * 5 + 5], whole, rest) for d in range(5))
        alloc = pool.allocate(devices)
        if alloc is None:
            continue
        live.append(alloc)
        assert sum(c for _, c in alloc.nodes) == devices
        assert all(before[n] >= c for n, c in alloc.nodes) and len({n for n, _ in alloc.nodes}) == len(alloc.nodes)
        if devices > 4:  # one tray or less: plain best fit, no domain rule
            # (no placement fits inside a domain without room, so with none it cannot land in one)
            assert room == (len({n // 5 for n, _ in alloc.nodes}) == 1)
        free_on = [pool.free_devices_on(n) for n in range(23)]
        assert pool.free == sum(free_on) and pool.free_counts() == [free_on.count(k) for k in range(5)]


def _domain_has_room(free: list[int], whole: int, rest: int) -> bool:
    full = free.count(4)
    if full < whole:
        return False
    return rest == 0 or full > whole or any(rest <= f < 4 for f in free)


def test_a_placement_inside_a_domain_is_counted_by_the_pools_guard():
    """A power cap's guard counts every allocation and release of its pools; a job placed inside one
    scale-up domain was not counted, so its release drove the guard's count below what is in use."""
    from simulator.cluster.pool import PlacementGuard

    class Counting(PlacementGuard):
        used = 0

        def taken(self, pool, devices):
            self.used += devices

        def given_back(self, pool, devices):
            self.used -= devices

    pool = Pool("p", "gb200", 36, 4, domain_size=18)
    pool.guard = guard = Counting()
    allocs = [pool.allocate(n) for n in (8, 3, 64, 12)]  # two of them span nodes inside one domain
    assert all(allocs) and guard.used == sum(a.devices for a in allocs) == 36 * 4 - pool.free
    for alloc in allocs:
        pool.release(alloc)
    assert guard.used == 0 and pool.free == 36 * 4
