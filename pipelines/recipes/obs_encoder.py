"""Recipe of an observation encoder (``models.observation``): its sequences, its model and its
objective, built from configuration (no tracking; ``pipelines.stages.train_obs_encoder``
trains, calibrates, tracks and registers it).

A sensor layout (``sensors.layouts``) is a fixed set of grid points read in some fields every
``every`` stored steps. Its training data pairs, for every trajectory of a split, the
noise-free readings of the physical states at the sensors with the autoencoder's latents of
the same states (the latent cache) and the trajectory's conditioning entries; the objective
adds the layout's noise and drops readings at random, so every batch sees new noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.observation import ObservationEncoder
from pipelines.data.latent import read_cache
from pipelines.data.observations import Layout, noise_std
from pipelines.data.windows import WellWindows, trajectories
from pipelines.recipes.training import Batch, seeded
from pipelines.settings.data import DataConfig
from pipelines.settings.obs_encoder import TrainObsEncoderConfig

__all__ = ["EncoderObjective", "SensorSequences", "build", "calibrate", "sequences"]


class SensorSequences(torch.utils.data.Dataset):
    """Every sequence of ``length`` readings ``every`` stored steps apart: item
    ``{"readings": (L, S), "noise_std": (S,), "latents": (L, c, h, w), "parameters": (K,)}``
    of trajectories with noise-free ``readings (N, T, S)``, noise standard deviations
    ``noise_std (N, S)``, ``latents (N, T, c, h, w)`` and ``parameters (N, K)``."""

    def __init__(self, readings: Tensor, noise_std: Tensor, latents: Tensor, parameters: Tensor, length: int,
                 every: int):
        self.readings, self.noise_std, self.latents, self.parameters = readings, noise_std, latents, parameters
        self.length, self.every = length, every
        span = (length - 1) * every
        if span >= readings.shape[1]:
            raise ValueError(f"train_obs_encoder.length: {length} readings every {every} stored steps span "
                             f"{span + 1} steps; the trajectories have {readings.shape[1]}")
        self.starts = readings.shape[1] - span

    def __len__(self) -> int:
        return self.readings.shape[0] * self.starts

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        trajectory, start = divmod(index, self.starts)
        steps = torch.arange(self.length) * self.every + start
        return {"readings": self.readings[trajectory, steps], "noise_std": self.noise_std[trajectory],
                "latents": self.latents[trajectory, steps], "parameters": self.parameters[trajectory]}


def _readings(windows: WellWindows, layout: Layout) -> tuple[Tensor, Tensor]:
    """Noise-free readings ``(N, T, S)`` of every trajectory of ``windows`` and the
    layout's noise standard deviations ``(N, S)`` (``noise`` times each field's standard
    deviation over the trajectory, as ``pipelines.data.observations.sample`` draws it)."""
    channels, i, j = (torch.as_tensor(a) for a in (layout.channel, layout.index[:, 0], layout.index[:, 1]))
    readings, noise = [], []
    for n in range(len(windows)):
        states = windows.normalizer.denormalize(windows[n]["x"], dim=0)  # (C, T, H, W), physical
        readings.append(states[channels, :, i, j].T)  # (T, S)
        noise.append(noise_std(states.flatten(1).std(dim=1, correction=0), layout.noise)[channels])
    return torch.stack(readings).float(), torch.stack(noise).float()


def sequences(data: DataConfig, cfg: TrainObsEncoderConfig, layout: Layout, cache: Path, split: str
              ) -> SensorSequences:
    """The sequences of ``split``: readings of its trajectories, latents from ``cache``
    (``<cache>/<split>.h5``), the conditioning entries ``cfg.parameters``."""
    windows = trajectories(data, split)
    missing = sorted(set(cfg.parameters) - set(windows.condition_names))
    if missing:
        raise ValueError(f"train_obs_encoder.parameters: {missing} not among the dataset's conditioning entries "
                         f"{windows.condition_names}")
    latents, cond, _ = read_cache(cache / f"{split}.h5")
    readings, noise_std = _readings(windows, layout)
    if latents.shape[:2] != readings.shape[:2]:
        raise ValueError(f"{cache}/{split}.h5 holds {latents.shape[0]} trajectories of {latents.shape[1]} steps; "
                         f"{data.root} has {readings.shape[0]} of {readings.shape[1]}: re-run cache-latents")
    parameters = torch.from_numpy(cond[:, [windows.condition_names.index(p) for p in cfg.parameters]]).float()
    return SensorSequences(readings, noise_std, torch.from_numpy(latents).float(), parameters, cfg.length,
                           layout.every)


def build(train: SensorSequences, layout: Layout, cfg: TrainObsEncoderConfig, seed: int) -> ObservationEncoder:
    """A fresh encoder of ``layout`` for the sequences ``train``, initialised from ``seed``,
    standardised on them."""
    torch.manual_seed(seed)
    model = ObservationEncoder(train.readings.shape[-1], tuple(train.latents.shape[2:]), train.parameters.shape[1],
                               cfg.model.hidden, cfg.model.layers)
    flat = train.readings.flatten(0, 1)  # (N T, S)
    model.fit(torch.as_tensor(layout.channel), torch.as_tensor(layout.index), flat.mean(dim=0),
              flat.std(dim=0, correction=0), train.parameters)
    return model


@dataclass
class EncoderObjective:
    r"""Mean squared error of the latent estimates plus that of the standardised parameter
    estimates, on readings with the layout's noise and a share :math:`\sim U(0, \text{dropout})`
    of each sequence's readings dropped."""

    dropout: float

    def corrupt(self, batch: Batch) -> Tensor:
        """The batch's readings with noise, and NaN where dropped."""
        readings, std = batch["readings"], batch["noise_std"]  # (B, L, S), (B, S)
        noisy = readings + std[:, None] * torch.randn_like(readings)
        share = self.dropout * torch.rand(readings.shape[0], 1, 1, device=readings.device)
        return torch.where(torch.rand_like(readings) < share, float("nan"), noisy)

    def errors(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """Latent errors ``(B, L, c, h, w)`` and parameter errors ``(B, L, K)``, physical units."""
        latents, parameters, _ = model(self.corrupt(batch))
        return latents - batch["latents"], parameters - batch["parameters"][:, None]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        latent, parameter = self.errors(model, batch)
        return latent.square().mean() + (parameter / model.parameter_std).square().mean()

    def validate(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        device = batches[0]["readings"].device
        latent, parameter = [], []
        with seeded(0, device):  # the same noise and drops at every validation
            for batch in batches:
                errors = self.errors(model, batch)
                latent.append(errors[0].square().mean().item())
                parameter.append(errors[1][:, -1].abs().mean().item())
        return {"val/latent_mse": float(np.mean(latent)), "val/parameter_mae": float(np.mean(parameter))}


@torch.no_grad()
def calibrate(model: ObservationEncoder, held_out: SensorSequences, shrinkage: float, seed: int = 0,
              batch_size: int = 64) -> dict[str, float]:
    """Set the encoder's error model (:meth:`ObservationEncoder.calibrate`: the latent errors'
    covariance, shrunk by ``shrinkage``, and the parameters' root mean squared errors) from
    its estimates on every sequence of ``held_out``, noisy with nothing dropped; returns the summary
    ``{"latent_rmse": ..., "parameter_mae": ..., "parameter_mae_last": ...}`` (the last:
    at the end of the sequences)."""
    objective = EncoderObjective(dropout=0.0)
    device = next(model.parameters()).device
    latent, parameter = [], []
    model.eval()
    with seeded(seed, device):
        for start in range(0, len(held_out), batch_size):
            items = [held_out[i] for i in range(start, min(start + batch_size, len(held_out)))]
            batch = {k: torch.stack([item[k] for item in items]).to(device) for k in items[0]}
            errors = objective.errors(model, batch)
            latent.append(errors[0].flatten(0, 1))
            parameter.append(errors[1])
    latent_errors, parameter_errors = torch.cat(latent), torch.cat(parameter)  # (M, c, h, w), (B, L, K)
    model.calibrate(latent_errors, parameter_errors.square().mean(dim=(0, 1)).sqrt(), shrinkage)
    return {"latent_rmse": float(latent_errors.square().mean().sqrt()),
            "parameter_mae": float(parameter_errors.abs().mean()),
            "parameter_mae_last": float(parameter_errors[:, -1].abs().mean())}
