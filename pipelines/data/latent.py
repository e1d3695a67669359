"""Windows of whole trajectories held in memory, for training and evaluating emulators.

A window is ``L`` states taken every ``stride`` stored steps: item
``{"x": (C, L, H, W), "cond": (P,)}``. The trajectories come either from latent caches
(``cache_latents``: ``latents (N, T, c, h, w)`` and ``cond (N, P)``, small: that is the point
of caching them) or, for the pixel-space baseline on small datasets, from the normalised
states of a The Well split read once, trajectory by trajectory (much faster than reading
every window through ``WellDataset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from models.autoencoder import Autoencoder
from pipelines.data.windows import WellWindows

__all__ = ["TrajectoryWindows", "encode_trajectory", "read_cache"]


class TrajectoryWindows(torch.utils.data.Dataset):
    """Every window of ``length`` states at time stride ``stride`` of trajectories
    ``states (N, T, C, H, W)`` with conditioning ``cond (N, P)``."""

    def __init__(self, states: Tensor, cond: Tensor, length: int, stride: int):
        self.states, self.cond = states, cond
        self.length, self.stride = length, stride
        span = (length - 1) * stride
        steps = states.shape[1]
        if span >= steps:
            raise ValueError(f"windows of {length} states every {stride} steps span {span + 1} steps; "
                             f"the trajectories have {steps}")
        self.starts = steps - span  # window start times per trajectory

    @classmethod
    def from_caches(cls, paths: Sequence[str | Path], length: int, stride: int) -> TrajectoryWindows:
        """Latent caches (e.g. ``train.h5`` and ``train_augmented.h5``), concatenated."""
        latents, cond = [], []
        for path in paths:
            with h5py.File(path, "r") as f:
                latents.append(f["latents"][()])
                cond.append(f["cond"][()])
        return cls(torch.from_numpy(np.concatenate(latents)), torch.from_numpy(np.concatenate(cond)), length, stride)

    @classmethod
    def from_trajectories(cls, trajectories: WellWindows, length: int, stride: int) -> TrajectoryWindows:
        """The normalised states of whole trajectories (items ``(C, T, H, W)``)."""
        items = [trajectories[i] for i in range(len(trajectories))]
        states = torch.stack([item["x"].movedim(1, 0) for item in items])  # (N, T, C, H, W)
        return cls(states, torch.stack([item["cond"] for item in items]), length, stride)

    def __len__(self) -> int:
        return self.states.shape[0] * self.starts

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        trajectory, start = divmod(index, self.starts)
        steps = torch.arange(self.length) * self.stride + start
        x = self.states[trajectory, steps].movedim(1, 0)  # (L, C, H, W) -> (C, L, H, W)
        return {"x": x, "cond": self.cond[trajectory]}


@torch.no_grad()
def encode_trajectory(autoencoder: Autoencoder, x: Tensor, batch_size: int) -> Tensor:
    """Normalised ``(C, T, H, W)`` states to latents ``(T, c, h, w)``, ``batch_size`` frames
    at a time."""
    frames = x.movedim(1, 0)  # (T, C, H, W)
    return torch.cat([autoencoder.encode(chunk) for chunk in frames.split(batch_size)])


def read_cache(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(latents (N, T, c, h, w), cond (N, P), attrs)`` of one cached split file."""
    with h5py.File(path, "r") as f:
        return f["latents"][()], f["cond"][()], dict(f.attrs)
