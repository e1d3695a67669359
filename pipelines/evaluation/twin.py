"""The twin experiment of an assimilator: trajectories play the truth, a sensor layout
observes them (synthetic readings, their noise drawn per trajectory), and the assimilator's
analysis is scored against the whole truth at every forecast time.

The ``evaluate`` stage scores every registered ``<dataset>-assimilator`` version this way
(:func:`score_assimilator`), on the sensor layout the version was built for; the
``assimilate`` stage's comparison observes the same way (:func:`readings`, :data:`METRICS`).
The scorecard (:meth:`TwinScores.scorecard`) is the forecasts' (VRMSE of the ensemble mean,
fair CRPS, spread-skill, by lead window, with bootstrap intervals over trajectories) plus
the wall time per cycle and, for each conditioning entry the assimilator estimates, the
absolute error of its ensemble mean at the last cycle (``<entry>_error``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pipelines.data.observations import Layout, Observations
from pipelines.evaluation.bootstrap import intervals
from pipelines.evaluation.scorecard import Estimate, Scorecard
from pipelines.evaluation.scoring import EnsembleMeanVRMSE, FairCRPS, Scorer, Scores, SpreadSkill, Truth
from pipelines.serving.assimilator import LatentAssimilator, Sensors

__all__ = ["METRICS", "TwinScores", "readings", "score_assimilator"]

#: The metric suite of twin experiments: ensembles scored by their mean and their CRPS.
METRICS = (EnsembleMeanVRMSE(), FairCRPS(), SpreadSkill())


def readings(observations: Observations, channels: Sequence[str], stride: int, steps: int) -> tuple[Sensors, Tensor]:
    """The sensors and the readings ``(steps, S)`` at stored steps ``stride, 2 stride, ...``
    (NaN where nothing was read at a forecast time)."""
    inputs = observations.request(channels, stride, steps)
    sensors = Sensors(torch.as_tensor(inputs["sensor_channel"]), torch.as_tensor(inputs["sensor_index"]),
                      torch.as_tensor(inputs["noise_std"]))
    return sensors, torch.as_tensor(inputs["readings"])


@dataclass
class TwinScores:
    """One assimilator's twin experiment: the ``scores`` of its analysis ensembles (seconds
    per trajectory), the absolute ``errors (N, K)`` of the estimated conditioning entries
    ``estimated`` at the last cycle, the wall time per cycle, and trajectory 0's first
    member ``sample (T, C, H, W)`` for figures."""

    scores: Scores
    estimated: tuple[str, ...]
    errors: np.ndarray
    seconds_per_cycle: float
    sample: Tensor

    def scorecard(self, windows: Sequence[tuple[int, int]], confidence: float = 0.95, seed: int = 0) -> Scorecard:
        card = self.scores.scorecard(windows, confidence, seed)
        if self.estimated:
            mean, low, high = intervals(self.errors, confidence, seed)
            card.estimates |= {f"{name}_error": Estimate(float(mean[k]), float(low[k]), float(high[k]))
                               for k, name in enumerate(self.estimated)}
        card.estimates["seconds_per_cycle"] = Estimate(self.seconds_per_cycle, self.seconds_per_cycle,
                                                       self.seconds_per_cycle)
        return card


def score_assimilator(assimilator: LatentAssimilator, layout: Layout, truth: Truth, last_lead: int,
                      seed: int = 0) -> TwinScores:
    """Observe each trajectory of ``truth`` by ``layout`` (noise seed ``seed + i``), assimilate
    from its first state up to ``last_lead`` stored steps, the conditioning entries that
    ``assimilator`` estimates hidden from it (NaN), and score the decoded analysis (decoding
    not timed)."""
    forecaster = assimilator.forecaster
    stride, names = forecaster.stride, forecaster.condition_names
    leads = truth.leads(stride, last_lead)
    targets = truth.targets(stride, leads)  # (N, T, C, H, W)
    hidden = [names.index(name) for name in assimilator.parameters]
    scorer = Scorer(METRICS, leads, truth.channels)
    errors, seconds, sample = [], 0.0, None
    for i in range(len(truth.states)):
        observations = layout.observe(truth.states[i].movedim(1, 0).numpy(), truth.channels, seed + i, truth.dataset)
        sensors, values = readings(observations, truth.channels, stride, len(leads))
        cond = truth.cond[i].clone()
        cond[hidden] = float("nan")
        start = time.perf_counter()
        analysis = assimilator.run(truth.states[i, :, 0], cond, sensors, values, torch.Generator().manual_seed(seed + i))
        seconds += time.perf_counter() - start
        errors.append((analysis.cond[:, -1, hidden].mean(dim=0).cpu() - truth.cond[i, hidden]).abs().tolist())
        ensemble = forecaster.from_space(analysis.latents).movedim(2, 1)  # (M, T, C, H, W)
        scorer.add(ensemble[None], targets[i : i + 1])
        sample = ensemble[0] if sample is None else sample
    count = len(truth.states)
    return TwinScores(scorer.scores(seconds / count), tuple(assimilator.parameters),
                      np.array(errors, dtype=np.float64).reshape(count, len(hidden)), seconds / (count * len(leads)),
                      sample)
