"""Benchmark: `simulate` throughput (trajectories per second) at 64^2 and 128^2 on all
cores, measured side by side in one run, and the wall time of the default dataset.

    .venv/bin/python benchmarks/bench_simulate.py [--trajectories 8] [--skip-default]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from pipelines.settings import load_section
from pipelines.settings.simulate import SimulateConfig, Splits
from pipelines.stages import simulate

REPO = Path(__file__).resolve().parents[1]


def throughput(cfg: SimulateConfig, scratch: Path) -> tuple[float, float]:
    """(trajectories per second, seconds) for one full `simulate.run`, files included."""
    start = time.perf_counter()
    summary = simulate.run(cfg, scratch / f"r{cfg.resolution}", progress=False)
    seconds = time.perf_counter() - start
    return summary["trajectories"] / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=8, help="per resolution (default: %(default)s)")
    parser.add_argument("--skip-default", action="store_true", help="do not time the default dataset")
    args = parser.parse_args()

    base = load_section(SimulateConfig, "simulate", REPO / "params.yaml")
    n = args.trajectories
    small = dataclasses.replace(base, trajectories=Splits(max(1, n - 2), 1, 1))
    cores = base.workers or os.cpu_count()
    with tempfile.TemporaryDirectory() as scratch:
        rates = {}
        for resolution in (64, 128):
            rate, seconds = throughput(dataclasses.replace(small, resolution=resolution), Path(scratch))
            rates[resolution] = rate
            print(f"simulate {resolution:>3}^2: {rate:6.2f} trajectories/s ({n} trajectories in {seconds:.1f} s, {cores} workers)")
        print(f"cost ratio 128^2 / 64^2: {rates[64] / rates[128]:.1f}x per trajectory")
        if not args.skip_default:
            total = sum(dataclasses.asdict(base.trajectories).values())
            _, seconds = throughput(base, Path(scratch))
            verdict = "within" if seconds <= 180 else "OVER"
            print(f"default dataset ({total} trajectories at {base.resolution}^2): {seconds:.1f} s, "
                  f"{verdict} the 180 s budget ({seconds / 180:.2f} of it)")


if __name__ == "__main__":
    main()
