"""Recipe of a window emulator: its windows, its model and its objective, built from
configuration (no tracking; ``pipelines.stages.train_emulator`` trains, scores, tracks and
registers it, the compression study trains it briefly).

- Latent kinds train on a latent cache (``cache_latents@<c>``): windows ``(c, L, h, w)``.
- A pixel kind trains the same network on normalised pixel windows ``(C, L, H, W)``, cut
  into ``train_emulator.pixel.patch``-sized patches (the LoLA baseline).

Windows hold ``L = data.context + data.horizon`` states every ``data.stride`` stored steps.
Each training window gets a random context mask (Poisson size, some flipped backwards,
LoLA section 3); the loss is the emulator's own (denoising score matching or MSE).
Validation reports that loss on fixed masks and the mean squared error of a one-window
forecast from the first state (``val/window_mse``) in the emulator's space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor, nn

from models.emulators import random_context_mask
from models.networks import network_class
from models.samplers import ODESampler
from pipelines.data.latent import TrajectoryWindows
from pipelines.data.windows import WellWindows, trajectories
from pipelines.recipes.training import Batch, seeded
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import EmulatorModelConfig, TrainEmulatorConfig

__all__ = ["WindowObjective", "build", "emulator_arguments", "latent_windows", "objective", "pixel_windows"]


@dataclass
class WindowObjective:
    """The emulator's loss on windows ``x (B, C, L, H, W)`` under random context masks."""

    context_rate: float
    flip: float
    sampler: ODESampler

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x = batch["x"]
        mask = random_context_mask(x.shape[0], x.shape[2], self.context_rate, self.flip).to(x.device)  # (B, L)
        return model.loss(x, mask, batch["cond"])

    def validate(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        device = batches[0]["x"].device
        losses, errors = [], []
        with seeded(0, device):  # the same masks and noise at every validation
            for batch in batches:
                x, cond = batch["x"], batch["cond"]
                mask = random_context_mask(x.shape[0], x.shape[2], self.context_rate, self.flip).to(device)
                losses.append(float(model.loss(x, mask, cond)))
                first = torch.zeros_like(mask)
                first[:, 0] = True
                y = model.sample(x, first, cond, sampler=self.sampler)
                errors.append(float((y - x)[:, :, 1:].float().square().mean()))
        return {"val/loss": float(np.mean(losses)), "val/window_mse": float(np.mean(errors))}


def objective(cfg: TrainEmulatorConfig) -> WindowObjective:
    return WindowObjective(cfg.context_rate, cfg.flip, cfg.sampler)


def emulator_arguments(channels: int, cond_features: int, model: EmulatorModelConfig) -> dict[str, int]:
    """Constructor arguments of an emulator class (``models.kinds``)."""
    return {"channels": channels, "cond_features": cond_features, "width": model.width, "depth": model.depth,
            "heads": model.heads, "patch": model.patch, "mlp_ratio": model.mlp_ratio}


def build(name: str, channels: int, cond_features: int, model: EmulatorModelConfig,
          seed: int) -> tuple[nn.Module, dict[str, int]]:
    """A fresh emulator of kind ``name`` on ``channels`` channels, initialised from
    ``seed``, and its constructor arguments."""
    arguments = emulator_arguments(channels, cond_features, model)
    torch.manual_seed(seed)
    return network_class(name)(**arguments), arguments


def pixel_windows(data: DataConfig, split: str) -> TrajectoryWindows | WellWindows:
    """Normalised pixel windows: whole trajectories read once into memory with
    ``data.cache`` (small datasets), else streamed window by window through WellDataset."""
    window, stride = data.context + data.horizon, data.stride
    if data.cache:
        return TrajectoryWindows.from_trajectories(trajectories(data, split), window, stride)
    return WellWindows(data.root, split, window, 0, stride, data.log_fields)


def latent_windows(directory: Path, run_id: str, data: DataConfig) -> tuple[TrajectoryWindows, TrajectoryWindows]:
    """Train and valid windows of the latent cache ``directory``, checked to come from the
    autoencoder trained by run ``run_id``."""
    if not (directory / "train.h5").is_file():
        raise FileNotFoundError(f"{directory}/train.h5: no latent cache; run `latentops cache-latents "
                                f"--latent-channels <c>` (or `dvc repro cache_latents`)")
    with h5py.File(directory / "train.h5", "r") as f:
        cached = str(f.attrs["autoencoder_run_id"])
    if cached != run_id:
        raise ValueError(f"{directory} was encoded with the autoencoder of training run {cached}, but the trained "
                         f"autoencoder is run {run_id}'s; re-run cache-latents")
    window, stride = data.context + data.horizon, data.stride
    train_files = [directory / "train.h5", *sorted(directory.glob("train_augmented.h5"))]
    return (TrajectoryWindows.from_caches(train_files, window, stride),
            TrajectoryWindows.from_caches([directory / "valid.h5"], window, stride))
