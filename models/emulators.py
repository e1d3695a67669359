"""Latent emulators (LoLA, Rozet et al. 2025, section 3): predict a window of ``L`` states
given some of them (the context) and the simulation parameters.

Both emulators take a window ``x`` of shape ``(B, C, L, H, W)``, a boolean ``mask`` of shape
``(B, L)`` marking the known states, and the conditioning ``cond`` of shape ``(B, P)``.
Known states enter without noise; the binary mask is concatenated to the input as one more
channel; known states come back unchanged.

- :class:`DiffusionEmulator`: azula's rectified-flow schedule and Karras (EDM) denoiser,
  trained by denoising score matching (the denoiser's own loss), sampled with a
  probability-flow ODE solver (default: 3rd-order Adams-Bashforth, 16 steps), optionally
  guided toward observations (a ``guide`` that wraps the denoiser, e.g. azula's MMPS).
- :class:`NeuralSolver`: the same backbone, modulated by the parameters only, regressed
  with MSE on the unknown states.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from azula.denoise import Denoiser, KarrasDenoiser
from azula.noise import RectifiedSchedule
from torch import Tensor, nn

from models.encodings import sinusoidal
from models.samplers import ODESampler
from models.transformer import SpaceTimeTransformer

def random_context_mask(batch: int, length: int, rate: float = 1.0, flip: float = 0.34,
                        generator: torch.Generator | None = None) -> Tensor:
    r"""Training masks ``(B, L)`` drawn as in LoLA (``lola.emulation.random_context_mask``,
    paper appendix): :math:`k = 1 + (n \bmod (L - 1))` known states with
    :math:`n \sim \mathrm{Poisson}(\lambda)` (``rate``; mean :math:`k` = 1.92 for
    :math:`\lambda = 1, L = 5`), the first ``k`` states known, and with probability ``flip``
    the last ``k`` instead (backward-in-time prediction)."""
    n = torch.poisson(torch.full((batch,), float(rate)), generator=generator).long()
    k = 1 + n % (length - 1)
    mask = torch.arange(length)[None, :] < k[:, None]  # (B, L)
    flipped = torch.rand(batch, generator=generator) < flip
    return torch.where(flipped[:, None], mask.flip(1), mask)


def _broadcast(mask: Tensor, x: Tensor) -> Tensor:
    return mask[:, None, :, None, None].expand_as(x)  # (B, L) -> (B, C, L, H, W)


class MaskedBackbone(nn.Module):
    """The transformer on ``cat(where(mask, known, x), mask)``; conditioning
    ``cat(cond, sinusoidal(t))`` (the open frequency grid of :mod:`models.encodings`; the
    denoiser passes ``t = log(sigma_t / alpha_t)``) when ``time_features > 0``."""

    def __init__(self, channels: int, cond_features: int, width: int, depth: int, heads: int,
                 patch: int = 1, time_features: int = 0, mlp_ratio: int = 4):
        super().__init__()
        self.time_features = time_features
        self.net = SpaceTimeTransformer(channels + 1, channels, cond_features + time_features, width, depth, heads,
                                        patch, mlp_ratio)

    def forward(self, x: Tensor, t: Tensor | None = None, *, mask: Tensor, known: Tensor, cond: Tensor) -> Tensor:
        full = _broadcast(mask, x)
        x = torch.where(full, known.to(x.dtype), x)
        x = torch.cat([x, full[:, :1].to(x.dtype)], dim=1)  # (B, C + 1, L, H, W)
        if self.time_features:
            t = t.expand(x.shape[0]) if t.ndim == 0 else t
            times = sinusoidal(t.to(x.dtype).reshape(-1), self.time_features, grid="open")  # (B, time_features)
            cond = torch.cat([cond.to(x.dtype), times], dim=-1)
        return self.net(x, cond.to(x.dtype))


class NeuralSolver(nn.Module):
    """Deterministic emulator: ``y = where(mask, x, f(x * mask, mask, cond))``."""

    stochastic = False

    def __init__(self, channels: int, cond_features: int, width: int = 128, depth: int = 4, heads: int = 4,
                 patch: int = 1, mlp_ratio: int = 4):
        super().__init__()
        self.backbone = MaskedBackbone(channels, cond_features, width, depth, heads, patch, mlp_ratio=mlp_ratio)

    def forward(self, known: Tensor, mask: Tensor, cond: Tensor) -> Tensor:
        prediction = self.backbone(torch.zeros_like(known), mask=mask, known=known, cond=cond)
        return torch.where(_broadcast(mask, known), known, prediction)

    def loss(self, x: Tensor, mask: Tensor, cond: Tensor) -> Tensor:
        """MSE on the unknown states."""
        unknown = ~_broadcast(mask, x)
        return (self(x, mask, cond) - x).square()[unknown].mean()

    @torch.no_grad()
    def sample(self, known: Tensor, mask: Tensor, cond: Tensor, **_: object) -> Tensor:
        return self(known, mask, cond)


class DiffusionEmulator(nn.Module):
    """Generative emulator: a Karras denoiser on a rectified-flow schedule (azula)."""

    stochastic = True

    def __init__(self, channels: int, cond_features: int, width: int = 128, depth: int = 4, heads: int = 4,
                 patch: int = 1, mlp_ratio: int = 4, time_features: int = 32, alpha_min: float = 1e-3,
                 sigma_min: float = 1e-3):
        super().__init__()
        self.backbone = MaskedBackbone(channels, cond_features, width, depth, heads, patch, time_features, mlp_ratio)
        self.schedule = RectifiedSchedule(alpha_min=alpha_min, sigma_min=sigma_min)
        self.denoiser = KarrasDenoiser(self.backbone, self.schedule)

    def loss(self, x: Tensor, mask: Tensor, cond: Tensor) -> Tensor:
        r"""Denoising score matching at :math:`t \sim U(0, 1)` (azula's Karras loss),
        :math:`w_t \lVert \mu_\phi(x_t) - x \rVert^2` with
        :math:`w_t = 1 + \alpha_t^2 / \sigma_t^2`, averaged over the unknown states only:
        the backbone sees the known states clean, never their noise, so their error would
        be an irreducible term and pure gradient noise."""
        t = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        alpha, sigma = (v[:, None, None, None, None] for v in self.schedule(t))  # (B, 1, 1, 1, 1)
        x_t = alpha * x + sigma * torch.randn_like(x)
        q = self.denoiser(x_t, t, mask=mask, known=x, cond=cond)
        error = ((alpha / sigma) ** 2 + 1) * (q.mean - x).square()  # (B, C, L, H, W)
        return error[~_broadcast(mask, x)].mean()

    @torch.no_grad()
    def sample(self, known: Tensor, mask: Tensor, cond: Tensor, sampler: ODESampler = ODESampler(),
               generator: torch.Generator | None = None,
               guide: Callable[[Denoiser], Denoiser] | None = None) -> Tensor:
        r"""Draw the unknown states of the window; the known ones come back unchanged.

        ``guide`` wraps the denoiser :math:`q(x \mid x_t)` into one of the posterior
        :math:`q(x \mid x_t, y)` given observations ``y`` of the window (e.g.
        ``azula.guidance.MMPSDenoiser``; LoLA, section 4), which the sampler then integrates."""
        solver = sampler(self.denoiser if guide is None else guide(self.denoiser))
        noise = torch.randn(known.shape, generator=generator, device=known.device, dtype=known.dtype)
        alpha, sigma = self.schedule(torch.as_tensor(solver.start, dtype=known.dtype, device=known.device))
        x_start = torch.sqrt(alpha**2 + sigma**2) * noise  # as Sampler.init for a standardised X, seedable
        x = solver(x_start, mask=mask, known=known, cond=cond)
        return torch.where(_broadcast(mask, known), known, x)
