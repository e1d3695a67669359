"""Windows of cached latent trajectories, for training and evaluating latent emulators.

A cache file (``cache_latents``) holds ``latents (N, T, c, h, w)`` and ``cond (N, P)``. A
window is ``L`` states taken every ``stride`` stored steps: item
``{"x": (c, L, h, w), "cond": (P,)}``. The whole split is loaded into memory once (latents
are small: that is the point of caching them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor


class LatentWindows(torch.utils.data.Dataset):
    """Every window of ``length`` states at time stride ``stride`` of one or more cache
    files (e.g. ``train.h5`` and ``train_augmented.h5``)."""

    def __init__(self, paths: Sequence[str | Path], length: int, stride: int):
        latents, cond = [], []
        for path in paths:
            with h5py.File(path, "r") as f:
                latents.append(f["latents"][()])
                cond.append(f["cond"][()])
        self.latents = torch.from_numpy(np.concatenate(latents))  # (N, T, c, h, w)
        self.cond = torch.from_numpy(np.concatenate(cond))  # (N, P)
        self.length, self.stride = length, stride
        span = (length - 1) * stride
        steps = self.latents.shape[1]
        if span >= steps:
            raise ValueError(f"windows of {length} states every {stride} steps span {span + 1} steps; "
                             f"the cached trajectories have {steps}")
        self.starts = steps - span  # window start times per trajectory

    def __len__(self) -> int:
        return self.latents.shape[0] * self.starts

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        trajectory, start = divmod(index, self.starts)
        steps = torch.arange(self.length) * self.stride + start
        x = self.latents[trajectory, steps].movedim(1, 0)  # (L, c, h, w) -> (c, L, h, w)
        return {"x": x, "cond": self.cond[trajectory]}
