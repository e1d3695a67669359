"""Stage ``simulate``: the built-in dataset ``euler_mini``, made by Clawpack.

Follows The Well's ``euler_multi_quadrants`` recipe at a small resolution: the 2-D Euler
equations of an ideal gas on [0, 1]^2,

    rho_t + div(rho u) = 0,   (rho u)_t + div(rho u u^T + p I) = 0,   E_t + div(u (E + p)) = 0,
    p = (gamma - 1) (E - rho |u|^2 / 2),

solved by Clawpack's Roe-type ``euler_4wave_2D`` Riemann solver (MC limiter, transverse
waves) from random piecewise-constant states on a grid of blocks ("quadrants"), with
gamma drawn from The Well's ten values and open (extrapolation) or periodic boundaries.
``n_steps`` frames are stored ``dt`` apart: fields ``energy``, ``density``, ``pressure``
(``t0_fields``) and ``momentum`` (``t1_fields``).

Every trajectory slot has its own random stream, ``default_rng([seed, split, index,
attempt])``: gamma and boundary come from attempt 0; a run that goes non-finite or
non-physical (density or pressure <= 0, which some random quadrant states produce with
the Roe solver) is redrawn with the next attempt. The output is therefore the same bytes
for the same seed, whatever the number of workers.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipelines.data.euler import conserved, is_physical, solve, to_well_fields
from pipelines.data.validate import ensure_valid
from pipelines.data.welldata import SPLITS, WellFile, write_stats, write_well_file
from pipelines.io import atomic_path, write_yaml
from pipelines.options import add_quiet, section
from pipelines.settings.simulate import SimulateConfig

log = logging.getLogger(__name__)


class SimulationError(RuntimeError):
    """A trajectory stayed non-physical after every allowed redraw."""


@dataclass(frozen=True)
class Slot:
    """One trajectory to simulate: its split, index and the stage configuration."""

    split: int
    index: int
    cfg: SimulateConfig

    def rng(self, attempt: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.split, self.index, attempt])

    def parameters(self) -> tuple[float, str]:
        """(gamma, boundary) of this slot: fixed by attempt 0, kept across redraws."""
        rng = self.rng(0)
        gamma = float(self.cfg.gammas[rng.integers(len(self.cfg.gammas))])
        boundary = self.cfg.boundaries[rng.integers(len(self.cfg.boundaries))]
        return gamma, boundary


@dataclass
class Trajectory:
    slot: Slot
    gamma: float
    boundary: str
    fields: dict[str, np.ndarray]  # name -> (T, X, Y) or (T, X, Y, 2), float32
    redraws: int


def draw_quadrants(rng: np.random.Generator, cfg: SimulateConfig) -> np.ndarray:
    """Random piecewise-constant primitive state on a ``kx x ky`` grid of blocks.

    Returns ``(4, N, N)``: density, x-velocity, y-velocity, pressure at cell centres.
    Block counts per axis are drawn from ``cfg.quadrants``, the interior split positions
    uniformly in (0.1, 0.9), and each block's state uniformly in the configured ranges.
    """
    centres = (np.arange(cfg.resolution) + 0.5) / cfg.resolution

    def blocks() -> tuple[np.ndarray, int]:
        k = int(rng.integers(cfg.quadrants[0], cfg.quadrants[1] + 1))
        splits = np.sort(rng.uniform(0.1, 0.9, size=k - 1))
        return np.searchsorted(splits, centres), k  # block index of each cell (N,), count

    (bx, kx), (by, ky) = blocks(), blocks()
    ranges = (cfg.density, cfg.velocity, cfg.velocity, cfg.pressure)
    values = np.stack([rng.uniform(lo, hi, size=(kx, ky)) for lo, hi in ranges])  # (4, kx, ky)
    return values[:, bx[:, None], by[None, :]]  # (4, N, N)


def simulate_slot(slot: Slot) -> Trajectory:
    """Simulate one slot, redrawing its initial state until the run is physical."""
    gamma, boundary = slot.parameters()
    for attempt in range(slot.cfg.max_redraws + 1):
        primitive = draw_quadrants(slot.rng(attempt + 1), slot.cfg)
        try:
            fields = to_well_fields(solve(conserved(primitive, gamma), gamma, boundary, slot.cfg.dt, slot.cfg.n_steps - 1,
                                                 slot.cfg.cfl), gamma)
        except Exception as error:  # the solver gave up (e.g. a CFL it could not meet)
            log.debug("slot %s attempt %d failed: %s", slot, attempt, error)
            continue
        if is_physical(fields):
            fields32 = {k: v.astype(np.float32) for k, v in fields.items()}
            return Trajectory(slot, gamma, boundary, fields32, redraws=attempt)
    raise SimulationError(
        f"{SPLITS[slot.split]} trajectory {slot.index}: still non-physical after "
        f"{slot.cfg.max_redraws} redraws; narrow simulate.density/pressure/velocity or raise "
        "simulate.max_redraws"
    )


def _file_name(dataset: str, boundary: str, gamma: float) -> str:
    return f"{dataset}_{boundary}BC_gamma_{gamma:g}.hdf5"


def write_split(root: Path, split: str, trajectories: list[Trajectory], cfg: SimulateConfig) -> list[Path]:
    """Group a split's trajectories by (boundary, gamma), one The Well file per group, as
    in The Well (gamma is a constant scalar of each file)."""
    groups: dict[tuple[str, float], list[Trajectory]] = defaultdict(list)
    for trajectory in trajectories:
        groups[(trajectory.boundary, trajectory.gamma)].append(trajectory)
    n = cfg.resolution
    centres = ((np.arange(n) + 0.5) / n).astype(np.float32)
    paths = []
    for (boundary, gamma), members in sorted(groups.items()):
        stacked = {k: np.stack([t.fields[k] for t in members]) for k in members[0].fields}
        path = root / "data" / split / _file_name(cfg.dataset, boundary, gamma)
        write_well_file(path, WellFile(
            dataset_name=cfg.dataset,
            time=np.arange(cfg.n_steps, dtype=np.float32) * np.float32(cfg.dt),
            x=centres,
            y=centres,
            boundary=boundary,
            parameters={"gamma": gamma},
            t0={k: stacked[k] for k in ("energy", "density", "pressure")},
            t1={"momentum": stacked["momentum"]},
        ))
        paths.append(path)
    return paths


def run(cfg: SimulateConfig, output: str | Path | None = None, progress: bool = True) -> dict[str, object]:
    """Simulate every split and write the dataset directory atomically (built under a
    temporary name, renamed when complete), with ``stats.yaml`` over the train split.

    Returns a summary: trajectories, redraws, files and seconds.
    """
    output = Path(output or cfg.output)
    slots = [
        Slot(split, index, cfg)
        for split, name in enumerate(SPLITS)
        for index in range(getattr(cfg.trajectories, name))
    ]
    workers = cfg.workers or os.cpu_count() or 1
    start = time.perf_counter()
    results: list[Trajectory] = []
    bar = tqdm(total=len(slots), desc=f"simulate {cfg.dataset} {cfg.resolution}^2", unit="traj",
               disable=not progress)
    with bar:
        if workers == 1:
            for slot in slots:
                results.append(simulate_slot(slot))
                bar.update()
        else:
            with multiprocessing.get_context("fork").Pool(min(workers, len(slots))) as pool:
                for trajectory in pool.imap(simulate_slot, slots):
                    results.append(trajectory)
                    bar.update()
    redraws = sum(t.redraws for t in results)
    with atomic_path(output) as tmp:
        files = []
        for split, name in enumerate(SPLITS):
            files += write_split(tmp, name, [t for t in results if t.slot.split == split], cfg)
        write_stats(tmp, "train")
        ensure_valid(tmp)  # never publish a dataset the loaders would refuse
    summary = {
        "trajectories": len(results),
        "redrawn": sum(t.redraws > 0 for t in results),
        "redraws": redraws,
        "files": len(files),
        "seconds": round(time.perf_counter() - start, 2),
    }
    return summary


# --------------------------------------------------------------------------- latentops simulate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Simulate the 2-D Euler multi-quadrant dataset with Clawpack in The Well's format, with "
                          "stats.yaml over the train split. Writes atomically.")
    add_quiet(parser)
    parser.add_argument("--output", help="dataset directory (default: simulate.output)")
    parser.add_argument("--workers", type=int, help="processes (default: simulate.workers; 0 = all cores)")
    parser.add_argument("--summary", help="also write the run summary (counts, redraws, seconds) as YAML here")


def main(args: argparse.Namespace) -> int:
    overrides = {"workers": args.workers} if args.workers is not None else {}
    cfg = section(args, SimulateConfig, "simulate", overrides)
    output = Path(args.output or cfg.output)
    summary = run(cfg, output, progress=not args.quiet)
    print(f"simulate: {summary['trajectories']} trajectories in {summary['files']} files under {output} "
          f"in {summary['seconds']} s; {summary['redrawn']} redrawn ({summary['redraws']} redraws) "
          "after going non-finite or non-physical")
    if args.summary:
        write_yaml(args.summary, summary)
    return 0
