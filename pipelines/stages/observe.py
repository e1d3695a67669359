"""``latentops observe``: synthetic sensor observations of a trajectory of a Well dataset,
for twin experiments; ``latentops validate-observations``: check an observation file
against the dataset it observes (``pipelines.data.observations`` has the format)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipelines import layout
from pipelines.data.observations import ObservationError, Observations, place, read_checked, sample, sensor_count
from pipelines.data.windows import WellWindows, trajectories
from pipelines.options import section
from pipelines.settings.data import DataConfig

__all__ = ["run", "validate", "add_arguments", "main", "add_validate_observations_arguments", "validate_observations_main"]


def _trajectory(data: DataConfig, split: str, trajectory: int) -> tuple[WellWindows, np.ndarray]:
    windows = trajectories(data, split)
    if not 0 <= trajectory < len(windows):
        raise ObservationError(f"--trajectory {trajectory}: the {split} split has trajectories 0..{len(windows) - 1}")
    states = windows.normalizer.denormalize(windows[trajectory]["x"], dim=0)  # (C, T, H, W), physical
    return windows, states.movedim(1, 0).numpy()  # (T, C, H, W)


def run(data: DataConfig, output: str | Path, split: str = "test", trajectory: int = 0, fraction: float = 0.01,
        sensors: int | None = None, fields: list[str] | None = None, every: int = 4, noise: float = 0.1,
        seed: int = 0) -> Observations:
    """Observe trajectory ``trajectory`` of ``split`` at ``sensors`` grid points (default:
    ``fraction`` of them, at least one) and write the HDF5 file ``output``."""
    windows, states = _trajectory(data, split, trajectory)
    if sensors is None:
        sensors = sensor_count(fraction, states.shape[-2:])
    index = place(sensors, states.shape[-2:], seed)
    observations = sample(states, windows.channels, fields or windows.channels, index, every, noise, seed,
                          windows.dataset_name)
    observations.write(output)
    return observations


def validate(path: str | Path, data: DataConfig, split: str = "test", trajectory: int = 0) -> Observations:
    """Read ``path`` and check it against trajectory ``trajectory`` of ``split``."""
    windows, states = _trajectory(data, split, trajectory)
    return read_checked(path, windows.dataset_name, windows.channels, states.shape[-2:], states.shape[0])


# --------------------------------------------------------------------------- latentops observe, validate-observations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Draw sensor positions on the grid of data.root, read the chosen fields of one trajectory there "
        "every EVERY stored steps, add Gaussian noise of NOISE times each field's standard deviation, and "
        "write the observation file (HDF5; the format is in pipelines/data/observations.py).")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fraction", type=float, default=0.01, help="share of grid points with a sensor "
                                                                     "(default: %(default)s)")
    group.add_argument("--sensors", type=int, help="number of sensor positions instead of --fraction")
    parser.add_argument("--fields", nargs="+", help="fields the sensors read (default: every field)")
    parser.add_argument("--every", type=int, default=4, help="observe every N-th stored step (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=0.1, help="noise std relative to each field's std "
                                                                 "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="observation file (default: data/observations/<split>_<trajectory>.h5)")


def main(args: argparse.Namespace) -> int:
    data = section(args, DataConfig, "data")
    output = args.output or layout.observations(args.split, args.trajectory)
    found = run(data, output, args.split, args.trajectory, args.fraction, args.sensors, args.fields, args.every,
                args.noise, args.seed)
    sensors = len(set(map(tuple, found.index.tolist())))
    print(f"observe: {args.split} trajectory {args.trajectory}: {sensors} sensor position(s), fields "
          f"{sorted(set(found.fields))}, {len(found.times)} times -> {output}")
    return 0


def add_validate_observations_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Read FILE (HDF5 or CSV) and check it against a trajectory of data.root: known fields, "
                          "sensors inside the grid, times inside the trajectory, consistent shapes. Exit status 2 "
                          "with the problem named otherwise.")
    parser.add_argument("file", help="observation file (.h5, .hdf5 or .csv)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")


def validate_observations_main(args: argparse.Namespace) -> int:
    found = validate(args.file, section(args, DataConfig, "data"), args.split, args.trajectory)
    missing = int((found.values != found.values).sum())  # NaN != NaN: the missing readings
    print(f"{args.file}: OK ({len(found.fields)} sensor readings per time, {len(found.times)} times, "
          f"{missing} missing)")
    return 0
