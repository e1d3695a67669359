"""Latent data assimilation with a registered forecaster (LD-EnSF, Xiao, Si and Chen 2026).

An ensemble of ``N`` latent states is advanced by the forecaster's latent emulator (forecast
step: one emulator state, ``stride`` stored steps, for every member at once; a diffusion
emulator draws each member independently) and corrected wherever sensor readings exist by
the ensemble score filter (analysis step, ``models.assimilation.ScoreFilter``), whose
likelihood is taken through the forecaster's decoder at the sensor positions:

.. math::

    \\log p(y \\mid z) = -\\frac{1}{2} \\sum_{s \\,:\\, y_s \\text{ read}}
    \\left(\\frac{y_s - D(z)_{c_s}[i_s, j_s]}{\\sigma_s}\\right)^2

(physical units; ``D`` decodes and de-normalises; missing readings, NaN, drop out). Nothing
is decoded between cycles: the analysis stays latent until a caller decodes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from models.assimilation import LogLikelihood, ScoreFilter
from models.rollout import rollout
from pipelines.serving.forecaster import Forecaster

__all__ = ["LatentAssimilator", "Sensors"]


@dataclass(frozen=True)
class Sensors:
    """Where the readings come from: sensor ``s`` reads channel ``channel[s]`` at grid point
    ``index[s] = (i, j)`` with noise standard deviation ``noise_std[s]`` (physical units)."""

    channel: Tensor  # (S,) long
    index: Tensor  # (S, 2) long
    noise_std: Tensor  # (S,) float

    def read(self, states: Tensor) -> Tensor:
        """The noise-free readings ``(N, S)`` of physical states ``(N, C, H, W)``."""
        return states[:, self.channel, self.index[:, 0], self.index[:, 1]]

    def log_likelihood(self, values: Tensor, decode: Callable[[Tensor], Tensor]) -> LogLikelihood | None:
        """``z -> log p(values | decode(z))`` per member; ``None`` when every reading of
        ``values (S,)`` is missing (NaN)."""
        seen = torch.isfinite(values)
        if not bool(seen.any()):
            return None
        y, std = values[seen], self.noise_std[seen]

        def log_p(z: Tensor) -> Tensor:
            residual = (self.read(decode(z))[:, seen] - y) / std
            return -0.5 * residual.square().sum(dim=-1)

        return log_p


@dataclass
class LatentAssimilator:
    """A latent forecaster, a score filter and an ensemble size: readings in, analysis
    ensembles out (see the module docstring)."""

    forecaster: Forecaster
    filter: ScoreFilter
    members: int = 16

    def __post_init__(self) -> None:
        if self.forecaster.autoencoder is None:
            raise ValueError(f"latent assimilation needs a latent emulator; this forecaster is a {self.forecaster.kind}")
        if self.members < 2:
            raise ValueError(f"need an ensemble of at least 2 members, got {self.members}")
        self.forecaster.autoencoder.requires_grad_(False)  # the filter differentiates the decoder in z only

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(N, c, h, w)`` to physical states ``(N, C, H, W)``, differentiably;
        latents beyond the encoder's bound are clamped to it first (the decoder never saw
        such values, and its exponentiated fields overflow there)."""
        bound = self.forecaster.autoencoder.encoder.bound
        return self.forecaster.normalizer.denormalize(self.forecaster.autoencoder.decode(z.clamp(-bound, bound)), dim=1)

    def step(self, ensemble: Tensor, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The forecast step: every member ``(N, c, h, w)`` one emulator state ahead."""
        f = self.forecaster
        window = rollout(f.emulator, ensemble[:, :, None], cond.expand(ensemble.shape[0], -1), 1, f.window,
                         members=1, bound=f.autoencoder.encoder.bound, sampler=f.sampler, generator=generator)
        return window[:, 0, :, 1]

    @torch.no_grad()
    def run(self, initial: Tensor, cond: Tensor, sensors: Sensors, readings: Tensor,
            generator: torch.Generator | None = None) -> Tensor:
        """Assimilate from the physical state ``initial (C, H, W)`` with conditioning ``cond
        (P,)``: ``readings (T, S)`` are the readings ``stride`` stored steps apart after it
        (NaN: missing; a row of NaN: a pure forecast step). Returns the analysis ensembles
        ``(N, c, T, h, w)`` in the latent space."""
        device = self.forecaster.device
        z0 = self.forecaster.to_space(initial[None, :, None].to(device))[:, :, 0]  # (1, c, h, w)
        ensemble = z0.expand(self.members, -1, -1, -1).contiguous()
        cond = cond.to(device, torch.float32)[None]
        bound = self.forecaster.autoencoder.encoder.bound
        analyses = []
        for values in readings.to(device, torch.float32):
            ensemble = self.step(ensemble, cond, generator)
            log_p = sensors.log_likelihood(values, self.decode)
            if log_p is not None:
                ensemble = self.filter.analysis(ensemble, log_p, generator).clamp(-bound, bound)
            analyses.append(ensemble)
        return torch.stack(analyses, dim=2)
