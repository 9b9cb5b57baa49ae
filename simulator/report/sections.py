"""The run report's sections of optional features, each present only when the run has the feature: the
network's hot spots (a fat-tree, or a fabric that slowed jobs), the sites, and TPU slice fragmentation.
Every number comes from what the run wrote: summary.json, jobs.parquet and timeline.parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.features.network import FabricLinks
from simulator.features.sites import site_power_column
from simulator.network.fabric import link_column
from simulator.report.blocks import figure_block, table_block
from simulator.report.figures import ccdf_figure, series_figure
from simulator.units import format_duration

HOT = FabricLinks.HOT  # the utilisation above which a link is a hot spot
WORST = 10  # the jobs listed as the most slowed


def has_network(s: dict) -> bool:
    """A fat-tree fabric, or a fabric on which some job was slowed."""
    return "network_busiest_links" in s or bool(s.get("network_delayed_jobs"))


def contention_slowdown(jobs: pd.DataFrame) -> pd.Series:
    """Each completed job's running time over what it would have been uncontended, minus one: 0.25 is a
    job that ran 25% longer for the network (its time from start to end, less `network_delay_s`)."""
    done = jobs[jobs["status"] == "completed"]
    running = done["end_time"] - done["start_time"]
    clean = running - done["network_delay_s"]
    return (done["network_delay_s"] / clean.where(clean > 0)).fillna(0.0)


def link_rows(s: dict) -> list[dict]:
    """The busiest links; a dash for the figures a run written before they were recorded lacks."""
    def text(r: dict, key: str, fmt: str) -> str:
        return format(r[key], fmt) if key in r else "–"

    return [{"pool": r["pool"], "link": r["link"], "tier": r["link"].split()[0],
             "capacity": f"{r['capacity_gbs']:,.0f} GB/s", "moved": f"{r['tb_moved']:,.1f} TB",
             "mean utilisation": f"{r['mean_utilisation']:.1%}", "peak utilisation": text(r, "peak_utilisation", ".1%"),
             f"hours above {HOT:.0%}": text(r, "hours_above_90pct", ",.1f")}
            for r in s["network_busiest_links"]]


def worst_job_rows(jobs: pd.DataFrame, slowdown: pd.Series) -> list[dict]:
    worst = slowdown[slowdown > 0].sort_values(ascending=False, kind="stable").head(WORST)
    rows = []
    for i, share in worst.items():
        job = jobs.loc[i]
        row = {"job": str(job["job_id"]), "pool": str(job["pool"]), "GPUs": f"{int(job['gpus']):,}"}
        if "network_hops" in jobs:
            row["hops"] = str(int(job["network_hops"]))
        row.update({"time lost": format_duration(float(job["network_delay_s"])), "slowdown": f"+{share:.1%}"})
        rows.append(row)
    return rows


def network_sections(s: dict, jobs: pd.DataFrame, timeline: pd.DataFrame) -> list[dict]:
    """The busiest links (table and utilisation over time) and the jobs' contention slowdown."""
    sections = []
    links = s.get("network_busiest_links") or []
    if links:
        top = links[0]
        sections.append({"heading": "Network: the busiest links", "table": table_block(link_rows(s)),
                         "note": "The fat-tree links (leaf and pod uplinks and downlinks) that moved the most data. "
                                 "Mean utilisation is the data moved over the capacity for the whole run; the peak "
                                 f"and the hours above {HOT:.0%} are from the link's utilisation over time, which "
                                 "changes whenever the jobs crossing it start or end."})
        series = [(f"{r['pool']} {r['link']}", link_column(r["pool"], r["link"])) for r in links]
        if all(c in timeline for _, c in series):  # a run written before the columns were recorded has none
            hot = sum(r["hours_above_90pct"] for r in links)
            sections.append(figure_block(
                "Network: utilisation of the busiest links", series_figure(
                    timeline, series, "link utilisation (%, mean)", scale=100.0, level=(HOT, f"{HOT:.0%}")),
                "The share of each busiest link's capacity in use, averaged over short bins (peaks show lower "
                "than they were; a leaf's uplink and downlink often carry the same traffic, and one line hides "
                f"the other). The busiest, {top['pool']} {top['link']}, averaged {top['mean_utilisation']:.1%} "
                f"and peaked at {top['peak_utilisation']:.1%}; "
                + (f"these links spent {hot:,.1f} link-hours above {HOT:.0%}: the fabric's hot spots, where "
                   "jobs that span leaves are slowed." if hot > 0 else
                   f"none ran above {HOT:.0%}: the fabric had headroom.")))
    slowdown = contention_slowdown(jobs)
    slowed = int((slowdown > 0).sum())
    if len(slowdown):
        sections.append(figure_block(
            "Network: jobs' slowdown from contention", ccdf_figure(
                slowdown.to_numpy(float) * 100.0, "slowdown from network contention (% longer running)",
                "share of completed jobs at least this slow", f"{slowed / len(slowdown):.1%} of completed jobs "
                "were slowed by the network"),
            f"{slowed:,} of {len(slowdown):,} completed jobs ran longer because they shared fabric bandwidth "
            f"({s.get('network_delay_gpu_hours', 0.0):,.1f} GPU-hours lost in all); the curve is the share of "
            "jobs slowed by at least each amount (log scales). A long tail means a few large jobs bear the "
            "contention: rack-aware placement or less oversubscription is the remedy."))
    if slowed:
        sections.append({"heading": "Network: the most slowed jobs", "table": table_block(
            worst_job_rows(jobs, slowdown)),
            "note": "Slowdown: the job's running time (start to end) over that time less the seconds lost to "
                    "contention (network_delay_s), minus one. Hops: switch hops on the longest path between the "
                    "job's nodes (2 one leaf, 4 through the spine or a pod, 6 through the core)."})
    return sections


