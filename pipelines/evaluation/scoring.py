"""Scoring rollouts: the one place where forecasts, reconstructions and baselines are scored
against whole trajectories, per trajectory and lead time. The training stages (on the
validation split), tuning and the ``evaluate`` stage (on the test split, for every
registered version and every baseline) all score through here, so every number is computed
the same way.

Forecasts start from the first ``K = data.context`` states of each trajectory (``s`` stored
steps apart, ``s`` the forecaster's stride); lead times count stored steps after the last of
them, so a forecaster predicts leads ``s, 2 s, ...`` and window ``1:20`` averages leads
``4, 8, ..., 20`` at ``s = 4``.

Every prediction is an ensemble ``(b, M, T, C, H, W)`` (``M = 1`` for deterministic models
and baselines) scored by one metric suite (:func:`suite`, the_well's ``benchmark/metrics``
pattern): each metric maps ``(ensemble, truth)`` to ``(b, T, K)``, ``K`` fields or
spectral bands. Against the truth and, for latent emulators, against the auto-encoded truth
``D(E(x))`` (names prefixed ``ae_truth/``). The scores keep every trajectory, so that
:meth:`Scores.scorecard` can put a bootstrap interval on every number and two models can be
compared trajectory by trajectory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from models.autoencoder import LoadedAutoencoder
from models.forecaster import Forecaster
from pipelines.data.windows import WellWindows, trajectories
from pipelines.evaluation.bootstrap import intervals
from pipelines.evaluation.metrics import (BAND_NAMES, crps, ensemble_mean_vrmse, rank_histogram, spectrum_rmse,
                                          spread_skill_ratio, vrmse)
from pipelines.evaluation.scorecard import AE_TRUTH, Estimate, Scorecard
from pipelines.settings.data import DataConfig
from pipelines.settings.score import ScoreConfig

__all__ = [
    "AE_TRUTH", "Baseline", "Climatology", "ConservedMean", "Metric", "Persistence", "Scorer", "Scores", "Truth",
    "curve_table", "forecast_batches", "score_autoencoder", "score_baseline", "score_forecaster", "suite", "window_label",
]


def window_label(first: int, last: int) -> str:
    return f"{first}-{last}"


def curve_table(columns: dict[str, dict[int, float]], names: Sequence[str]) -> str:
    """A CSV of metrics by lead (``dvc plots``): ``lead`` and each of ``names`` that
    ``columns`` (metric -> lead -> value) has, one row per lead of ``vrmse``."""
    names = [n for n in names if columns.get(n)]
    leads = sorted(columns["vrmse"])
    rows = [",".join([str(lead), *(f"{columns[n].get(lead, float('nan')):.6g}" for n in names)]) for lead in leads]
    return "\n".join([",".join(["lead", *names]), *rows]) + "\n"


@dataclass
class Truth:
    """Whole trajectories to score against: physical ``states (N, C, T, H, W)``, ``cond
    (N, P)``, field names, the number ``context`` of initial states forecasts get, the
    dataset's name and each trajectory's boundary type (``WellWindows.boundary``)."""

    states: Tensor
    cond: Tensor
    channels: list[str]
    context: int = 1
    dataset: str = ""
    boundaries: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, data: DataConfig, split: str, count: int) -> Truth:
        return cls.from_windows(trajectories(data, split), count, data.context)

    @classmethod
    def load_one(cls, data: DataConfig, split: str, trajectory: int) -> Truth:
        """Trajectory ``trajectory`` of ``split`` alone (``N = 1``); a ``ValueError`` names the
        split's size when there is no such trajectory."""
        if trajectory < 0:
            raise ValueError(f"--trajectory must be >= 0, got {trajectory}")
        truth = cls.load(data, split, trajectory + 1)
        if truth.states.shape[0] <= trajectory:
            raise ValueError(f"--trajectory {trajectory}: the {split} split of {data.root} has "
                             f"{truth.states.shape[0]} trajectories")
        return truth.pick(slice(trajectory, trajectory + 1))

    def pick(self, which: slice) -> Truth:
        """The trajectories ``which`` of these."""
        return Truth(self.states[which], self.cond[which], self.channels, self.context, self.dataset,
                     self.boundaries[which])

    @classmethod
    def from_windows(cls, windows: WellWindows, count: int, context: int) -> Truth:
        """The first ``count`` whole trajectories of ``windows`` (``pipelines.data.windows.trajectories``)."""
        items = [windows[i] for i in range(min(count, len(windows)))]
        states = windows.normalizer.denormalize(torch.stack([item["x"] for item in items]), dim=1)
        return cls(states, torch.stack([item["cond"] for item in items]), list(windows.channels), context,
                   windows.dataset_name, [windows.boundary(item["cond"]) for item in items])

    def last_known(self, stride: int) -> int:
        return (self.context - 1) * stride

    def initial(self, stride: int) -> Tensor:
        return self.states[:, :, : self.last_known(stride) + 1 : stride]  # (N, C, K, H, W)

    def leads(self, stride: int, last_lead: int) -> list[int]:
        """``stride, 2 stride, ...`` up to ``last_lead``, as far as the trajectories reach."""
        available = (self.states.shape[2] - 1 - self.last_known(stride)) // stride
        count = min(last_lead // stride, available)
        if count < 1:
            raise ValueError(f"trajectories of {self.states.shape[2]} steps are too short to forecast from "
                             f"{self.context} states {stride} steps apart")
        return [stride * k for k in range(1, count + 1)]

    def targets(self, stride: int, leads: list[int]) -> Tensor:
        return self.states[:, :, [self.last_known(stride) + lead for lead in leads]].movedim(2, 1)  # (N, T, C, H, W)


# --------------------------------------------------------------------------- the metric suite


class Metric(Protocol):
    """``(ensemble (b, M, T, C, H, W), truth (b, T, C, H, W))`` -> ``(b, T, K)``, lower is
    better (spread-skill: closer to 1). ``over``: what ``K`` indexes, ``"field"`` or
    ``"band"``; ``ensembles_only``: defined only for ``M > 1``."""

    name: str
    over: str
    ensembles_only: bool

    def __call__(self, ensemble: Tensor, truth: Tensor) -> Tensor: ...


class EnsembleMeanVRMSE:
    """The headline: VRMSE of the ensemble mean, as in LoLA's evaluation, corrected to an
    infinite ensemble (``pipelines.evaluation.metrics.ensemble_mean_vrmse``), so that a
    4-member ensemble is not charged ``sqrt(1 + 1/4)`` for its size against a 16-member one
    or a deterministic model (one member: the plain VRMSE of the forecast)."""

    name: ClassVar[str] = "vrmse"
    over: ClassVar[str] = "field"
    ensembles_only: ClassVar[bool] = False

    def __call__(self, ensemble: Tensor, truth: Tensor) -> Tensor:
        return ensemble_mean_vrmse(ensemble.movedim(1, 0), truth)


class MemberVRMSE:
    """The mean over members of each member's VRMSE (secondary: for ``M`` calibrated members
    it exceeds the ensemble mean's by about ``sqrt(2 M / (M + 1))``)."""

    name: ClassVar[str] = "vrmse_members"
    over: ClassVar[str] = "field"
    ensembles_only: ClassVar[bool] = False

    def __call__(self, ensemble: Tensor, truth: Tensor) -> Tensor:
        return vrmse(ensemble, truth[:, None]).mean(dim=1)


class FairCRPS:
    """Fair CRPS, normalised by the truth's spatial standard deviation
    (``pipelines.evaluation.metrics.crps``); one member: the normalised absolute error."""

    name: ClassVar[str] = "crps"
    over: ClassVar[str] = "field"
    ensembles_only: ClassVar[bool] = False

    def __call__(self, ensemble: Tensor, truth: Tensor) -> Tensor:
        return crps(ensemble.movedim(1, 0), truth)


class SpreadSkill:
    """Spread-skill ratio per trajectory, lead and field (LoLA's way: averaged afterwards,
    so fields of large scale do not dominate)."""

    name: ClassVar[str] = "spread_skill"
    over: ClassVar[str] = "field"
    ensembles_only: ClassVar[bool] = True

    def __call__(self, ensemble: Tensor, truth: Tensor) -> Tensor:
        return spread_skill_ratio(ensemble.movedim(1, 0), truth)


@dataclass(frozen=True)
class SpectrumRMSE:
    """Power-spectrum RMSE per band of each member, averaged over members and fields."""

    bands: int = 3
    name: ClassVar[str] = "psrmse"
    over: ClassVar[str] = "band"
    ensembles_only: ClassVar[bool] = False

    def __call__(self, ensemble: Tensor, truth: Tensor) -> Tensor:
        return spectrum_rmse(ensemble, truth[:, None], self.bands).mean(dim=(1, 3))


def suite(cfg: ScoreConfig) -> list[Metric]:
    """The metrics every model and baseline is scored by."""
    return [EnsembleMeanVRMSE(), MemberVRMSE(), FairCRPS(), SpreadSkill(), SpectrumRMSE(cfg.bands)]


# --------------------------------------------------------------------------- scores


@dataclass
class Scores:
    """Per-trajectory scores of one model: ``values[name]`` is ``(N, T, K)`` over
    trajectories, ``leads`` and the ``labels[name]`` (fields or bands); ``seconds``: wall
    time per trajectory (all members, decoded); ``ranks``: rank-histogram counts ``(M + 1,)``
    against the truth (ensembles only)."""

    leads: list[int]
    values: dict[str, Tensor]
    labels: dict[str, list[str]]
    seconds: float = 0.0
    ranks: Tensor | None = None

    def by_lead(self, name: str) -> Tensor:
        """``(T,)``: the mean over trajectories and fields (bands) of ``name``."""
        return self.values[name].double().mean(dim=(0, 2)).float()

    def per_trajectory(self, windows: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        """Each summary number as ``(N,)`` per-trajectory values: ``vrmse_mean`` (all leads
        and fields), then per lead window ``w`` and metric ``m``: ``m_w`` (mean over leads
        in ``w`` and fields) and ``m_w/<field>`` for field metrics, ``m_<band>_w`` for
        spectral ones; prefixed ``ae_truth/`` against D(E(x))."""
        out = {"vrmse_mean": self.values["vrmse"].double().mean(dim=(1, 2))}
        for first, last in windows:
            inside = [i for i, lead in enumerate(self.leads) if first <= lead <= last]
            if not inside:
                continue
            w = window_label(first, last)
            for name, values in self.values.items():
                part = values[:, inside].double().mean(dim=1)  # (N, K)
                prefix, _, metric = name.rpartition("/")
                prefix = f"{prefix}/" if prefix else ""
                if metric == SpectrumRMSE.name:
                    out.update({f"{prefix}{metric}_{band}_{w}": part[:, k] for k, band in enumerate(self.labels[name])})
                else:
                    out[f"{prefix}{metric}_{w}"] = part.mean(dim=1)
                    out.update({f"{prefix}{metric}_{w}/{label}": part[:, k] for k, label in enumerate(self.labels[name])})
        return out

    def summary(self, windows: Sequence[tuple[int, int]]) -> dict[str, float]:
        """Point values of :meth:`per_trajectory` (means over trajectories) and
        ``seconds_per_trajectory``: what training and tuning log."""
        out = {name: float(v.mean()) for name, v in self.per_trajectory(windows).items()}
        return out | {"seconds_per_trajectory": self.seconds}

    def headline(self, windows: Sequence[tuple[int, int]]) -> dict[str, float]:
        """The headline numbers of :meth:`summary` (``Scorecard.is_headline``) and the time."""
        return {n: v for n, v in self.summary(windows).items()
                if Scorecard.is_headline(n) or n == "seconds_per_trajectory"}

    def scorecard(self, windows: Sequence[tuple[int, int]], confidence: float = 0.95, seed: int = 0) -> Scorecard:
        """Every summary number with its bootstrap interval over trajectories, and the
        per-trajectory values of the headline numbers, against the truth and the auto-encoded
        truth (``Scorecard.is_paired``: for paired comparisons)."""
        values = self.per_trajectory(windows)
        names = list(values)
        mean, low, high = intervals(torch.stack([values[n] for n in names], dim=1).numpy(), confidence, seed)
        estimates = {n: Estimate(float(m), float(lo), float(hi)) for n, m, lo, hi in zip(names, mean, low, high)}
        headline = {n: [float(x) for x in values[n]] for n in names if Scorecard.is_paired(n)}
        return Scorecard(estimates, headline, self.seconds, confidence)


class Scorer:
    """Accumulates the suite's scores of batches of predictions, trajectory by trajectory."""

    def __init__(self, metrics: Sequence[Metric], leads: list[int], channels: list[str]) -> None:
        self.metrics, self.leads, self.channels = list(metrics), leads, channels
        self.parts: dict[str, list[Tensor]] = {}
        self.labels: dict[str, list[str]] = {}
        self.ranks: Tensor | None = None
        self.generator = torch.Generator().manual_seed(0)  # rank ties: reproducible

    def add(self, ensemble: Tensor, truth: Tensor, encoded: Tensor | None = None) -> None:
        """``ensemble (b, M, T, C, H, W)`` against ``truth (b, T, C, H, W)`` and, if given,
        the auto-encoded truth ``encoded`` (same shape)."""
        members = ensemble.shape[1]
        references = {"": truth} if encoded is None else {"": truth, AE_TRUTH: encoded}
        for prefix, reference in references.items():
            for metric in self.metrics:
                if metric.ensembles_only and members < 2:
                    continue
                name = prefix + metric.name
                self.parts.setdefault(name, []).append(metric(ensemble, reference).float())
                self.labels[name] = list(BAND_NAMES[: self.parts[name][0].shape[-1]]) if metric.over == "band" \
                    else self.channels
        if members > 1:
            counts = rank_histogram(ensemble.movedim(1, 0), truth, self.generator)
            self.ranks = counts if self.ranks is None else self.ranks + counts

    def scores(self, seconds: float = 0.0) -> Scores:
        return Scores(self.leads, {n: torch.cat(p) for n, p in self.parts.items()}, dict(self.labels), seconds,
                      self.ranks)


def forecast_batches(forecaster: Forecaster, truth: Truth, horizon: int, members: int, seed: int,
                     batch: int) -> Iterator[tuple[slice, Tensor, float]]:
    """Forecasts of ``batch`` trajectories at a time: ``(rows, predictions (b, M, T, C, H, W),
    seconds spent forecasting them)``, physical units."""
    initial = truth.initial(forecaster.stride)
    for start in range(0, truth.states.shape[0], batch):
        rows = slice(start, start + batch)
        began = time.perf_counter()
        out = forecaster.forecast(initial[rows], truth.cond[rows], horizon, members, seed=seed + start).cpu()
        yield rows, out[:, :, :, initial.shape[2]:].movedim(3, 2), time.perf_counter() - began  # (b, M, T, C, H, W)


@torch.no_grad()
def score_forecaster(forecaster: Forecaster, truth: Truth, cfg: ScoreConfig) -> tuple[Scores, Tensor]:
    """Rollouts of every trajectory with ``cfg.members`` members (one for a deterministic
    emulator: its members are identical), scored batch by batch. Also returns trajectory 0,
    member 0, ``(T, C, H, W)``, for plots."""
    leads = truth.leads(forecaster.stride, cfg.last_lead)
    targets = truth.targets(forecaster.stride, leads)  # (N, T, C, H, W)
    members = cfg.members if getattr(forecaster.emulator, "stochastic", False) else 1
    scorer = Scorer(suite(cfg), leads, truth.channels)
    seconds, sample = 0.0, None
    for rows, predicted, elapsed in forecast_batches(forecaster, truth, len(leads), members, cfg.seed, cfg.batch):
        seconds += elapsed
        sample = predicted[0, 0] if sample is None else sample
        encoded = None
        if forecaster.autoencoder is not None:
            encoded = forecaster.from_space(forecaster.to_space(targets[rows].movedim(1, 2))).movedim(2, 1)
        scorer.add(predicted, targets[rows], encoded)
    return scorer.scores(seconds / targets.shape[0]), sample


def _score_frames(prediction: Tensor, targets: Tensor, leads: list[int], channels: list[str], cfg: ScoreConfig,
                  seconds: float = 0.0) -> Scores:
    """Scores of one prediction per target state, ``(N, T, C, H, W)`` each, ``cfg.batch``
    trajectories at a time."""
    scorer = Scorer(suite(cfg), leads, channels)
    for rows in range(0, targets.shape[0], cfg.batch):
        part = slice(rows, rows + cfg.batch)
        scorer.add(prediction[part, None], targets[part])
    return scorer.scores(seconds)


@torch.no_grad()
def score_autoencoder(autoencoder: LoadedAutoencoder, truth: Truth, cfg: ScoreConfig,
                      stride: int) -> tuple[Scores, Tensor]:
    """Reconstructions ``D(E(x))`` of the states at the emulators' lead times (stride
    ``stride``): the floor of every latent emulator of this autoencoder. Also returns
    trajectory 0's, ``(T, C, H, W)``."""
    leads = truth.leads(stride, cfg.last_lead)
    targets = truth.targets(stride, leads)  # (N, T, C, H, W)
    began = time.perf_counter()
    frames = targets.flatten(0, 1)  # (N T, C, H, W)
    recon = torch.cat([autoencoder.decode(autoencoder.encode(f)) for f in frames.split(64)]).view_as(targets)
    seconds = (time.perf_counter() - began) / targets.shape[0]
    return _score_frames(recon, targets, leads, truth.channels, cfg, seconds), recon[0]


# --------------------------------------------------------------------------- baselines


class Baseline(Protocol):
    """A trivial forecast every emulator must beat: ``kind`` names its row (``display`` in
    the report); ``predict`` maps the truth's initial states to ``(N, T, C, H, W)`` at ``leads``."""

    kind: str
    display: str

    def predict(self, truth: Truth, stride: int, leads: list[int]) -> Tensor: ...


class Persistence:
    """The last initial state, repeated."""

    kind: ClassVar[str] = "persistence"
    display: ClassVar[str] = "persistence (baseline)"

    def predict(self, truth: Truth, stride: int, leads: list[int]) -> Tensor:
        last = truth.states[:, :, truth.last_known(stride)]  # (N, C, H, W)
        return last[:, None].expand(-1, len(leads), -1, -1, -1)


class ConservedMean:
    """A constant field at the last initial state's spatial mean (conserved by the Euler
    equations with periodic boundaries; VRMSE ~1 wherever the mean holds)."""

    kind: ClassVar[str] = "conserved_mean"
    display: ClassVar[str] = "conserved mean (baseline)"

    def predict(self, truth: Truth, stride: int, leads: list[int]) -> Tensor:
        last = truth.states[:, :, truth.last_known(stride)]  # (N, C, H, W)
        return last.mean(dim=(-2, -1), keepdim=True).expand_as(last)[:, None].expand(-1, len(leads), -1, -1, -1)


@dataclass
class Climatology:
    """The training split's mean state at each lead time, over the trajectories with the
    same boundary conditions (all of them for a boundary type the split lacks): what a
    forecast knowing nothing of the initial state would say. ``windows``: the split's whole
    trajectories (``pipelines.data.windows.trajectories``)."""

    windows: WellWindows
    kind: ClassVar[str] = "climatology"
    display: ClassVar[str] = "climatology (baseline)"

    def predict(self, truth: Truth, stride: int, leads: list[int]) -> Tensor:
        times = [truth.last_known(stride) + lead for lead in leads]
        boundary = [i for i, name in enumerate(self.windows.condition_names) if name.startswith("bc_")]
        sums: dict[tuple, Tensor] = {}
        counts: dict[tuple, int] = {}
        for i in range(len(self.windows)):
            item = self.windows[i]
            states = self.windows.normalizer.denormalize(item["x"][:, times], dim=0).double()  # (C, T, H, W)
            key = tuple(item["cond"][boundary].tolist())
            sums[key] = sums.get(key, 0) + states
            counts[key] = counts.get(key, 0) + 1
        if not sums:
            raise ValueError(f"climatology: the {self.windows.split} split of {self.windows.root} has no trajectories")
        overall = sum(sums.values()) / sum(counts.values())
        means = {key: total / counts[key] for key, total in sums.items()}
        rows = [means.get(tuple(cond[boundary].tolist()), overall) for cond in truth.cond]
        return torch.stack(rows).movedim(1, 2).float()  # (N, T, C, H, W)


def score_baseline(baseline: Baseline, truth: Truth, cfg: ScoreConfig, stride: int) -> Scores:
    leads = truth.leads(stride, cfg.last_lead)
    return _score_frames(baseline.predict(truth, stride, leads), truth.targets(stride, leads), leads, truth.channels,
                         cfg)


#: The baselines of every comparison, in report order.
BASELINES: tuple[type[Persistence] | type[ConservedMean] | type[Climatology], ...] = (Persistence, ConservedMean,
                                                                                      Climatology)
