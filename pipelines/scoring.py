"""Scoring rollouts: the one place where forecasts, reconstructions and baselines are scored
against whole trajectories, per lead time and per lead-time window. The training stages
(on the validation split) and the ``evaluate`` stage (on the test split, for every
registered version) both score through here, so every number is computed the same way.

Forecasts start from the first ``K = data.context`` states of each trajectory (``s`` stored
steps apart, ``s`` the forecaster's stride); lead times count stored steps after the last of
them, so a forecaster predicts leads ``s, 2 s, ...`` and window ``1:20`` averages leads
``4, 8, ..., 20`` at ``s = 4``. Metrics (``pipelines.metrics``), per lead, averaged over
trajectories and ensemble members: VRMSE per field, power-spectrum RMSE per band, the
spread-skill ratio (stochastic emulators), each against the truth and, for latent
emulators, against the auto-encoded truth ``D(E(x))``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from pipelines.config import DataConfig, ScoreConfig
from pipelines.data import WellWindows, trajectories
from pipelines.forecaster import Forecaster
from pipelines.metrics import BAND_NAMES, spectrum_rmse, spread_skill, vrmse
from pipelines.registry import LoadedAutoencoder


def window_label(first: int, last: int) -> str:
    return f"{first}-{last}"


@dataclass
class Truth:
    """Whole trajectories to score against: physical ``states (N, C, T, H, W)``, ``cond
    (N, P)``, field names, the number ``context`` of initial states forecasts get, and the
    dataset's name."""

    states: Tensor
    cond: Tensor
    channels: list[str]
    context: int = 1
    dataset: str = ""

    @classmethod
    def load(cls, data: DataConfig, split: str, count: int) -> Truth:
        return cls.from_windows(trajectories(data, split), count, data.context)

    @classmethod
    def from_windows(cls, windows: WellWindows, count: int, context: int) -> Truth:
        """The first ``count`` whole trajectories of ``windows`` (``pipelines.data.trajectories``)."""
        items = [windows[i] for i in range(min(count, len(windows)))]
        states = windows.normalizer.denormalize(torch.stack([item["x"] for item in items]), dim=1)
        return cls(states, torch.stack([item["cond"] for item in items]), list(windows.channels), context,
                   windows.dataset_name)

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


@dataclass
class LeadScores:
    """Per-lead metrics, averaged over trajectories and members.

    ``vrmse``: ``(T, C)``; ``psrmse``: ``(T, bands)`` (mean over fields); ``*_ae``: against
    the auto-encoded truth (latent emulators only); ``spread_skill``: ``(T,)`` (stochastic
    emulators only); ``seconds``: wall time per trajectory (all members, decoded).
    """

    leads: list[int]
    channels: list[str]
    vrmse: Tensor
    psrmse: Tensor
    seconds: float = 0.0
    vrmse_ae: Tensor | None = None
    psrmse_ae: Tensor | None = None
    spread_skill: Tensor | None = None

    def summary(self, windows: list[tuple[int, int]]) -> dict[str, float]:
        """Flat metrics: ``vrmse_mean`` (all leads), ``seconds_per_trajectory``, then per lead
        window ``vrmse_<w>``, ``vrmse_<w>/<field>``, ``psrmse_<band>_<w>``,
        ``spread_skill_<w>`` and ``ae_truth/vrmse_<w>``, ``ae_truth/psrmse_<band>_<w>``."""
        out = {"vrmse_mean": float(self.vrmse.mean()), "seconds_per_trajectory": self.seconds}
        bands = BAND_NAMES[: self.psrmse.shape[1]]
        for first, last in windows:
            inside = [i for i, lead in enumerate(self.leads) if first <= lead <= last]
            if not inside:
                continue
            w = window_label(first, last)
            out[f"vrmse_{w}"] = float(self.vrmse[inside].mean())
            out.update({f"vrmse_{w}/{name}": float(self.vrmse[inside, c].mean()) for c, name in enumerate(self.channels)})
            out.update({f"psrmse_{band}_{w}": float(self.psrmse[inside, b].mean()) for b, band in enumerate(bands)})
            if self.spread_skill is not None:
                out[f"spread_skill_{w}"] = float(self.spread_skill[inside].mean())
            if self.vrmse_ae is not None:
                out[f"ae_truth/vrmse_{w}"] = float(self.vrmse_ae[inside].mean())
                out.update({f"ae_truth/psrmse_{band}_{w}": float(self.psrmse_ae[inside, b].mean())
                            for b, band in enumerate(bands)})
        return out

    def curves(self) -> dict[str, list[float]]:
        """Per-lead series, mean over fields: ``vrmse`` and, where defined, ``ae_truth/vrmse``
        and ``spread_skill``."""
        out = {"vrmse": self.vrmse.mean(dim=1).tolist()}
        if self.vrmse_ae is not None:
            out["ae_truth/vrmse"] = self.vrmse_ae.mean(dim=1).tolist()
        if self.spread_skill is not None:
            out["spread_skill"] = self.spread_skill.tolist()
        return out


