"""The metric names sweeps, run_seeds' tables and the statistics accept: a top-level summary key
(`p95_wait_s`) or one service's figure, `services.<service>.<key>` (summary["services"][service][key],
e.g. `services.chat.ttft_p99_s`). Which service figures exist depends on the service's settings (an
SLO, prefix caching, autoscaling, `cost:`), so names are checked against each point's scenario before
any run."""

from __future__ import annotations

from numbers import Real

from simulator.metrics.summary import SUMMARY_METRICS

SERVICE_PREFIX = "services."


def service_metric(name: str) -> tuple[str, str] | None:
    """`services.chat.ttft_p99_s` -> ('chat', 'ttft_p99_s'); None for any other name. A key has no dot,
    so a service name with dots in it still splits right."""
    if not name.startswith(SERVICE_PREFIX):
        return None
    service, dot, key = name[len(SERVICE_PREFIX):].rpartition(".")
    return (service, key) if dot and service and key else None


def metric_value(summary: dict, name: str):
    """The value `name` names in a run's summary; None where the summary has none."""
    parsed = service_metric(name)
    if parsed is None:
        return summary.get(name)
    return ((summary.get("services") or {}).get(parsed[0]) or {}).get(parsed[1])


def service_columns(summary: dict) -> dict:
    """Every number of every service in a summary, flat: {'services.chat.ttft_p99_s': 0.41, ...}."""
    return {f"{SERVICE_PREFIX}{service}.{key}": value
            for service, figures in (summary.get("services") or {}).items()
            for key, value in figures.items() if isinstance(value, Real) and not isinstance(value, bool)}


def service_catalogue(scenario) -> dict[str, list[str]]:
    """Each service of a validated scenario -> the keys of its figures (before any run)."""
    from simulator.features.serving import closed_loop_services, service_figure_names

    costed = getattr(scenario, "cost", None) is not None
    closed = closed_loop_services(getattr(scenario, "requests", None))
    return {svc.name: service_figure_names(svc, costed, svc.name in closed)
            for svc in getattr(scenario, "services", None) or []}


def unknown_metrics_text(names: list[str], scenario, at: str = "") -> str | None:
    """None when every one of `names` is a figure this scenario's runs will have; else one line naming the
    bad names (then `at`, where they were asked) and what exists: the summary keys, and each service with
    its figures."""
    catalogue = service_catalogue(scenario)
    bad = []
    for name in names:
        parsed = service_metric(name)
        if parsed is None and name not in SUMMARY_METRICS:
            bad.append(name)
        elif parsed is not None and parsed[1] not in catalogue.get(parsed[0], ()):
            bad.append(name)
    if not bad:
        return None
    text = f"unknown metric(s) {bad}{at}; expected a summary key ({', '.join(SUMMARY_METRICS)})"
    if not catalogue:
        return text + " (services.<service>.<key> names a service's figure, and this scenario has no services)"
    return text + " or services.<service>.<key> with " + "; ".join(
        f"service {name!r}: {', '.join(keys)}" for name, keys in catalogue.items())


def check_columns(runs, metrics: list[str], hint: str = "") -> None:
    """A ValueError in one line when a metric is not a column of `runs` (instead of pandas' KeyError)."""
    missing = [m for m in metrics if m not in runs.columns]
    if missing:
        held = [c for c in runs.columns if c in SUMMARY_METRICS or service_metric(c) is not None]
        raise ValueError(f"no metric {', '.join(map(repr, missing))} in these runs{hint}; they hold: {', '.join(held)}")
