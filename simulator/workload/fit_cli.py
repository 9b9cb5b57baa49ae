"""`capsim workload fit TRACE --format F --out PRESET.yaml`: fit a preset to a trace (registered on the
`workload` group by the lead: `workload.add_command(fit)`)."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from simulator.errors import CapsimError
from simulator.workload.traces import FORMATS, load_trace


@click.command("fit")
@click.argument("trace", type=click.Path(dir_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default=None,
              help="Trace format; guessed from the file name or first line when left out.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Preset YAML to write.")
@click.option("--name", default=None, help="Preset name (default: the output file's stem).")
@click.option("--lenient", is_flag=True, help="Skip and count malformed rows instead of stopping at the first.")
def fit(trace: str, fmt: str | None, out: str, name: str | None, lenient: bool) -> None:
    """Fit arrivals, GPUs per job and per-size duration distributions to TRACE; write a preset that a
    scenario uses with `{kind: preset, path: PRESET.yaml, until: 30d}`."""
    from simulator.workload.fitting import fit_preset

    out_path = Path(out)
    try:
        loaded = load_trace(trace, fmt, strict=not lenient)
        preset = fit_preset(loaded.jobs, name or out_path.stem, source=f"{trace} (format {loaded.format})")
    except (CapsimError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    out_path.write_text(f"# Fitted by capsim workload fit from {trace}\n"
                        + yaml.safe_dump(preset, sort_keys=False, width=110, default_flow_style=None))
    chosen = ", ".join(b["chosen"] for b in preset["fit"]["buckets"])
    click.echo(f"wrote {out_path}: {len(preset['classes'])} size bucket(s) ({chosen}), "
               f"{preset['arrival']['process']} arrivals at {preset['arrival']['rate_per_hour']:.3g}/h")
