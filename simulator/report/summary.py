"""A run's summary and its table by period as rows in the units a planner reads (hours, %, MWh, dollars):
what the CLI prints and the report shows; and a metric's mean over seeds with its interval, as the
sweep and plan commands print it."""

from __future__ import annotations

import math

import pandas as pd

from simulator.units import format_duration


def summary_rows(s: dict) -> list[tuple[str, str]]:
    """The summary as (label, value) rows in planners' units: the CLI's table and the report's. A
    summary over seeds (`capsim run --seeds`) shows each figure as mean ± the half-width of its 95%
    interval (`<key>_ci95`)."""
    def fig(key: str, fmt, v: dict = s) -> str:
        """v[key] (the summary's, or a service's or site's figures), with its interval over seeds."""
        ci = v.get(f"{key}_ci95")
        return fmt(v[key]) + (f" ± {fmt(ci)}" if ci is not None and not math.isnan(ci) and "seeds" in s else "")

    def count(x: float) -> str:
        return f"{x:,.0f}" if float(x).is_integer() or abs(x) >= 100 else f"{x:,.1f}"

    def pct(x: float) -> str:
        return f"{x:.1%}"

    seeds = s.get("seeds")
    seed_text = (f"seeds {seeds[0]}–{seeds[-1]}, mean ± 95% interval" if seeds and len(seeds) > 1
                 else f"seed {s.get('seed')}")
    rows = [
        ("scenario", f"{s.get('scenario')} ({seed_text}, policy {s.get('policy')})"),
        ("GPUs", f"{s.get('gpus_total', 0):,.0f}"),
        *([("peak dense compute", peak_text(s))] if "peak_pflops_bf16" in s else []),
        ("jobs submitted / completed", f"{fig('jobs_submitted', count)} / {fig('jobs_completed', count)}"
         + (f" ({fig('jobs_rejected', count)} rejected)" if s.get("jobs_rejected") else "")),
        ("queueing delay mean / p50", f"{fig('mean_wait_s', format_duration)} / {fig('p50_wait_s', format_duration)}"),
        ("queueing delay p95 / p99", f"{fig('p95_wait_s', format_duration)} / {fig('p99_wait_s', format_duration)}"),
        ("mean job completion time", fig("mean_jct_s", format_duration)),
        ("GPU utilisation", fig("gpu_utilization", pct)),
        ("makespan", fig("makespan_s", format_duration)),
    ]
    if "energy_kwh" in s:
        rows.append(("energy (mean power)", f"{fig('energy_kwh', lambda x: f'{x / 1000:,.1f}')} MWh "
                     f"({fig('mean_power_kw', lambda x: f'{x:,.0f}')} kW)"))
    if "burst_gpu_hours" in s:
        rows.append(("cloud burst (jobs)", f"{fig('burst_gpu_hours', count)} GPU-hours ({fig('burst_jobs', count)})"
                     + (f", ${fig('burst_usd', count)}" if "burst_usd" in s else "")))
    if "cost_usd" in s:
        rows.append(("cost (devices + energy" + (" + egress)" if "egress_usd" in s else ")"), f"${fig('cost_usd', count)}"))
    if "network_delay_gpu_hours" in s:
        rows.append(("network contention (jobs slowed)", f"{fig('network_delay_gpu_hours', count)} GPU-hours "
                     f"lost ({fig('network_delayed_jobs', count)})"))
    top = (s.get("network_busiest_links") or [{}])[0]
    if "peak_utilisation" in top:  # a run written before peaks were recorded shows none
        rows.append(("busiest network link: mean / peak (hours above 90%)",
                     f"{top['pool']} {top['link']}: {top['mean_utilisation']:.1%} / {top['peak_utilisation']:.1%} "
                     f"({top['hours_above_90pct']:,.1f})" + (f", seed {s['seed']}'s" if seeds else "")))
    if "fragmented_chips_mean" in s:
        rows.append(("fragmented TPU chips mean (chip-hours)", f"{fig('fragmented_chips_mean', lambda x: f'{x:,.1f}')} "
                     f"({fig('fragmented_chip_hours', count)})"))
    if "fragmented_gpus_mean" in s:
        rows.append(("fragmented shared GPUs mean (GPU-hours; on shared GPUs)",
                     f"{fig('fragmented_gpus_mean', lambda x: f'{x:,.2f}')} ({fig('fragmented_gpu_hours', count)}; "
                     f"{fig('fragmented_shared_gpu_hours', count)})"))
    for name, v in (s.get("sites") or {}).items():
        rows += _site_rows(name, v, lambda key, fmt, v=v: fig(key, fmt, v), count, pct)
    if "failures" in s:
        rows.append(("node failures (job interruptions)",
                     f"{fig('failures', count)} ({fig('failure_interruptions', count)})"))
    if s.get("preemptions"):
        rows.append(("preemptions (GPU-hours lost)",
                     f"{fig('preemptions', count)} ({fig('lost_gpu_hours', lambda x: f'{x:,.1f}')})"))
    for name, v in (s.get("services") or {}).items():
        def sfig(key: str, fmt, v=v) -> str:
            return fig(key, fmt, v)

        def ms(x: float, digits: int = 1) -> str:
            return f"{x * 1e3:,.{digits}f} ms"

        rows.append((f"service {name}: requests done / all",
                     f"{sfig('requests_completed', count)} / {sfig('requests', count)}"))
        rows.append((f"service {name}: TTFT p50 / p99", f"{sfig('ttft_p50_s', ms)} / {sfig('ttft_p99_s', ms)}"))
        rows.append((f"service {name}: TPOT p50 / p99", f"{sfig('tpot_p50_s', lambda x: ms(x, 2))} / "
                     f"{sfig('tpot_p99_s', lambda x: ms(x, 2))}"))
        rows.append((f"service {name}: tokens/s (replica-hours)",
                     f"{sfig('tokens_per_s', count)} ({sfig('replica_hours', lambda x: f'{x:,.1f}')})"))
        if "scale_ups" in v:
            rows.append((f"service {name}: replicas mean / peak (scale-ups, -downs)",
                         f"{sfig('replicas_mean', lambda x: f'{x:,.1f}')} / {sfig('replicas_peak', count)} "
                         f"({sfig('scale_ups', count)}, {sfig('scale_downs', count)})"))
            rows.append((f"service {name}: training runs preempted (GPU-hours lost)",
                         f"{sfig('training_preemptions', count)} "
                         f"({sfig('training_gpu_hours_lost', lambda x: f'{x:,.1f}')})"))
        if "slo_attainment" in v:
            rows.append((f"service {name}: SLO attainment (goodput tokens/s)",
                         f"{sfig('slo_attainment', pct)} ({sfig('goodput_tokens_per_s', count)})"))
        if "energy_per_token_j" in v:
            rows.append((f"service {name}: energy per token (mean power)",
                         f"{sfig('energy_per_token_j', lambda x: f'{x:,.2f}')} J "
                         f"({sfig('mean_power_kw', lambda x: f'{x:,.1f}')} kW)"))
        if "usd_per_million_tokens" in v:
            rows.append((f"service {name}: cost per million tokens", f"${sfig('usd_per_million_tokens', lambda x: f'{x:,.2f}')}"))
    return rows


