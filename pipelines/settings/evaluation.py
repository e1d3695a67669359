"""Settings of evaluation and promotion: ``evaluate:`` and ``promote:``."""

from __future__ import annotations

import dataclasses

from models.kinds import emulator_kinds
from pipelines.evaluation.scorecard import HEADLINE, Scorecard
from pipelines.settings import check, check_names
from pipelines.settings.score import ScoreConfig


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(ScoreConfig):
    """``evaluate:`` section: how every registered version is scored, the same way for all."""

    # keyword-only, so that they can be required after the score's optional keys:
    confidence: float = dataclasses.field(kw_only=True)  # level of the bootstrap intervals and the findings' verdicts
    assimilation_trajectories: int = dataclasses.field(kw_only=True)  # the first N observed by each assimilator

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.assimilation_trajectories >= 1, f"{key}.assimilation_trajectories",
              f"must be >= 1, got {self.assimilation_trajectories}")
        check(0.5 <= self.confidence < 1, f"{key}.confidence", f"must be in [0.5, 1), got {self.confidence}")


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """The gate a candidate version must pass to become ``production`` of its registered
    model (``pipelines.stages.promote``). Lower ``metric`` is better."""

    metric: str  # a headline evaluation number against the truth, e.g. vrmse_61-100 or crps_61-100
    margin: float  # relative improvement over the current production required (0.05 = 5 %)
    probability: float  # paired-bootstrap probability that the candidate beats production, at least
    spread_skill: tuple[float, float]  # allowed spread-skill ratio of ensembles
    max_seconds: float  # latency ceiling: seconds per trajectory (all members, decoded)
    baselines: bool  # must beat the best trivial baseline on metric, with probability (emulators)

    def validate(self, key: str) -> None:
        check(bool(self.metric), f"{key}.metric", "must name an evaluation metric, e.g. vrmse_mean")
        check(Scorecard.is_headline(self.metric) and not self.metric.startswith("spread_skill"), f"{key}.metric",
              f"must be vrmse_mean or <metric>_<window> with <metric> one of "
              f"{[m for m in HEADLINE if m != 'spread_skill']}, e.g. vrmse_61-100; got {self.metric!r}")
        check(0 <= self.margin < 1, f"{key}.margin", f"must be in [0, 1), got {self.margin}")
        check(0.5 <= self.probability < 1, f"{key}.probability", f"must be in [0.5, 1), got {self.probability}")
        lo, hi = self.spread_skill
        check(0 <= lo <= hi, f"{key}.spread_skill", f"must be [low, high] with 0 <= low <= high, got {[lo, hi]}")
        check(self.max_seconds > 0, f"{key}.max_seconds", f"must be > 0, got {self.max_seconds}")


@dataclasses.dataclass(frozen=True)
class PromoteConfig(GateConfig):
    """``promote:`` section: the gate of ``<dataset>-emulator`` versions of ``kinds`` (its own
    fields), and that of ``<dataset>-assimilator`` versions (``assimilators``)."""

    kinds: tuple[str, ...]
    assimilators: GateConfig

    def validate(self, key: str) -> None:
        super().validate(key)
        check(len(self.kinds) >= 1, f"{key}.kinds", "needs at least one emulator kind")
        check_names(self.kinds, emulator_kinds(), f"{key}.kinds")
