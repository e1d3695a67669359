"""A registered autoencoder at run time: the network with its normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.autoencoder import Autoencoder
from pipelines.serving.normalizer import FieldNormalizer

__all__ = ["LoadedAutoencoder"]


@dataclass
class LoadedAutoencoder:
    """A registered autoencoder with its normalisation: physical ``(B, C, H, W)`` states in,
    latents ``(B, c, h, w)`` out, and back. ``name``/``version``/``run_id`` say which
    registered version it is."""

    model: Autoencoder
    normalizer: FieldNormalizer
    name: str
    version: int
    run_id: str

    @torch.no_grad()
    def encode(self, states: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.normalizer.normalize(states, dim=1))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.normalizer.denormalize(self.model.decode(latents), dim=1)
