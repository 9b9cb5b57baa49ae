"""`capsim calibrate`: measure kernels here and write them into a profile YAML."""

from __future__ import annotations

import re
from pathlib import Path

import click

from simulator.errors import CapsimError


@click.command("calibrate")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu")
@click.option("--backend", type=click.Choice(["numpy", "torch"]), default="numpy")
@click.option("--out", "out", default=None,
              help="Profile YAML to update or create (default: calibrated-<device>.yaml in the current folder).")
@click.option("--quick", is_flag=True, help="A small grid (seconds, for tests and smoke runs).")
def calibrate(device, backend, out, quick):
    """Run GEMM, copy-bandwidth, attention (and all-reduce, with several ranks) micro-benchmarks."""
    from simulator.calibrate.fit import load_yaml, merge_measurements, new_profile, write_profile_atomic

    try:
        if backend == "numpy":
            if device != "cpu":
                raise CapsimError("the numpy backend measures the CPU; use --backend torch for cuda", where="--device")
            from simulator.calibrate.bench_numpy import run_all

            results = run_all(quick=quick)
        else:
            from simulator.calibrate.bench_torch import run_all

            results = run_all(device=device, quick=quick)
        path = Path(out) if out else Path(f"calibrated-{device}.yaml")
        if path.is_file():
            profile = load_yaml(path)
        else:
            profile = new_profile(re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()), results)
        written = write_profile_atomic(path, merge_measurements(profile, results))
    except CapsimError as exc:
        raise click.ClickException(str(exc)) from None
    best = max(results["gemm"], key=lambda g: g["tflops"])
    click.echo(f"{results['device_name']} ({results['backend']}): best GEMM {best['tflops']:.3f} TFLOP/s "
               f"at {best['m']}x{best['n']}x{best['k']} {best['dtype']}, copy "
               f"{max(h['gbs'] for h in results['hbm']):.1f} GB/s")
    click.echo(f"wrote {written}")
