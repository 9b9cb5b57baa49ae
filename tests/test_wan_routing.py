"""Transfers routed over several WAN links (features/sites.py `routes`), sharing every link of their
route max-min fairly, and the egress they are billed. Three sites on a line, A - B - C, one 8 x H100
node each; C is the cheapest, so cheapest-energy sends every job there."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import CapsimError
from simulator.features.sites import Link, SitePlacer, Transfer, routes
from tests.helpers import jobs, run_jobs


def line(ab_gbps=8.0, bc_gbps=8.0, ab_ms=10.0, bc_ms=20.0, policy="cheapest-energy", **links):
    """Sites a, b, c (pools p0, p1, p2) joined a-b and b-c only; c has the cheapest energy."""
    return {
        "sites": [{"name": name, "pools": [f"p{i}"], "usd_per_kwh": price, "gco2e_per_kwh": 100}
                  for i, (name, price) in enumerate((("a", 0.3), ("b", 0.2), ("c", 0.1)))],
        "wan": [{"between": ["a", "b"], "gbps": ab_gbps, "latency_ms": ab_ms, **links.get("ab", {})},
                {"between": ["b", "c"], "gbps": bc_gbps, "latency_ms": bc_ms, **links.get("bc", {})}],
        "sites_policy": {"policy": policy},
    }


def run_line(js, pools=((1, 8), (1, 8), (1, 8)), **kw):
    return run_jobs(js, pools=pools, extra=line(**kw))


def starts(res) -> dict:
    return res.jobs.set_index("job_id")["start_time"].to_dict()


def test_a_to_c_shares_link_b_c_with_a_b_to_c_transfer():
    # x (100 GB at a) goes a-b-c, y (50 GB at b) goes b-c; both links 1 GB/s. On b-c each gets half:
    # 0.5 GB/s. y's 50 GB are sent at 100 s (there 20 ms later); x has 50 GB left and, alone, sends them
    # at 1 GB/s by 150 s, there after both links' latencies (30 ms).
    js = jobs(submit_time=[0.0, 0.0], gpus=[1, 1], duration=[60.0, 60.0], home_site=["a", "b"],
              input_gb=[100.0, 50.0])
    res = run_line(js, ab={"usd_per_gb": 0.02}, bc={"usd_per_gb": 0.01})
    assert starts(res) == {"a": pytest.approx(150.03), "b": pytest.approx(100.02)}
    assert list(res.jobs["site"]) == ["c", "c"]
    assert list(res.jobs["transfer_s"]) == pytest.approx([150.03, 100.02])
    assert res.summary["wan_links"] == [
        {"link": "a-b", "tb_moved": pytest.approx(0.1), "transfers": 1, "usd": pytest.approx(2.0)},
        {"link": "b-c", "tb_moved": pytest.approx(0.15), "transfers": 2, "usd": pytest.approx(1.5)}]
    # Egress is billed to the sender on each link: a sent x's 100 GB on a-b ($0.02/GB); b relayed x's
    # 100 GB and sent y's 50 GB on b-c ($0.01/GB).
    sites = res.summary["sites"]
    assert (sites["a"]["egress_tb"], sites["a"]["egress_usd"]) == (pytest.approx(0.1), pytest.approx(2.0))
    assert (sites["b"]["egress_tb"], sites["b"]["egress_usd"]) == (pytest.approx(0.15), pytest.approx(1.5))
    assert (sites["c"]["egress_tb"], sites["c"]["egress_usd"]) == (0.0, 0.0)
    assert sites["c"]["data_moved_tb"] == pytest.approx(0.15)
    assert res.summary["egress_usd"] == pytest.approx(3.5)


def test_a_narrow_first_link_leaves_the_rest_of_the_shared_one_to_the_other_transfer():
    # a-b is 2 Gbit/s (0.25 GB/s): x can take no more than that, so max-min gives y the other 0.75 GB/s
    # of b-c (not half). y's 75 GB are sent at 100 s; x, still held to 0.25 GB/s by a-b, has sent 25 GB
    # and needs 300 s more: sent at 400 s, there 30 ms later.
    js = jobs(submit_time=[0.0, 0.0], gpus=[1, 1], duration=[60.0, 60.0], home_site=["a", "b"],
              input_gb=[100.0, 75.0])
    res = run_line(js, ab_gbps=2.0)
    assert starts(res) == {"a": pytest.approx(400.03), "b": pytest.approx(100.02)}
    assert "egress_usd" not in res.summary and "egress_usd" not in res.summary["sites"]["a"]  # no link priced


def test_egress_is_part_of_cost_usd():
    js = jobs(submit_time=[0.0], gpus=[8], duration=[3600.0], home_site=["a"], input_gb=[100.0])
    extra = line(ab={"usd_per_gb": 0.02}, bc={"usd_per_gb": 0.02})
    free = run_jobs(js, pools=((1, 8),) * 3, extra={**line(), "cost": {}})
    priced = run_jobs(js, pools=((1, 8),) * 3, extra={**extra, "cost": {}})
    assert priced.summary["egress_usd"] == pytest.approx(4.0)  # 100 GB over two links at $0.02/GB
    assert priced.summary["cost_usd"] == pytest.approx(free.summary["cost_usd"] + 4.0, rel=1e-12)
    assert priced.jobs.equals(free.jobs)


def _link(index, latency_s, gbs=1.0):
    return Link(index, f"l{index}", gbs, latency_s)


def test_routes_take_the_fewest_links_then_the_lowest_latency():
    # 0-3 direct (100 ms) beats 0-1-3 (20 ms in all): fewer links. 1 to 2: two links either way, via 0
    # (5 + 5 ms) or via 3 (10 + 20 ms): the lower latency.
    l03, l01, l13, l02 = _link(0, 0.1), _link(1, 0.005), _link(2, 0.01), _link(3, 0.005)
    l23 = _link(4, 0.02)
    graph = {(0, 3): l03, (0, 1): l01, (1, 3): l13, (0, 2): l02, (2, 3): l23}
    r = routes(4, graph)
    assert r[(0, 3)] == ((l03, 0),)
    assert r[(1, 2)] == ((l01, 1), (l02, 0))
    assert r[(2, 1)] == ((l02, 2), (l01, 0))
    assert r[(3, 0)] == ((l03, 3),)
    # Without a link to site 4's component there is no route to it.
    assert not any(4 in pair for pair in routes(5, graph))


def test_a_job_whose_data_can_reach_no_site_that_holds_it_is_refused():
    # x needs 8 devices; its home a has 4, b has 4, only c has 8. With only a-b there is no route to c.
    js = jobs(submit_time=[0.0], gpus=[8], duration=[60.0], home_site=["a"], input_gb=[10.0])
    extra = line()
    extra["wan"].pop()
    for policy in ("home", "nearest-data", "cheapest-energy", "spill-after"):
        extra["sites_policy"] = {"policy": policy, **({"after": "1h"} if policy == "spill-after" else {})}
        with pytest.raises(CapsimError) as err:
            run_jobs(js, pools=((1, 4), (1, 4), (1, 8)), extra=extra)
        text = str(err.value)
        assert "wan" in text and "site 'a', which cannot hold them" in text and "(c)" in text and "\n" not in text
    # With b-c it goes a-b-c (10 GB at 1 GB/s, then 30 ms), even under home.
    res = run_line(js, pools=((1, 4), (1, 4), (1, 8)), policy="home")
    assert starts(res) == {"a": pytest.approx(10.03)} and list(res.jobs["site"]) == ["c"]


# -- max-min over paths against a closed form --------------------------------------------------------
def line_closed_form(c1: float, c2: float, n1: int, n2: int, n3: int) -> tuple[float, float, float]:
    """Max-min rates on the line a -1- b -2- c of n1 transfers on link 1 only, n2 on link 2 only and n3
    over both: the link with the smaller fair share c / (flows on it) is the bottleneck of all its
    flows; the flows of the other link that cross only it share what the through transfers leave."""
    share1 = c1 / (n1 + n3) if n1 + n3 else float("inf")
    share2 = c2 / (n2 + n3) if n2 + n3 else float("inf")
    if share1 <= share2:
        through = share1 if n3 else 0.0
        return share1, (c2 - n3 * through) / n2 if n2 else 0.0, through
    through = share2 if n3 else 0.0
    return (c1 - n3 * through) / n1 if n1 else 0.0, share2, through


@settings(max_examples=300, deadline=None)
@given(st.floats(0.1, 100.0), st.floats(0.1, 100.0), st.integers(0, 4), st.integers(0, 4), st.integers(0, 4))
def test_progressive_filling_over_routes_is_the_closed_form_on_a_line(c1, c2, n1, n2, n3):
    if n1 + n2 + n3 == 0:
        return
    l1, l2 = Link(0, "a-b", c1, 0.0), Link(1, "b-c", c2, 0.0)
    flows = ([Transfer(None, 1, 1.0, 0.0, False, ((l1, 0),)) for _ in range(n1)]
             + [Transfer(None, 2, 1.0, 0.0, False, ((l2, 1),)) for _ in range(n2)]
             + [Transfer(None, 2, 1.0, 0.0, False, ((l1, 0), (l2, 1))) for _ in range(n3)])
    got = SitePlacer._rates(flows)
    r1, r2, r3 = line_closed_form(c1, c2, n1, n2, n3)
    assert got == pytest.approx([r1] * n1 + [r2] * n2 + [r3] * n3, rel=1e-9)
    # feasible: no link carries more than its bandwidth
    assert sum(got[:n1]) + sum(got[n1 + n2:]) <= c1 * (1 + 1e-9)
    assert sum(got[n1:]) <= c2 * (1 + 1e-9)


def test_the_report_shows_each_sites_and_links_egress():
    from simulator.report.html import render_report
    from tests.test_report_sections import Page

    js = jobs(submit_time=[0.0, 0.0], gpus=[1, 1], duration=[60.0, 60.0], home_site=["a", "b"],
              input_gb=[100.0, 50.0])
    page = Page(render_report(run_line(js, ab={"usd_per_gb": 0.02})))  # b-c is free
    links = {r["link"]: r for r in page.table("Sites: wide-area links")}
    assert (links["a-b"]["egress"], links["b-c"]["egress"]) == ("$2", "$0")
    energy = {r["site"]: r for r in page.table("Sites: energy, carbon and power")}
    assert [energy[s]["egress"] for s in "abc"] == ["0.10 TB, $2", "0.15 TB, $0", "0.00 TB, $0"]


def test_the_printed_summary_names_egress():
    from simulator.report.summary import summary_rows

    js = jobs(submit_time=[0.0], gpus=[1], duration=[60.0], home_site=["a"], input_gb=[100.0])
    res = run_jobs(js, pools=((1, 8),) * 3, extra={**line(ab={"usd_per_gb": 2.0}), "cost": {}})
    rows = dict(summary_rows(res.summary))
    assert res.summary["cost_usd"] > 200
    assert rows["cost (devices + energy + egress)"] == f"${res.summary['cost_usd']:,.0f}"
    assert rows["site a: data sent out, egress cost"] == "0.10 TB, $200"
    assert rows["site b: data sent out, egress cost"] == "0.10 TB, $0"  # relayed over the free b-c


def _integral_usd(timeline, column="usd_per_h") -> float:
    time = timeline["time_s"].to_numpy(dtype=float)
    return float((timeline[column].to_numpy(dtype=float)[:-1] * np.diff(time)).sum() / 3600.0)


def test_egress_is_on_the_cost_timeline_spread_over_each_transfer():
    # x (100 GB at a) goes a-b-c at $0.02/GB on a-b and $0.01/GB on b-c ($3); y (50 GB at b) goes b-c
    # ($0.50). As in the first test, y is sent over [0, 100 s] and x over [0, 150 s]: x bills $3 / 150 s
    # = $72/h, y $0.50 / 100 s = $18/h, both from 0; after 150 s nothing.
    js = jobs(submit_time=[0.0, 0.0], gpus=[1, 1], duration=[60.0, 60.0], home_site=["a", "b"],
              input_gb=[100.0, 50.0])
    extra = line(ab={"usd_per_gb": 0.02}, bc={"usd_per_gb": 0.01})
    res = run_jobs(js, pools=((1, 8),) * 3, extra={**extra, "cost": {}})
    free = run_jobs(js, pools=((1, 8),) * 3, extra={**line(), "cost": {}})
    tl = res.timeline.set_index("time_s")
    assert tl.loc[0.0, "egress_usd_per_h"] == pytest.approx(90.0)
    assert tl.loc[100.0, "egress_usd_per_h"] == pytest.approx(72.0)
    assert (tl.loc[tl.index >= 150.0, "egress_usd_per_h"] == 0.0).all()  # exactly: no rounding left over
    assert _integral_usd(res.timeline, "egress_usd_per_h") == pytest.approx(3.5, rel=1e-12)
    # the whole spend rate integrates to cost_usd, egress included
    assert res.summary["egress_usd"] == pytest.approx(3.5)
    assert _integral_usd(res.timeline) == pytest.approx(res.summary["cost_usd"], rel=1e-12)
    # the devices' and energy's rate is the unpriced run's, at the instants both timelines have
    base = free.timeline.set_index("time_s")["usd_per_h"]
    both = base.index.intersection(tl.index)
    assert (tl.loc[both, "usd_per_h"] - tl.loc[both, "egress_usd_per_h"]).to_numpy() == pytest.approx(
        base.loc[both].to_numpy(), rel=1e-12)
    assert _integral_usd(free.timeline) == pytest.approx(free.summary["cost_usd"], rel=1e-12)


def test_egress_adds_no_column_without_cost():
    js = jobs(submit_time=[0.0], gpus=[1], duration=[60.0], home_site=["a"], input_gb=[100.0])
    res = run_line(js, ab={"usd_per_gb": 0.02})
    assert "egress_usd_per_h" not in res.timeline.columns and "usd_per_h" not in res.timeline.columns