def _site_rows(name: str, v: dict, fig, count, pct) -> list[tuple[str, str]]:
    """A site's headline figures (summary.json's sites.<name>); `fig(key, fmt)` formats one."""
    rows = [(f"site {name}: jobs, utilisation, mean wait", f"{fig('jobs', count)}, {fig('utilisation', pct)}, "
             f"{fig('mean_wait_s', format_duration)}"),
            (f"site {name}: energy, carbon, energy cost", f"{fig('energy_kwh', lambda x: f'{x / 1000:,.1f}')} MWh, "
             f"{fig('carbon_tco2e', lambda x: f'{x:,.1f}')} tCO2e, ${fig('energy_cost_usd', count)}")]
    def kw(x: float) -> str:
        return f"{x:,.0f}"

    if v.get("data_moved_tb"):
        rows.append((f"site {name}: data moved in", f"{fig('data_moved_tb', lambda x: f'{x:,.2f}')} TB"))
    if v.get("egress_tb"):
        rows.append((f"site {name}: data sent out, egress cost", f"{fig('egress_tb', lambda x: f'{x:,.2f}')} TB, "
                     f"${fig('egress_usd', count)}"))
    if "power_cap_kw" in v:
        rows.append((f"site {name}: peak power / cap (hours over)", f"{fig('peak_kw', kw)} / "
                     f"{fig('power_cap_kw', kw)} kW ({fig('hours_over_cap', lambda x: f'{x:,.1f}')})"))
    return rows


