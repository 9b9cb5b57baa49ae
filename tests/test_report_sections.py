"""The run report's Network, Sites and fragmented-chip sections (report/sections.py): present only with
their feature, their numbers those of the run's own files, the same bytes on every render; and their
headlines in `capsim run`'s console summary."""

from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import simulator
from simulator.cli import main
from simulator.report.html import render_report
from simulator.results import Results
from simulator.units import format_duration
from tests.helpers import jobs, run_jobs, scenario_dict

HOUR = 3600.0
FAT_TREE = {"topology": "fat-tree", "nodes_per_leaf": 4, "oversubscription": 16}


def combined_scenario() -> dict:
    """Two sites, each a pool of 8 x 8 H100 on a 16:1 fat-tree; east holds every job's data, is capped, and is
    the cheaper in the first half of each day: cheapest-energy keeps those jobs there and sends the others
    north, with their data."""
    scen = scenario_dict([(8, 8), (8, 8)], [{
        "kind": "synthetic", "until": "3d", "arrival": {"process": "poisson", "rate_per_hour": 2},
        "gpus": {"choice": [8, 16, 32], "weights": [0.4, 0.3, 0.3]}, "duration": {"dist": "exponential", "mean": "3h"},
        "comm_fraction": 0.4, "home_site": "east", "input_gb": 200}], policy="easy-backfill")
    for pool in scen["cluster"]["pools"]:
        pool["network"] = FAT_TREE
    scen["sites"] = [
        {"name": "east", "pools": ["p0"], "usd_per_kwh": [0.02] * 12 + [0.2] * 12, "gco2e_per_kwh": 380, "power_cap_kw": 60},
        {"name": "north", "pools": ["p1"], "usd_per_kwh": 0.04, "gco2e_per_kwh": 25}]
    scen["wan"] = [{"between": ["east", "north"], "gbps": 10, "latency_ms": 30}]
    scen["sites_policy"] = {"policy": "cheapest-energy"}
    return scen


TORUS = {"name": "cube", "seed": 3, "cluster": {"pools": [
    {"name": "pod", "device": "tpu-v4", "nodes": 16, "devices_per_node": 4, "topology": "torus"}]},
    "workload": [{"kind": "synthetic", "until": "1d", "arrival": {"process": "poisson", "rate_per_hour": 4},
                  "gpus": {"choice": [8, 16, 32], "weights": [0.5, 0.3, 0.2]},
                  "duration": {"dist": "exponential", "mean": "2h"}}],
    "scheduler": {"policy": "fifo"}}


@pytest.fixture(scope="module")
def combined():
    return simulator.run(combined_scenario(), progress=False)


@pytest.fixture(scope="module")
def torus():
    return simulator.run(TORUS, progress=False)


