"""Recipe of an autoencoder: its single-state data, its model and its reconstruction
objective, built from configuration (no tracking; ``pipelines.stages.train_autoencoder``
trains, tracks and registers it, the compression study trains it briefly).

Loss (``train_autoencoder.loss``), on normalised states ``x`` and reconstructions
``y = D(E(x))`` of shape ``(B, C, H, W)``:

- ``mse``: ``<(y - x)^2>``;
- ``vrmse``: ``mean_{B,C} sqrt(<(y - x)^2> / (Var_{H,W}(x) + eps))``, the VRMSE loss of
  the LoLA code, which weighs every field of every state alike.

Validation reports VRMSE in physical units (mean and median over states, per field), the
paper's reconstruction metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from models.autoencoder import Autoencoder
from models.normalizer import FieldNormalizer
from pipelines.data.validate import ensure_valid
from pipelines.data.windows import WellWindows, geometric_augmentation
from pipelines.evaluation.metrics import summarize, vrmse
from pipelines.recipes.training import Batch
from pipelines.settings.autoencoder import TrainAutoencoderConfig
from pipelines.settings.data import DataConfig

__all__ = ["LOSSES", "ReconstructionObjective", "build", "mse_loss", "states", "vrmse_loss"]


def _states(batch: Batch) -> Tensor:
    return batch["x"][:, :, 0]  # (B, C, 1, H, W) -> (B, C, H, W): windows of one frame


def mse_loss(y: Tensor, x: Tensor) -> Tensor:
    return (y - x).square().mean()


def vrmse_loss(y: Tensor, x: Tensor, eps: float = 1e-2) -> Tensor:
    variance = x.var(dim=(-2, -1), unbiased=False)  # (B, C)
    return ((y - x).square().mean(dim=(-2, -1)) / (variance + eps)).sqrt().mean()


LOSSES = {"mse": mse_loss, "vrmse": vrmse_loss}


@dataclass
class ReconstructionObjective:
    """Reconstruction of single states; validation in physical units."""

    loss_name: str
    normalizer: FieldNormalizer

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x = _states(batch)
        return LOSSES[self.loss_name](model(x), x)

    def validate(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        losses, scores = [], []
        for batch in batches:
            x = _states(batch)
            y = model(x).float()
            losses.append(float(LOSSES[self.loss_name](y, x)))
            truth, recon = self.normalizer.denormalize(x, dim=1), self.normalizer.denormalize(y, dim=1)
            scores.append(vrmse(recon, truth).cpu())  # (B, C)
        metrics = summarize(torch.cat(scores), list(self.normalizer.channels), "val/vrmse")
        metrics["val/loss"] = float(np.mean(losses))
        return metrics


def states(cfg: TrainAutoencoderConfig, data: DataConfig) -> tuple[WellWindows, WellWindows]:
    """Single states of the train split (augmented with ``cfg.augment``) and of the
    valid split, checked against the model's downsampling."""
    ensure_valid(data.root)
    transform = geometric_augmentation() if cfg.augment else None
    train_set = WellWindows(data.root, "train", 1, 0, 1, data.log_fields, transform=transform, cache=data.cache)
    valid_set = WellWindows(data.root, "valid", 1, 0, 1, data.log_fields, cache=data.cache)
    for windows in (train_set, valid_set):
        windows.preload()  # with data.cache: whole trajectories read at once
    cfg.model.check_resolution(train_set.resolution, "train_autoencoder.model.patch")
    return train_set, valid_set


def build(cfg: TrainAutoencoderConfig, channels: int, latent_channels: int) -> Autoencoder:
    """A fresh autoencoder of ``cfg.model``, initialised from ``cfg.train.seed``."""
    torch.manual_seed(cfg.train.seed)
    return Autoencoder(channels, latent_channels, cfg.model.patch, cfg.model.widths, cfg.model.blocks,
                       cfg.model.attention_heads, cfg.model.dropout, cfg.model.bound)
