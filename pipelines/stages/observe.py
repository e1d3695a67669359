"""``latentops observe``: synthetic sensor observations of a trajectory of a Well dataset,
for twin experiments; ``latentops validate-observations``: check an observation file
against the dataset it observes (``pipelines.data.observations`` has the format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.config import DataConfig
from pipelines.data.observations import ObservationError, Observations, place, read_checked, sample, sensor_count
from pipelines.data.windows import WellWindows, trajectories

__all__ = ["run", "validate"]


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
