"""The normalisation of physical fields: what every model (autoencoder, emulator, forecaster)
is trained and served in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FieldNormalizer"]


@dataclass(frozen=True)
class FieldNormalizer:
    """Per-channel ``z = (f(x) - mean) / std`` with ``f = log`` on log channels.

    ``mean``, ``std`` and ``log`` are ``(C,)``; :meth:`normalize` and :meth:`denormalize`
    act on channel dimension ``dim`` of any tensor (default: channels-first).
    """

    channels: tuple[str, ...]
    mean: Tensor  # (C,)
    std: Tensor  # (C,)
    log: Tensor  # (C,) bool

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for model metadata (the registry stores it with each model)."""
        return {"channels": list(self.channels), "mean": self.mean.tolist(), "std": self.std.tolist(),
                "log": self.log.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> FieldNormalizer:
        return cls(channels=tuple(data["channels"]), mean=torch.tensor(data["mean"], dtype=torch.float32),
                   std=torch.tensor(data["std"], dtype=torch.float32), log=torch.tensor(data["log"], dtype=torch.bool))

    def _shape(self, t: Tensor, x: Tensor, dim: int) -> Tensor:
        shape = [1] * x.ndim
        shape[dim] = -1
        return t.to(x.device).view(shape)

    def normalize(self, x: Tensor, dim: int = 0) -> Tensor:
        """Physical units to normalised units along channel dimension ``dim``."""
        log = self._shape(self.log, x, dim)
        x = torch.where(log, torch.log(x.clamp_min(torch.finfo(x.dtype).tiny)), x)
        return (x - self._shape(self.mean, x, dim).to(x.dtype)) / self._shape(self.std, x, dim).to(x.dtype)

    def denormalize(self, z: Tensor, dim: int = 0) -> Tensor:
        """Inverse of :meth:`normalize`."""
        x = z * self._shape(self.std, z, dim).to(z.dtype) + self._shape(self.mean, z, dim).to(z.dtype)
        return torch.where(self._shape(self.log, z, dim), torch.exp(x), x)
