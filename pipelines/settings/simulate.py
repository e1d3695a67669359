"""Settings of the built-in dataset: ``simulate:`` (Clawpack runs of The Well's
``euler_multi_quadrants`` recipe)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.settings import check


#: The ten heat-capacity ratios of The Well's ``euler_multi_quadrants``.
WELL_EULER_GAMMAS: tuple[float, ...] = (
    1.13, 1.22, 1.3, 1.33, 1.365, 1.4, 1.404, 1.453, 1.597, 1.76,
)


@dataclasses.dataclass(frozen=True)
class Splits:
    """Number of trajectories per split."""

    train: int
    valid: int
    test: int

    def validate(self, key: str) -> None:
        for name, value in dataclasses.asdict(self).items():
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """``simulate:`` section: the built-in Clawpack Euler dataset (The Well's
    ``euler_multi_quadrants`` recipe at a small resolution)."""

    dataset: str
    output: str
    resolution: int
    n_steps: int
    dt: float
    trajectories: Splits
    seed: int
    workers: int  # 0 = all cores
    boundaries: tuple[Literal["open", "periodic"], ...]
    gammas: tuple[float, ...]
    quadrants: tuple[int, int]  # min, max blocks per axis
    density: tuple[float, float]
    pressure: tuple[float, float]
    velocity: tuple[float, float]
    cfl: float
    max_redraws: int

    def validate(self, key: str) -> None:
        check(self.dataset.replace("_", "").isalnum(), f"{key}.dataset",
              f"must be letters, digits and underscores, got {self.dataset!r}")
        check(self.resolution >= 8, f"{key}.resolution", f"must be >= 8, got {self.resolution}")
        check(self.n_steps >= 2, f"{key}.n_steps", f"must be >= 2, got {self.n_steps}")
        check(self.dt > 0, f"{key}.dt", f"must be > 0, got {self.dt}")
        self.trajectories.validate(f"{key}.trajectories")
        check(self.workers >= 0, f"{key}.workers", f"must be >= 0 (0 = all cores), got {self.workers}")
        check(len(self.boundaries) >= 1, f"{key}.boundaries", "needs at least one of open, periodic")
        check(len(self.gammas) >= 1 and all(g > 1 for g in self.gammas), f"{key}.gammas",
              f"needs at least one value > 1, got {list(self.gammas)}")
        lo, hi = self.quadrants
        check(1 <= lo <= hi, f"{key}.quadrants", f"must be [min, max] with 1 <= min <= max, got {[lo, hi]}")
        for name in ("density", "pressure", "velocity"):
            lo_, hi_ = getattr(self, name)
            check(lo_ <= hi_, f"{key}.{name}", f"must be [low, high] with low <= high, got {[lo_, hi_]}")
        for name in ("density", "pressure"):
            check(getattr(self, name)[0] > 0, f"{key}.{name}", "must be positive")
        check(0 < self.cfl <= 1, f"{key}.cfl", f"must be in (0, 1], got {self.cfl}")
        check(self.max_redraws >= 0, f"{key}.max_redraws", f"must be >= 0, got {self.max_redraws}")