class _Mean:
    """Running mean over batches of per-sample values ``(b, ...)``."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.count = 0

    def add(self, values: Tensor) -> None:
        batch = values.double().sum(dim=0)
        self.total = batch if self.total is None else self.total + batch
        self.count += values.shape[0]

    def value(self) -> Tensor:
        return (self.total / self.count).float()


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
def score_forecaster(forecaster: Forecaster, truth: Truth, cfg: ScoreConfig) -> tuple[LeadScores, Tensor]:
    """Rollouts of every trajectory with ``cfg.members`` members (one for a deterministic
    emulator: its members are identical), scored batch by batch. Also returns trajectory 0,
    member 0, ``(T, C, H, W)``, for plots."""
    leads = truth.leads(forecaster.stride, cfg.last_lead)
    targets = truth.targets(forecaster.stride, leads)  # (N, T, C, H, W)
    stochastic = bool(getattr(forecaster.emulator, "stochastic", False))
    members = cfg.members if stochastic else 1
    latent = forecaster.autoencoder is not None
    v, ps, v_ae, ps_ae, spread, skill = (_Mean() for _ in range(6))
    seconds, sample = 0.0, None
    for rows, predicted, elapsed in forecast_batches(forecaster, truth, len(leads), members, cfg.seed, cfg.batch):
        seconds += elapsed
        sample = predicted[0, 0] if sample is None else sample
        target = targets[rows][:, None]  # (b, 1, T, C, H, W)
        v.add(vrmse(predicted, target).mean(dim=1))  # (b, T, C)
        ps.add(spectrum_rmse(predicted, target, cfg.bands).mean(dim=(1, 3)))  # (b, T, bands)
        if latent:
            encoded = forecaster.from_space(forecaster.to_space(targets[rows].movedim(1, 2))).movedim(2, 1)[:, None]
            v_ae.add(vrmse(predicted, encoded).mean(dim=1))
            ps_ae.add(spectrum_rmse(predicted, encoded, cfg.bands).mean(dim=(1, 3)))
        if stochastic and members > 1:
            s, k = spread_skill(predicted.movedim(1, 0), targets[rows])  # (b, T, C) each
            spread.add(s.mean(dim=-1))
            skill.add(k.mean(dim=-1))
    scores = LeadScores(leads, truth.channels, v.value(), ps.value(), seconds / targets.shape[0],
                        v_ae.value() if latent else None, ps_ae.value() if latent else None,
                        spread.value() / skill.value() if stochastic and members > 1 else None)
    return scores, sample


def _frame_scores(prediction: Tensor, targets: Tensor, leads: list[int], channels: list[str], bands: int,
                  seconds: float = 0.0) -> LeadScores:
    """Scores of one prediction per target state, ``(N, T, C, H, W)`` each."""
    return LeadScores(leads, channels, vrmse(prediction, targets).mean(dim=0),
                      spectrum_rmse(prediction, targets, bands).mean(dim=(0, 2)), seconds)


@torch.no_grad()
def score_autoencoder(autoencoder: LoadedAutoencoder, truth: Truth, cfg: ScoreConfig,
                      stride: int) -> tuple[LeadScores, Tensor]:
    """Reconstructions ``D(E(x))`` of the states at the emulators' lead times (stride
    ``stride``); also returns trajectory 0's, ``(T, C, H, W)``."""
    leads = truth.leads(stride, cfg.last_lead)
    targets = truth.targets(stride, leads)  # (N, T, C, H, W)
    began = time.perf_counter()
    frames = targets.flatten(0, 1)  # (N T, C, H, W)
    recon = torch.cat([autoencoder.decode(autoencoder.encode(f)) for f in frames.split(64)]).view_as(targets)
    seconds = (time.perf_counter() - began) / targets.shape[0]
    return _frame_scores(recon, targets, leads, truth.channels, cfg.bands, seconds), recon[0]


def score_persistence(truth: Truth, cfg: ScoreConfig, stride: int) -> LeadScores:
    """The baseline every emulator must beat: the last initial state, repeated."""
    leads = truth.leads(stride, cfg.last_lead)
    targets = truth.targets(stride, leads)  # (N, T, C, H, W)
    repeated = truth.states[:, None, :, truth.last_known(stride)].expand_as(targets)
    return _frame_scores(repeated, targets, leads, truth.channels, cfg.bands)
