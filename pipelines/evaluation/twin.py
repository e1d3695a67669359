"""The twin experiment of an assimilator: trajectories play the truth, a sensor layout
observes them (synthetic readings, their noise drawn per trajectory), and the assimilator's
analysis is scored against the whole truth at every forecast time.

:func:`experiment` is the one loop: any assimilators (``pipelines.serving.methods``) on the
same observed trajectories, each given the conditioning with the entries it estimates hidden
(:func:`pipelines.serving.assimilator.hide`). The ``evaluate`` stage scores every registered
``<dataset>-assimilator`` version with it (:func:`score_assimilator`), on the sensor layout
the version was built for; the ``assimilate`` stage runs every method of the table through it.
The scorecard (:meth:`TwinScores.scorecard`) is the forecasts' (VRMSE of the ensemble mean,
fair CRPS, spread-skill, by lead window, with bootstrap intervals over trajectories) plus
the wall time per cycle and, for each conditioning entry the assimilator estimates, the
absolute error of its ensemble mean at the last cycle (``<entry>_error``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from pipelines.data.observations import Layout, Observations
from pipelines.evaluation.bootstrap import intervals
from pipelines.evaluation.scorecard import Estimate, Scorecard
from pipelines.evaluation.scoring import EnsembleMeanVRMSE, FairCRPS, Scorer, Scores, SpreadSkill, Truth
from pipelines.serving.assimilator import Sensors, hide
from pipelines.serving.methods import Analysis, Assimilator

__all__ = ["METRICS", "TwinScores", "experiment", "last_cycle_error", "observe", "readings", "score_assimilator"]

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
    member ``sample (T, C, H, W)`` and whole ensemble ``first (M, T, C, H, W)`` for figures."""

    scores: Scores
    estimated: tuple[str, ...]
    errors: np.ndarray
    seconds_per_cycle: float
    first: Tensor

    @property
    def sample(self) -> Tensor:
        return self.first[0]

    def scorecard(self, windows: Sequence[tuple[int, int]], confidence: float = 0.95, seed: int = 0) -> Scorecard:
        card = self.scores.scorecard(windows, confidence, seed)
        if self.estimated:
            mean, low, high = intervals(self.errors, confidence, seed)
            card.estimates |= {f"{name}_error": Estimate(float(mean[k]), float(low[k]), float(high[k]))
                               for k, name in enumerate(self.estimated)}
        card.estimates["seconds_per_cycle"] = Estimate(self.seconds_per_cycle, self.seconds_per_cycle,
                                                       self.seconds_per_cycle)
        return card


def observe(layout: Layout, truth: Truth, seed: int = 0) -> list[Observations]:
    """Each trajectory of ``truth`` observed by ``layout``, the noise of trajectory ``i`` drawn
    from seed ``seed + i``."""
    return [layout.observe(truth.states[i].movedim(1, 0).numpy(), truth.channels, seed + i, truth.dataset)
            for i in range(len(truth.states))]


def last_cycle_error(analysis: Analysis, cond: Tensor, at: Sequence[int]) -> list[float]:
    """The absolute error of the ensemble mean of the conditioning entries ``at`` at the last
    cycle, against the true ``cond (P,)``."""
    return (analysis.cond[:, -1, at].mean(dim=0).cpu() - cond[at]).abs().tolist()


def experiment(assimilators: Mapping[str, Assimilator], truth: Truth, observations: Sequence[Observations],
               leads: list[int], stride: int, seed: int = 0, progress: str | None = None) -> dict[str, TwinScores]:
    """The twin experiment of each of ``assimilators`` (by row label) on the trajectories of
    ``truth`` with their ``observations``: trajectory ``i`` assimilated from its first state by
    each in turn, generator seed ``seed + i``, the entries each estimates hidden from it (NaN),
    its analysis (physical, or decoded: not timed) scored at the forecast times ``leads``."""
    targets = truth.targets(stride, leads)  # (N, T, C, H, W)
    at = {label: [a.forecaster.condition_names.index(name) for name in a.estimated] if a.estimated else []
          for label, a in assimilators.items()}
    scorers = {label: Scorer(METRICS, leads, truth.channels) for label in assimilators}
    errors: dict[str, list[list[float]]] = {label: [] for label in assimilators}
    seconds = dict.fromkeys(assimilators, 0.0)
    first: dict[str, Tensor] = {}
    for i in tqdm(range(len(truth.states)), desc=progress, unit="trajectory", disable=progress is None):
        sensors, values = readings(observations[i], truth.channels, stride, len(leads))
        for label, a in assimilators.items():
            cond = hide(truth.cond[i], a.forecaster.condition_names, a.estimated) if a.estimated else truth.cond[i]
            start = time.perf_counter()
            analysis = a.run(truth.states[i, :, 0], cond, sensors, values, torch.Generator().manual_seed(seed + i))
            seconds[label] += time.perf_counter() - start
            if a.estimated:
                errors[label].append(last_cycle_error(analysis, truth.cond[i], at[label]))
            ensemble = (analysis.states if analysis.latents is None
                        else a.forecaster.from_space(analysis.latents).movedim(2, 1))  # (M, T, C, H, W)
            scorers[label].add(ensemble[None], targets[i : i + 1])
            first.setdefault(label, ensemble)
    count = len(truth.states)
    return {label: TwinScores(scorers[label].scores(seconds[label] / count), tuple(a.estimated),
                              np.array(errors[label], dtype=np.float64).reshape(count, len(at[label])),
                              seconds[label] / (count * len(leads)), first[label])
            for label, a in assimilators.items()}


def score_assimilator(assimilator: Assimilator, layout: Layout, truth: Truth, last_lead: int,
                      seed: int = 0) -> TwinScores:
    """Observe each trajectory of ``truth`` by ``layout`` (noise seed ``seed + i``), assimilate
    from its first state up to ``last_lead`` stored steps, the conditioning entries that
    ``assimilator`` estimates hidden from it (NaN), and score the decoded analysis (decoding
    not timed)."""
    stride = assimilator.forecaster.stride
    leads = truth.leads(stride, last_lead)
    return experiment({"twin": assimilator}, truth, observe(layout, truth, seed), leads, stride, seed)["twin"]