class Page(HTMLParser):
    """Each section of a report: heading -> {"tables": [[cells per row]], "captions": [text]}."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self._at, self._cell, self._row, self._caption = None, None, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self._at = ""
        elif tag == "table":
            self.sections[self._heading]["tables"].append([])
        elif tag == "tr":
            self._row = []
            self.sections[self._heading]["tables"][-1].append(self._row)
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "p" and ("class", "caption") in attrs:
            self._caption = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self._heading, self._at = self._at, None
            self.sections[self._heading] = {"tables": [], "captions": []}
        elif tag in ("td", "th"):
            self._row.append(self._cell)
            self._cell = None
        elif tag == "p" and self._caption is not None:
            self.sections[self._heading]["captions"].append(self._caption)
            self._caption = None

    def handle_data(self, data):
        if self._at is not None:
            self._at += data
        elif self._cell is not None:
            self._cell += data
        elif self._caption is not None:
            self._caption += data

    def table(self, heading: str) -> list[dict]:
        """The first table of a section as dicts of header -> cell."""
        header, *rows = self.sections[heading]["tables"][0]
        return [dict(zip(header, row, strict=True)) for row in rows]


def hours_above(timeline, column: str, level: float) -> float:
    time, values = timeline["time_s"].to_numpy(float), timeline[column].to_numpy(float)
    return float(np.diff(time)[values[:-1] > level].sum()) / HOUR


def headings(res) -> set[str]:
    return set(Page(render_report(res)).sections)


def test_the_sections_appear_only_with_their_feature(combined, torus):
    plain = run_jobs(jobs(submit_time=[0.0, 10.0], gpus=[8, 8], duration=[100.0, 100.0]))
    shared = run_jobs(jobs(submit_time=[0.0], gpus=[16], duration=[100.0], comm_fraction=[0.0]), ((2, 8),),
                      pool_keys={"network": {"oversubscription": 2.0}})  # a fabric that slowed nobody

    def kinds(names: set[str]) -> set[str]:
        return {k for k in ("Network", "Sites", "Fragmented") if any(h.startswith(k) for h in names)}

    assert kinds(headings(plain)) == kinds(headings(shared)) == set()
    assert kinds(headings(combined)) == {"Network", "Sites"}
    assert kinds(headings(torus)) == {"Fragmented"}


def test_a_hand_worked_link_saturated_for_its_whole_run():
    """As tests/test_topology.py: a 48-GPU job over leaf 0 and two nodes of leaf 1 at 8:1, comm_fraction
    0.5, runs at 0.625 of full speed; leaf 0's uplink carries 1.6 x 200 x 0.625 = 200 GB/s of its 200:
    100% for the 16 h that 10 h of work take."""
    res = run_jobs(jobs(submit_time=[0], gpus=[48], duration=[10 * HOUR], comm_fraction=[0.5]), ((8, 8),),
                   pool_keys={"network": {**FAT_TREE, "oversubscription": 8}})
    rows = {r["link"]: r for r in Page(render_report(res)).table("Network: the busiest links")}
    leaf0 = rows["leaf 0 up"]
    assert (leaf0["tier"], leaf0["capacity"], leaf0["peak utilisation"]) == ("leaf", "200 GB/s", "100.0%")
    assert leaf0["mean utilisation"] == "100.0%" and leaf0["hours above 90%"] == "16.0"
    assert res.timeline["link_utilization:p0/leaf 0 up"].tolist() == pytest.approx([1.0, 0.0])
    worst = Page(render_report(res)).table("Network: the most slowed jobs")
    assert worst == [{"job": "a", "pool": "p0", "GPUs": "48", "hops": "4", "time lost": "6h", "slowdown": "+60.0%"}]


def test_a_run_written_before_link_peaks_were_recorded_still_reports_its_links():
    res = run_jobs(jobs(submit_time=[0], gpus=[48], duration=[HOUR], comm_fraction=[0.5]), ((8, 8),),
                   pool_keys={"network": {**FAT_TREE, "oversubscription": 8}})
    for link in res.summary["network_busiest_links"]:
        del link["tier"], link["peak_utilisation"], link["hours_above_90pct"]
    res.timeline = res.timeline[[c for c in res.timeline if not c.startswith("link_utilization:")]]
    page = Page(render_report(res))
    rows = page.table("Network: the busiest links")
    assert {(r["tier"], r["peak utilisation"], r["hours above 90%"]) for r in rows} == {("leaf", "–", "–")}
    assert "Network: utilisation of the busiest links" not in page.sections
    assert "Network: the most slowed jobs" in page.sections


def test_the_network_tables_hold_the_runs_numbers(combined):
    page = Page(render_report(combined))
    s, timeline, js = combined.summary, combined.timeline, combined.jobs
    rows = page.table("Network: the busiest links")
    assert len(rows) == len(s["network_busiest_links"]) > 0
    for row, link in zip(rows, s["network_busiest_links"], strict=True):
        column = f"link_utilization:{link['pool']}/{link['link']}"
        assert row["peak utilisation"] == f"{timeline[column].max():.1%}"
        assert row["hours above 90%"] == f"{hours_above(timeline, column, 0.9):,.1f}"
        assert row["mean utilisation"] == f"{link['tb_moved'] * 1e3 / (link['capacity_gbs'] * s['makespan_s']):.1%}"
    done = js[js["status"] == "completed"]
    slowdown = done["network_delay_s"] / (done["end_time"] - done["start_time"] - done["network_delay_s"])
    worst = slowdown[slowdown > 0].sort_values(ascending=False, kind="stable").head(10)
    shown = page.table("Network: the most slowed jobs")
    assert [r["job"] for r in shown] == js.loc[worst.index, "job_id"].tolist()
    assert [r["slowdown"] for r in shown] == [f"+{x:.1%}" for x in worst]
    assert [r["hops"] for r in shown] == [str(h) for h in js.loc[worst.index, "network_hops"]]
    caption = page.sections["Network: jobs' slowdown from contention"]["captions"][0]
    assert caption.startswith(f"{int((slowdown > 0).sum()):,} of {len(done):,} completed jobs")


def test_the_site_tables_hold_the_runs_numbers(combined):
    page = Page(render_report(combined))
    s, timeline, js = combined.summary, combined.timeline, combined.jobs
    work = {r["site"]: r for r in page.table("Sites: work and waits")}
    energy = {r["site"]: r for r in page.table("Sites: energy, carbon and power")}
    assert set(work) == set(energy) == {"east", "north"}
    for name, v in s["sites"].items():
        mine = js[js["site"] == name]
        moved = mine.loc[mine["transfer_s"] > 0, "transfer_s"]
        assert len(mine) and work[name]["jobs"] == f"{len(mine):,}"
        assert work[name]["wait p95"] == format_duration(float(mine["wait_s"].quantile(0.95)))
        assert work[name]["transfers (mean delay)"] == (f"{len(moved):,} ({format_duration(float(moved.mean()))})"
                                                        if len(moved) else "0")
        kw = timeline[f"site_power_kw:{name}"].to_numpy(float)
        energy_kwh = float((kw[:-1] * np.diff(timeline["time_s"].to_numpy(float))).sum()) / HOUR
        assert energy[name]["energy"] == f"{energy_kwh / 1000:,.1f} MWh"
        assert energy[name]["carbon"] == f"{v['carbon_tco2e']:,.1f} tCO2e"
    east = energy["east"]
    assert east["cap"] == "60 kW" and energy["north"]["cap"] == "none"
    assert east["peak power"] == f"{timeline['site_power_kw:east'].max():,.0f} kW"
    assert east["hours over the cap"] == f"{hours_above(timeline, 'site_power_kw:east', 60.0):,.1f}"
    moved = js["transfer_s"] > 0
    assert moved.any()  # cheapest-energy sends the jobs north, their data over the WAN
    wan = page.table("Sites: wide-area links")
    assert wan == [{"link": "east-north", "moved": f"{moved.sum() * 200 / 1e3:,.2f} TB", "transfers": f"{moved.sum():,}"}]
    assert "Sites: power drawn against the cap" in page.sections


def test_fragmented_chips_follow_the_utilisation_figure(torus):
    page = Page(render_report(torus))
    order = list(page.sections)
    assert order.index("Fragmented TPU chips") == order.index("Utilisation and queue") + 1
    caption = page.sections["Fragmented TPU chips"]["captions"][0]
    s = torus.summary
    assert f"{s['fragmented_chips_mean']:,.1f} on average ({s['fragmented_chip_hours']:,.0f} chip-hours), " \
           f"at most {torus.timeline['fragmented_chips'].max():,.0f}" in caption


def test_the_report_is_the_same_bytes_rendered_again_and_from_the_written_files(combined, torus, tmp_path):
    for name, res in (("combined", combined), ("torus", torus)):
        res.write(tmp_path / name)
        res.report(tmp_path / f"{name}.html")
        assert CliRunner().invoke(main, ["report", str(tmp_path / name)]).exit_code == 0
        once = (tmp_path / f"{name}.html").read_bytes()
        assert (tmp_path / name / "report.html").read_bytes() == once
        assert render_report(Results.read(tmp_path / name)).encode() == once


def test_capsim_run_prints_the_site_network_and_fragmentation_headlines(combined, torus, tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(combined_scenario()))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(TORUS))
    text = CliRunner().invoke(main, ["run", str(tmp_path / "c.yaml"), "--no-progress"]).output
    top = combined.summary["network_busiest_links"][0]
    assert f"{top['pool']} {top['link']}: {top['mean_utilisation']:.1%} / {top['peak_utilisation']:.1%}" in text
    east = combined.summary["sites"]["east"]
    assert f"{east['energy_kwh'] / 1000:,.1f} MWh, {east['carbon_tco2e']:,.1f} tCO2e" in text
    assert f"{east['peak_kw']:,.0f} / 60 kW ({east['hours_over_cap']:,.1f})" in text
    text = CliRunner().invoke(main, ["run", str(tmp_path / "t.yaml"), "--no-progress"]).output
    s = torus.summary
    assert f"fragmented TPU chips mean (chip-hours)  {s['fragmented_chips_mean']:,.1f} (" in text