def one_sample_note(first: dict, second: dict | None) -> str:
    """What a single-seed run adds under its table: that it is one sample, and, given a quick second
    seed's summary, how far p95 wait moved when it moved a lot (by more than a quarter of the larger
    and more than 5 minutes)."""
    seed = first.get("seed")
    note = f"one sample (seed {seed}): capsim run --seeds 5 gives each figure with its 95% interval"
    if second is None:
        return note
    a, b = first["p95_wait_s"], second["p95_wait_s"]
    if abs(a - b) > max(0.25 * max(a, b), 300.0):
        return (f"one sample (seed {seed}): p95 wait moved a lot with the next seed ({format_duration(a)} here, "
                f"{format_duration(b)} with seed {second.get('seed')}); capsim run --seeds 5 gives each figure "
                "with its 95% interval")
    return note


def flops_text(pflops: float) -> str:
    """An aggregate peak in the unit vendors quote: EFLOP/s from 1,000 PFLOP/s (two decimals), else
    PFLOP/s (three significant digits)."""
    if pflops >= 1000:
        return f"{pflops / 1000:.2f} EFLOP/s"
    return f"{pflops:,.0f} PFLOP/s" if pflops >= 100 else f"{pflops:.3g} PFLOP/s"


def peak_text(s: dict) -> str:
    """`506 PFLOP/s BF16, 1.01 EFLOP/s FP8` from a summary's peak_pflops_* keys."""
    return ", ".join(f"{flops_text(s[f'peak_pflops_{p}'])} {p.upper()}" for p in ("bf16", "fp8")
                     if f"peak_pflops_{p}" in s)


def memory_text(gib: float) -> str:
    return f"{gib / 1024:,.1f} TiB" if gib >= 1024 else f"{gib:,.0f} GiB"


def power_text(kw: float) -> str:
    return f"{kw / 1000:,.2f} MW" if kw >= 1000 else f"{kw:,.0f} kW"


def capacity_rows(pools: list) -> list[dict[str, str]]:
    """Each pool's and the cluster's devices, aggregate dense peak by precision, HBM and power (every
    device idle – every device busy), as `capsim scenario show` prints them. `pools`: the
    models.capacity.PoolCapacity of a scenario. The cluster is the owned pools in service, one row
    from the start and one from each time an expansion enters service or a pool retires."""
    from simulator.models.capacity import total

    fp8 = any("fp8" in p.peak_pflops for p in pools)

    def row(label: str, device: str, window: str, figures: dict) -> dict[str, str]:
        peaks = figures["peak_pflops"]
        out = {"": label, "device": device, "devices": f"{figures['devices']:,}", "in service": window,
               "peak BF16": flops_text(peaks["bf16"])}
        if fp8:
            out["peak FP8"] = flops_text(peaks["fp8"]) if "fp8" in peaks else "–"
        out["HBM"] = memory_text(figures["memory_gib"])
        out["power idle – busy"] = f"{power_text(figures['idle_kw'])} – {power_text(figures['busy_kw'])}"
        return out

    def window(p) -> str:
        if p.burst:
            return "burst (rented, not in the cluster)"
        since = "from the start" if p.available_from <= 0 else f"from {format_duration(p.available_from)}"
        return since + ("" if p.available_until is None else f" until {format_duration(p.available_until)}")

    rows = [row(p.name, p.device, window(p), total([p])) for p in pools]
    owned = [p for p in pools if not p.burst]
    changes = sorted({0.0, *(p.available_from for p in owned),
                      *(p.available_until for p in owned if p.available_until is not None)})
    for t in changes:
        live = [p for p in owned if p.available_from <= t and (p.available_until is None or p.available_until > t)]
        label = "cluster" if len(changes) == 1 else f"cluster from {format_duration(t)}"
        rows.append(row(label, ", ".join(dict.fromkeys(p.device for p in live)) or "–", "", total(live)) if live
                    else {"": label, "device": "–", "devices": "0"})
    return rows


def period_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """A run's table by period (Results.by_period) as rows of column header -> text; a dash where a
    period had no completed job. Cost only for a costed run."""
    def wait(w: float) -> str:
        return format_duration(w) if pd.notna(w) else "–"

    first = table["start_s"].iloc[0] if len(table) else 0.0
    rows = []
    for r in table.itertuples(index=False):
        row = {"period": str(int(r.period)), "from": format_duration(r.start_s - first),
               "jobs submitted": f"{int(r.jobs_submitted):,}", "wait p50": wait(r.p50_wait_s),
               "wait p95": wait(r.p95_wait_s), "GPU utilisation": f"{r.gpu_utilization:.1%}",
               "energy MWh": f"{r.energy_kwh / 1000:,.1f}" if pd.notna(r.energy_kwh) else "–"}
        if "cost_usd" in table.columns:
            row["cost"] = f"${r.cost_usd:,.0f}"
        if "partial" in table.columns:
            row["note"] = period_flag_text(bool(r.partial), bool(r.drain_only))
        rows.append(row)
    return rows


