"""How fast the command line starts: wall time of `capsim --help`, `capsim run --help` and one
`capsim predict`, each in a fresh process, the median of `--repeat` runs (and the fastest).

    python benchmarks/cli_start.py [--repeat 5]

Commands defined with their concern (predict, sweep, plan, ...) load only when they run, and
`import simulator` resolves its public names on first use, so a command imports what it needs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "capsim --help": ["--help"],
    "capsim run --help": ["run", "--help"],
    "capsim predict (8B on 8 H100)": ["predict", "--model", "llama3-8b", "--device", "h100-sxm", "--gpus", "8",
                                      "--global-batch", "64"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):  # interleaved: a slow moment of the machine hits every command alike
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "simulator.cli", *argv], check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    print(f"{'command':<32} {'median s':>9} {'fastest s':>10}")
    for name, ts in times.items():
        print(f"{name:<32} {statistics.median(ts):>9.2f} {min(ts):>10.2f}")


if __name__ == "__main__":
    main()
