"""Convolutional autoencoder with a saturated latent (LoLA, Rozet et al. 2025, section 3).

The encoder patchifies first (pixel-unshuffle by ``patch``), then runs ``len(widths)``
levels of residual blocks, halving the resolution between levels, with self-attention at
the deepest level only; a 1x1 convolution maps to ``latent_channels`` and the saturating
function bounds the latent. The decoder mirrors it. The spatial downsampling is
``patch * 2 ** (len(widths) - 1)`` and the compression rate ``C f^2 / c`` for ``C`` input
channels, downsampling ``f`` and ``c`` latent channels: at 64^2 x 5 fields with
``patch = 4`` and three levels (f = 16), c = 16, 4, 1 give the paper's rates 80, 320, 1280.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.layers import Downsample, ResBlock, SelfAttention2d, Upsample, saturate
from models.normalizer import FieldNormalizer


def _level(width: int, blocks: int, dropout: float, attention_heads: int | None) -> list[nn.Module]:
    layers: list[nn.Module] = [ResBlock(width, dropout) for _ in range(blocks)]
    if attention_heads:
        layers.append(SelfAttention2d(width, attention_heads))
    return layers


class Encoder(nn.Module):
    """``(B, C, H, W) -> (B, c, H / f, W / f)``, bounded by ``bound``."""

    def __init__(self, in_channels: int, latent_channels: int, patch: int, widths: Sequence[int],
                 blocks: Sequence[int], attention_heads: int, dropout: float, bound: float):
        super().__init__()
        self.bound = bound
        layers: list[nn.Module] = [Downsample(in_channels, widths[0], patch, identity=False)]  # patchify
        for i, (width, n) in enumerate(zip(widths, blocks)):
            deepest = i == len(widths) - 1
            layers += _level(width, n, dropout, attention_heads if deepest else None)
            if not deepest:
                layers.append(Downsample(width, widths[i + 1], 2))
        layers += [nn.SiLU(), nn.Conv2d(widths[-1], latent_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return saturate(self.net(x), self.bound)


class Decoder(nn.Module):
    """``(B, c, h, w) -> (B, C, h f, w f)``: the encoder in reverse."""

    def __init__(self, out_channels: int, latent_channels: int, patch: int, widths: Sequence[int],
                 blocks: Sequence[int], attention_heads: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 1)]
        for i in reversed(range(len(widths))):
            deepest = i == len(widths) - 1
            layers += _level(widths[i], blocks[i], dropout, attention_heads if deepest else None)
            if i > 0:
                layers.append(Upsample(widths[i], widths[i - 1], 2))
        layers.append(Upsample(widths[0], out_channels, patch, identity=False))  # unpatchify
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class Autoencoder(nn.Module):
    """Encoder + decoder. ``forward(x)`` is the reconstruction ``D(E(x))``.

    Args:
        channels: physical channels ``C`` (e.g. 5 for Euler: energy, density, pressure,
            momentum x/y).
        latent_channels: ``c``; sets the compression rate.
        patch: pixel-unshuffle factor of the first layer.
        widths: channel width per level; levels after the first halve the resolution.
        blocks: residual blocks per level.
        attention_heads: heads of the self-attention at the deepest level.
        dropout: dropout inside residual blocks (paper: 0.05).
        bound: saturation bound of the latent (paper: 5).
    """

    def __init__(self, channels: int, latent_channels: int, patch: int = 4,
                 widths: Sequence[int] = (64, 128, 256), blocks: Sequence[int] = (1, 1, 1),
                 attention_heads: int = 4, dropout: float = 0.05, bound: float = 5.0):
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths ({len(widths)} levels) and blocks ({len(blocks)} levels) differ")
        self._arguments = {"channels": channels, "latent_channels": latent_channels, "patch": patch,
                           "widths": list(widths), "blocks": list(blocks), "attention_heads": attention_heads,
                           "dropout": dropout, "bound": bound}
        self.channels = channels
        self.latent_channels = latent_channels
        self.downsampling = patch * 2 ** (len(widths) - 1)
        self.encoder = Encoder(channels, latent_channels, patch, widths, blocks, attention_heads, dropout, bound)
        self.decoder = Decoder(channels, latent_channels, patch, widths, blocks, attention_heads, dropout)

    def arguments(self) -> dict[str, object]:
        """Constructor arguments, to rebuild the module."""
        return dict(self._arguments)

    @property
    def compression_rate(self) -> float:
        """Values per state over values per latent: ``C f^2 / c``."""
        return self.channels * self.downsampling**2 / self.latent_channels

    def encode(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, c, H / f, W / f)``."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """``(B, c, h, w) -> (B, C, h f, w f)``."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


@dataclass
class LoadedAutoencoder:
    """An autoencoder with its normalisation: physical ``(B, C, H, W)`` states in, latents
    ``(B, c, h, w)`` out, and back. ``name`` and ``run_id`` say which trained model it is
    (the training run), ``version`` which registered version (``None``: not registered)."""

    model: Autoencoder
    normalizer: FieldNormalizer
    name: str
    version: int | None
    run_id: str

    @torch.no_grad()
    def encode(self, states: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.normalizer.normalize(states, dim=1))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.normalizer.denormalize(self.model.decode(latents), dim=1)