def period_flag_text(partial: bool, drain_only: bool) -> str:
    """The label of a period that is not a whole period of demand (metrics/periods.py's flags)."""
    return ", ".join(text for flag, text in ((drain_only, "drain only"), (partial, "cut by the horizon")) if flag)


def period_note(width: int | None = None) -> str:
    """What the two period labels mean; wrapped to `width` columns for a console."""
    text = ("\"cut by the horizon\": the simulated span ends inside the period, so its utilisation, energy and cost "
            "cover only part of it; \"drain only\": it starts after the last submission, so no demand arrives in it "
            "and its figures are of the queue draining.")
    if width is None:
        return text
    import textwrap

    return textwrap.fill(text, width)


def estimate_text(metric: str, mean: float, ci: float) -> str:
    """`mean ± half-width` of a summary metric over seeds; the mean alone from one seed (ci NaN); a dash
    where no run had a value (a period in which no job was submitted)."""
    if math.isnan(mean):
        return "–"
    if math.isnan(ci):
        return metric_text(metric, mean)
    if abs(ci) < 1e-9:
        ci = 0.0
    return f"{metric_text(metric, mean, ci)} ± {metric_text(metric, ci, ci)}"


def fit_width(table: pd.DataFrame, width: int = 100, index: bool = True) -> str:
    """A table as text in at most `width` columns: when it is wider, its columns are split into
    blocks printed one under the other, each repeating the row labels (the index, or with
    index=False the first column)."""
    text = table.to_string(index=index)
    if max((len(line) for line in text.splitlines()), default=0) <= width or table.shape[1] <= 1:
        return text
    keep = [] if index else [table.columns[0]]
    rest = [c for c in table.columns if c not in keep]
    blocks, current = [], []
    for column in rest:
        trial = table[[*keep, *current, column]].to_string(index=index)
        if current and max(len(line) for line in trial.splitlines()) > width:
            blocks.append(current)
            current = []
        current.append(column)
    blocks.append(current)
    return "\n\n".join(table[[*keep, *b]].to_string(index=index) for b in blocks)


def metric_text(metric: str, value: float, ci: float | None = None) -> str:
    """One value of a summary metric (or of its paired difference, `<metric>_diff`) in a reader's units:
    durations for `*_s`, a percentage for utilisation, else a number. With `ci` (a 95% half-width) a
    plain number is rounded to the interval's second significant digit: digits the seeds cannot
    vouch for are not printed. Float noise (below 1e-9 of a second, of a percent, of a unit) is 0."""
    base = metric.removesuffix("_diff").rpartition(".")[2]  # a service's figure: services.chat.ttft_p99_s
    if abs(value) < 1e-9:
        value = 0.0
    if base.startswith(("ttft_", "tpot_", "e2e_")) and base.endswith("_s"):  # a request's latency: milliseconds
        return _rounded(value * 1e3, None if ci is None else ci * 1e3, " ms", 1)
    if base == "slo_attainment":
        return _rounded(value * 100, None if ci is None else ci * 100, "%", 2)
    if base.endswith("_s"):
        return format_duration(value)
    if base == "gpu_utilization":
        return _rounded(value * 100, None if ci is None else ci * 100, "%", 1)
    return _rounded(value, ci, "", None)


def _rounded(value: float, ci: float | None, suffix: str, default_decimals: int | None) -> str:
    """`value` with as many decimals as the interval warrants (two significant digits of `ci`), else
    the default (None: whole numbers from 1,000, four significant digits below)."""
    if ci is not None and math.isfinite(ci) and ci > 1e-9:
        decimals = 1 - math.floor(math.log10(ci))  # negative: round to tens, hundreds, ...
        return f"{round(value, decimals):,.{max(0, decimals)}f}{suffix}"
    if default_decimals is not None:
        return f"{value:.{default_decimals}f}{suffix}"
    return (f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}") + suffix


def target_text(target: dict) -> str:
    """A service target in words: `chat: ttft_p99_s at most 1,000 ms, tpot_p99_s at most 50 ms, over the
    busiest hour's requests`."""
    limits = [f"{m} at least {target[m]:.1%}" if m == "slo_attainment" else f"{m} at most {target[m] * 1e3:,.0f} ms"
              for m in target if m not in ("service", "window", "judged_on") and target[m] is not None]
    window = ("over the requests arriving in the busiest hour" if target.get("window", "peak_hour") == "peak_hour"
              else "over all the requests")
    return f"service {target['service']}: {', '.join(limits)}, {window}"
