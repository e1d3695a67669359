"""Building blocks of the convolutional autoencoder (LoLA, Rozet et al. 2025, section 3 and
appendix; DC-AE style): channel LayerNorm, residual blocks, spatial self-attention and
pixel-(un)shuffle resampling initialised near the identity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    r"""LayerNorm over the channel dimension of ``(B, C, H, W)`` tensors, at every pixel:

    .. math:: y = \frac{x - \mathbb{E}_C[x]}{\sqrt{\mathbb{V}_C[x] + \epsilon}}
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        variance, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)  # (B, 1, H, W)
        return (x - mean) * torch.rsqrt(variance + self.eps)


class ResBlock(nn.Module):
    r"""Residual block :math:`y = x + W_2 * \mathrm{drop}(\mathrm{SiLU}(W_1 * \mathrm{LN}(x)))`
    with 3x3 convolutions.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm = LayerNorm2d()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(self.norm(x))
        y = self.conv2(self.dropout(F.silu(y)))
        return x + y


class SelfAttention2d(nn.Module):
    r"""Multi-head self-attention over the ``H W`` pixels of ``(B, C, H, W)``, pre-norm and
    residual: :math:`y = x + W_o\,\mathrm{softmax}(Q K^T / \sqrt{d}) V`."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = LayerNorm2d()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, HW, C / heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C / heads)
        y = y.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(y)


def near_identity_(conv: nn.Conv2d, scale: float = 1e-2) -> nn.Conv2d:
    """Initialise ``conv`` near the identity (LoLA's DC-AE resampling): weights scaled by
    ``scale``, plus 1 at the kernel centre from input channel ``i % in`` to every output
    channel ``i`` (each output copies an input, inputs repeated when there are more
    outputs); zero bias."""
    with torch.no_grad():
        conv.weight.mul_(scale)
        k_h, k_w = conv.weight.shape[-2:]
        for i in range(conv.out_channels):
            conv.weight[i, i % conv.in_channels, k_h // 2, k_w // 2] += 1.0
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


class Downsample(nn.Module):
    r"""Pixel-unshuffle by ``factor`` then a 3x3 convolution:
    ``(B, C, H, W) -> (B, C f^2, H/f, W/f) -> (B, C_out, H/f, W/f)``. Near identity at start,
    so with ``C_out = C f^2`` nothing is lost. ``identity=False`` keeps PyTorch's default
    initialisation (the patchify layer, whose channel counts have no identity to keep)."""

    def __init__(self, in_channels: int, out_channels: int, factor: int = 2, identity: bool = True):
        super().__init__()
        self.factor = factor
        conv = nn.Conv2d(in_channels * factor**2, out_channels, 3, padding=1)
        self.conv = near_identity_(conv) if identity else conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pixel_unshuffle(x, self.factor))


class Upsample(nn.Module):
    r"""A 3x3 convolution then pixel-shuffle by ``factor``:
    ``(B, C, H, W) -> (B, C_out f^2, H, W) -> (B, C_out, H f, W f)``. Near identity at start:
    a fresh ``Upsample(C f^2, C, f)`` inverts a fresh ``Downsample(C, C f^2, f)`` up to the
    1e-2 perturbation. ``identity=False``: PyTorch's default initialisation (unpatchify)."""

    def __init__(self, in_channels: int, out_channels: int, factor: int = 2, identity: bool = True):
        super().__init__()
        self.factor = factor
        conv = nn.Conv2d(in_channels, out_channels * factor**2, 3, padding=1)
        self.conv = near_identity_(conv) if identity else conv

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), self.factor)


def saturate(z: Tensor, bound: float = 5.0) -> Tensor:
    r"""Saturating function on the latent (LoLA's replacement for a KL penalty):
    :math:`z / \sqrt{1 + (z / b)^2}`, smooth, near identity for :math:`|z| \ll b` and
    bounded by :math:`b` (default 5, the range of a standard Gaussian)."""
    return z * torch.rsqrt(1 + (z / bound) ** 2)