def site_rows(s: dict, jobs: pd.DataFrame) -> list[dict]:
    rows = []
    for name, v in s["sites"].items():
        mine = jobs[jobs["site"] == name]
        moved = mine.loc[mine["transfer_s"] > 0, "transfer_s"]
        rows.append({"site": name, "jobs": f"{v['jobs']:,.0f}", "mean wait": format_duration(v["mean_wait_s"]),
                     "wait p95": format_duration(float(mine["wait_s"].quantile(0.95))) if len(mine) else "–",
                     "utilisation": f"{v['utilisation']:.1%}", "GPU-hours": f"{v['gpu_hours']:,.0f}",
                     "data moved in": f"{v['data_moved_tb']:,.2f} TB",
                     "transfers (mean delay)": f"{len(moved):,} ({format_duration(float(moved.mean()))})"
                     if len(moved) else "0"})
    return rows


def site_energy_rows(s: dict) -> list[dict]:
    rows = []
    for name, v in s["sites"].items():
        row = {"site": name, "energy": f"{v['energy_kwh'] / 1000:,.1f} MWh",
               "carbon": f"{v['carbon_tco2e']:,.1f} tCO2e", "energy cost": f"${v['energy_cost_usd']:,.0f}"}
        capped = "power_cap_kw" in v
        row.update({"peak power": f"{v['peak_kw']:,.0f} kW" if capped else "–",
                    "cap": f"{v['power_cap_kw']:,.0f} kW" if capped else "none",
                    "hours over the cap": f"{v['hours_over_cap']:,.1f}" if capped else "–"})
        if "egress_usd" in v:  # some WAN link is priced: every site has it
            row["egress"] = f"{v['egress_tb']:,.2f} TB, ${v['egress_usd']:,.0f}"
        rows.append(row)
    return rows


def site_sections(s: dict, jobs: pd.DataFrame, timeline: pd.DataFrame) -> list[dict]:
    """Per-site work and energy tables, the wide-area links, and each site's power against its cap."""
    sites = s["sites"]
    sections = [{"heading": "Sites: work and waits", "table": table_block(site_rows(s, jobs)),
                 "note": "A job counts at the site it last ran at; its wait includes the time its input data spent "
                         "moving there (transfers: jobs whose data moved to this site, and the mean time from "
                         "sending to arrival)." + (" Wait p95 and transfers are the first seed's (jobs.parquet); "
                                                   "the rest are means over the seeds." if s.get("seeds") else "")},
                {"heading": "Sites: energy, carbon and power", "table": table_block(site_energy_rows(s)),
                 "note": "Energy is the site's IT load times its PUE; carbon and energy cost integrate it against "
                         "the site's hourly intensity and price. Peak power and the hours over the cap are from "
                         "its power over time (the cap is reported, not enforced)."}]
    if s.get("wan_links"):
        sections.append({"heading": "Sites: wide-area links", "table": table_block(
            [{"link": r["link"], "moved": f"{r['tb_moved']:,.2f} TB", "transfers": f"{r['transfers']:,}"}
             | ({"egress": f"${r.get('usd', 0.0):,.0f}"} if "egress_usd" in s else {}) for r in s["wan_links"]]),
            "note": "A transfer routed over several links counts on each; egress is billed to the site the "
                    "data leaves on each link."})
    series = [(name, site_power_column(name)) for name in sites if site_power_column(name) in timeline]
    if series:
        caps = {name: v["power_cap_kw"] for name, v in sites.items() if "power_cap_kw" in v}
        over = [f"{name} ({v['hours_over_cap']:,.1f} h)" for name, v in sites.items() if v.get("hours_over_cap")]
        sections.append(figure_block(
            "Sites: power drawn against the cap", series_figure(timeline, series, "power (kW, mean)", caps=caps),
            "Each site's power draw (IT load × PUE), averaged over short bins, with its cap as a dashed line. "
            + (f"Over the cap: {', '.join(over)}; the cap is not enforced in the run, so that is load the "
               "site could not have drawn as it stands." if over else
               "No site went over its cap." if caps else "No site has a power cap.")))
    return sections


def fragmentation_section(s: dict, timeline: pd.DataFrame) -> dict:
    """Fragmented TPU chips over time (features/slices.py)."""
    chips = timeline["fragmented_chips"].to_numpy(float)
    return figure_block(
        "Fragmented TPU chips", series_figure(timeline, [("fragmented chips", "fragmented_chips")],
                                              "fragmented chips (mean)"),
        "Free chips on the torus pools that the first queued job able to use them could not take, because no "
        f"free block of its slice shape covers them, averaged over short bins: {s['fragmented_chips_mean']:,.1f} "
        f"on average ({s['fragmented_chip_hours']:,.0f} chip-hours), at most {np.max(chips, initial=0):,.0f}. "
        "Chips that stay fragmented while jobs wait are capacity bought but not usable by those slice shapes.")
