"""The forecaster: a trained emulator with everything it needs to forecast from physical
states. Pure PyTorch: training scores it, the registered ``<dataset>-emulator`` versions serve
it (``pipelines.serving.forecaster``).

A :class:`Forecaster` bundles

- the window emulator (``models.emulators``: diffusion or neural solver, latent or pixel),
- the autoencoder that maps states to its latent space (``None`` for a pixel emulator),
- the normalisation of the physical fields (log transform, mean, std),
- the window length ``L``, the time stride ``s`` between consecutive states (in stored
  steps), the rollout overlap, and the sampler settings of a diffusion emulator.

:meth:`Forecaster.forecast` takes ``K`` initial states ``(B, C, K, H, W)`` in physical units,
``s`` stored steps apart, and returns ``(B, M, C, K + T, H, W)``: the initial states and
``T`` forecast states, ``s`` stored steps apart, for ``M`` ensemble members.
:meth:`Forecaster.predict` is the same in The Well's channels-last layout:
``{"states": (B, K, H, W, C), "cond": (B, P)}`` and params ``horizon`` (``T``), ``members``
(``M``) and ``seed`` -> ``(B, M, K + T, H, W, C)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.autoencoder import Autoencoder
from models.checks import require
from models.normalizer import FieldNormalizer
from models.rollout import rollout
from models.samplers import ODESampler

__all__ = ["FORECAST_PARAMS", "Forecaster"]

#: Defaults of :meth:`Forecaster.predict`'s params.
FORECAST_PARAMS: dict[str, int] = {"horizon": 25, "members": 1, "seed": 0}


@dataclass
class Forecaster:
    """A trained emulator, its autoencoder and settings: physical states in, physical
    forecasts out (see the module docstring for shapes)."""

    kind: str
    emulator: nn.Module
    arguments: dict[str, int]  # the emulator's constructor arguments
    normalizer: FieldNormalizer
    autoencoder: Autoencoder | None
    window: int
    stride: int
    overlap: int = 1
    sampler: ODESampler = ODESampler()
    condition_names: list[str] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.emulator.parameters()).device

    def to(self, device: str | torch.device) -> Forecaster:
        self.emulator.to(device)
        if self.autoencoder is not None:
            self.autoencoder.to(device)
        return self

    @torch.no_grad()
    def to_space(self, states: Tensor, chunk: int = 256) -> Tensor:
        """Physical ``(B, C, T, H, W)`` to the emulator's space: normalised, then encoded
        frame by frame, ``(B, c, T, h, w)`` (pixel emulators: normalised only)."""
        x = self.normalizer.normalize(states, dim=1)
        if self.autoencoder is None:
            return x
        frames = x.movedim(2, 1).flatten(0, 1)  # (B T, C, H, W)
        z = torch.cat([self.autoencoder.encode(f) for f in frames.split(chunk)])  # (B T, c, h, w)
        return z.unflatten(0, (states.shape[0], -1)).movedim(1, 2)

    @torch.no_grad()
    def from_space(self, z: Tensor, chunk: int = 256) -> Tensor:
        """The emulator's space ``(..., c, T, h, w)`` back to physical ``(..., C, T, H, W)``."""
        lead = z.shape[:-4]
        frames = z.flatten(0, -5).movedim(2, 1).flatten(0, 1)  # (N T, c, h, w)
        if self.autoencoder is not None:
            frames = torch.cat([self.autoencoder.decode(f) for f in frames.split(chunk)])
        x = frames.unflatten(0, (-1, z.shape[-3])).movedim(1, 2)  # (N, C, T, H, W)
        return self.normalizer.denormalize(x, dim=1).reshape(*lead, *x.shape[1:])

    @torch.no_grad()
    def forecast(self, states: Tensor, cond: Tensor, horizon: int, members: int = 1, seed: int | None = None,
                 decode: bool = True) -> Tensor:
        """Roll ``horizon`` states forward from physical ``states (B, C, K, H, W)`` with
        conditioning ``cond (B, P)``; ``(B, M, C, K + horizon, H, W)`` in physical units: the
        given states, then the forecast (``decode=False``: all in the emulator's space).
        ``seed`` makes diffusion draws reproducible."""
        device = self.device
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        z = self.to_space(states.to(device, torch.float32))
        bound = self.autoencoder.encoder.bound if self.autoencoder is not None else None
        trajectory = rollout(self.emulator, z, cond.to(device, torch.float32), horizon, self.window, self.overlap,
                             members, bound, sampler=self.sampler, generator=generator)  # (B, M, c, K + T, h, w)
        if not decode:
            return trajectory
        k = states.shape[2]
        forecast = self.from_space(trajectory[:, :, :, k:])  # (B, M, C, T, H, W)
        initial = states.to(forecast)[:, None].expand(-1, members, -1, -1, -1, -1)  # as given, not auto-encoded
        return torch.cat([initial, forecast], dim=3)

    def predict(self, inputs: dict[str, np.ndarray], params: dict[str, Any] | None = None) -> np.ndarray:
        """:meth:`forecast` in The Well's channels-last layout, as the pyfunc serves it:
        ``{"states": (B, K, H, W, C), "cond": (B, P)}`` and params ``horizon``, ``members``,
        ``seed`` (defaults ``FORECAST_PARAMS``) -> ``(B, M, K + T, H, W, C)``."""
        settings = {**FORECAST_PARAMS, **(params or {})}
        states = torch.as_tensor(np.asarray(inputs["states"], dtype=np.float32))
        cond = torch.as_tensor(np.asarray(inputs["cond"], dtype=np.float32))
        require([(states.ndim == 5 and cond.ndim == 2 and cond.shape[0] == states.shape[0],
                   f"expected states (B, K, H, W, C) and cond (B, P); got {tuple(states.shape)} and {tuple(cond.shape)}"),
                  (lambda: cond.shape[1] == len(self.condition_names),
                   lambda: f"cond has {cond.shape[1]} entries; this forecaster expects "
                           f"{len(self.condition_names)}: {self.condition_names}")])
        out = self.forecast(states.permute(0, 4, 1, 2, 3), cond, int(settings["horizon"]), int(settings["members"]),
                            int(settings["seed"]))
        return out.permute(0, 1, 3, 4, 5, 2).cpu().numpy()  # (B, M, K + T, H, W, C)

    def settings(self) -> dict[str, Any]:
        """What a user needs to call it (stored as the registered model's metadata)."""
        return {"kind": self.kind, "window": self.window, "stride": self.stride, "overlap": self.overlap,
                "sampler": asdict(self.sampler), "channels": list(self.normalizer.channels),
                "condition_names": self.condition_names,
                "latent_channels": self.autoencoder.latent_channels if self.autoencoder is not None else None}
