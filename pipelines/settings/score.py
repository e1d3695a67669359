"""How rollouts are scored: nested in ``train_emulator:`` and the ``tune:`` studies, and the
base of ``evaluate:``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from pipelines.settings import check


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """How rollouts are scored (``pipelines.evaluation.scoring``): the first ``trajectories``
    trajectories of ``split``, ``members`` ensemble members, metrics per lead-time window,
    power-spectrum RMSE in ``bands`` log-spaced bands."""

    split: Literal["train", "valid", "test"]
    trajectories: int  # first N trajectories of the split
    members: int  # ensemble members (stochastic emulators)
    lead_windows: tuple[tuple[int, int], ...]  # in stored time steps
    # optional (only evaluate: sets them in params.yaml), with its values
    bands: int = 3
    batch: int = 4  # trajectories forecast at once
    seed: int = 0

    @property
    def last_lead(self) -> int:
        return max(last for _, last in self.lead_windows)

    def validate(self, key: str) -> None:
        for name in ("trajectories", "members", "bands", "batch"):
            value = getattr(self, name)
            check(value >= 1, f"{key}.{name}", f"must be >= 1, got {value}")
        check(len(self.lead_windows) >= 1, f"{key}.lead_windows", "needs at least one [first, last] window")
        for i, (first, last) in enumerate(self.lead_windows):
            check(1 <= first <= last, f"{key}.lead_windows[{i}]",
                  f"must be [first, last] with 1 <= first <= last, got {[first, last]}")
