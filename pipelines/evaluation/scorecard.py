"""Evaluation results as data: what ``evaluate`` writes and ``promote``, the report, the
findings and ``latentops compare`` read, instead of dicts of string keys.

- :class:`Estimate`: a number with its bootstrap interval.
- :class:`Scorecard`: every summary number of one model (``pipelines.evaluation.scoring``), the
  per-trajectory values of the headline numbers (for paired comparisons between models
  scored on the same trajectories), the time per trajectory. It travels as JSON
  (:meth:`Scorecard.to_dict` / :meth:`Scorecard.from_dict`): the evaluation run's
  ``scorecard.json``, read back by ``pipelines.tracking.cards``.
- :class:`Result`: a row of the comparison: what was scored (a registered version or a
  baseline) and its scorecard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["AE_TRUTH", "HEADLINE", "Estimate", "Result", "Scorecard"]

HEADLINE = ("vrmse", "vrmse_members", "crps", "spread_skill")  # per lead window, against the truth
AE_TRUTH = "ae_truth/"  # prefix of the scores against the auto-encoded truth D(E(x))


@dataclass(frozen=True)
class Estimate:
    """``value`` (a mean over trajectories) and its interval ``[low, high]``."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"

    def cell(self, digits: int = 3) -> str:
        """``value [low, high]`` for a table."""
        if math.isnan(self.value):
            return "–"
        if self.low == self.high == self.value:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass
class Scorecard:
    """``estimates``: every summary number (``pipelines.evaluation.scoring.Scores.per_trajectory``
    names) with its ``confidence`` interval; ``trajectories``: the per-trajectory values of
    the headline numbers; ``seconds``: wall time per trajectory."""

    estimates: dict[str, Estimate]
    trajectories: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    confidence: float = 0.95

    @staticmethod
    def is_headline(name: str) -> bool:
        """``vrmse_mean`` and ``<metric>_<window>`` of the :data:`HEADLINE` metrics."""
        return name == "vrmse_mean" or ("/" not in name and name.rsplit("_", 1)[0] in HEADLINE)

    @staticmethod
    def is_paired(name: str) -> bool:
        """A headline number against the truth or against the auto-encoded truth
        (``ae_truth/<headline>``): the card keeps its per-trajectory values."""
        return Scorecard.is_headline(name.removeprefix(AE_TRUTH))

    @staticmethod
    def is_reported(name: str) -> bool:
        """A headline number, or one an assimilator's card adds (``pipelines.evaluation.twin``):
        ``seconds_per_cycle`` and ``<entry>_error`` of each conditioning entry it estimates."""
        return Scorecard.is_headline(name) or name == "seconds_per_cycle" or name.endswith("_error")

    def __contains__(self, name: str) -> bool:
        return name in self.estimates or name == "seconds_per_trajectory"

    def get(self, name: str) -> Estimate | None:
        if name == "seconds_per_trajectory":
            return Estimate(self.seconds, self.seconds, self.seconds)
        return self.estimates.get(name)

    def value(self, name: str) -> float:
        """The estimate's value, NaN if the card has none."""
        estimate = self.get(name)
        return math.nan if estimate is None else estimate.value

    @property
    def ensemble(self) -> bool:
        """Scored as an ensemble of several members (it has spread-skill ratios)."""
        return any(name.startswith("spread_skill_") for name in self.estimates)

    def mean_of(self, prefix: str) -> float | None:
        """The mean of the window values ``<prefix>_<window>`` (e.g. ``spread_skill``), or
        ``None`` if there are none."""
        values = [e.value for n, e in self.estimates.items() if "/" not in n and n.rsplit("_", 1)[0] == prefix]
        return sum(values) / len(values) if values else None

    def to_dict(self) -> dict:
        return {"confidence": self.confidence, "seconds": self.seconds,
                "estimates": {n: [_round(e.value), _round(e.low), _round(e.high)] for n, e in self.estimates.items()},
                "trajectories": {n: [_round(v) for v in values] for n, values in self.trajectories.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Scorecard:
        return cls({n: Estimate(*map(float, v)) for n, v in data["estimates"].items()},
                   {n: [float(x) for x in v] for n, v in data.get("trajectories", {}).items()},
                   float(data.get("seconds", 0.0)), float(data.get("confidence", 0.95)))


def _round(x: float) -> float:
    return float(f"{x:.6g}")


@dataclass
class Result:
    """One row of the comparison: a registered version (``name``, ``version``, the
    evaluation ``run_id``) or a baseline (``version`` 0, no ``name``), what kind it is, its
    latent width and compression rate (strings, as the registry's tags), and its card."""

    label: str
    kind: str
    card: Scorecard
    name: str = ""
    version: int = 0
    latent_channels: str = ""
    compression_rate: str = ""
    run_id: str = ""

    @property
    def rate(self) -> float:
        try:
            return float(self.compression_rate)
        except ValueError:
            return math.inf

    def summary(self) -> dict:
        """What ``metrics/evaluation.json`` (a DVC metrics file) says of the row: what it is,
        its headline numbers (``metrics``) and their intervals (``intervals``); the whole
        card is the evaluation run's ``scorecard.json``."""
        headline = {n: e for n, e in self.card.estimates.items() if Scorecard.is_reported(n)}
        return {"kind": self.kind, "name": self.name, "version": self.version, "latent_channels": self.latent_channels,
                "compression_rate": self.compression_rate, "run_id": self.run_id,
                "metrics": {n: _round(e.value) for n, e in headline.items()}
                | {"seconds_per_trajectory": _round(self.card.seconds)},
                "intervals": {n: [_round(e.low), _round(e.high)] for n, e in headline.items()}}
