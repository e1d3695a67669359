"""Space-time transformer backbone of the emulators (LoLA, Rozet et al. 2025, section 3).

Tokens are the ``L x h x w`` latent states of a window (or pixel patches, for the
pixel-space baseline). Every block has

- query-key normalisation (RMSNorm of queries and keys per head, Dehghani et al. 2023),
- an absolute position embedding added to the tokens once (LoLA's ``ViT``: a linear map
  of the sinusoidal encodings of the token's time and spatial coordinates; paper table 5,
  "Absolute + RoPE"), so a token knows where it is, e.g. next to an open boundary,
- rotary position embeddings over time and both spatial axes (axial RoPE: the head
  dimension is split in three, each part rotated by its own coordinate), which make
  attention depend on relative positions,
- value residual learning (Zhou et al. 2024): ``V_n <- a_n V_n + b_n V_1``, with ``V_1`` the
  values of the first block and learned scalars ``a_n, b_n``,
- adaLN modulation by a conditioning vector (simulation parameters, plus the diffusion time
  for the diffusion model): ``y = x + g * f((1 + s) * LN(x) + m)``, with ``(m, s, g)``
  regressed from the conditioning and zero-initialised, so fresh blocks are identities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.encodings import sinusoidal


class AxialRotary(nn.Module):
    r"""Rotary embedding over ``len(axes)`` coordinates: channel pairs of each third of the
    head dimension are rotated by :math:`\theta = p \, \omega_k`, ``p`` the token's
    coordinate on that axis, :math:`\omega_k = \mathrm{base}^{-k / d}`."""

    def __init__(self, head_dim: int, axes: int = 3, base: float = 1000.0):
        super().__init__()
        self.per_axis = (head_dim // axes) // 2 * 2  # even channels per axis; the rest are not rotated
        if self.per_axis == 0:
            raise ValueError(f"head dimension {head_dim} too small for rotary embeddings over {axes} axes")
        freqs = base ** (-torch.arange(0, self.per_axis, 2).float() / self.per_axis)  # (per_axis / 2,)
        self.register_buffer("freqs", freqs, persistent=False)
        self.axes = axes

    def rotation(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(cos, sin)``, each ``(N, axes * per_axis / 2)``, of ``positions`` ``(N, axes)``:
        computed once per forward pass and shared by every block."""
        angles = (positions[:, :, None].to(dtype) * self.freqs.to(dtype)).flatten(1)  # (N, axes * per_axis / 2)
        return angles.cos(), angles.sin()

    def rotate(self, x: Tensor, rotation: tuple[Tensor, Tensor]) -> Tensor:
        """``x``: ``(B, heads, N, head_dim)``, rotated channel pair by channel pair."""
        cos, sin = rotation
        rotated = self.axes * self.per_axis
        pairs = x[..., :rotated].unflatten(-1, (-1, 2))  # (B, heads, N, rotated / 2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
        return torch.cat([turned, x[..., rotated:]], dim=-1)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """``x``: ``(B, heads, N, head_dim)``; ``positions``: ``(N, axes)``."""
        return self.rotate(x, self.rotation(positions, x.dtype))


class AbsolutePosition(nn.Module):
    r"""Absolute position embedding ``(N, D)`` of ``N`` tokens with coordinates
    ``(N, axes)``: :math:`W [e(p_1), \dots, e(p_{axes})] + b`, ``e`` the
    :func:`models.encodings.sinusoidal` (closed grid) with ``D`` features."""

    def __init__(self, width: int, axes: int = 3):
        super().__init__()
        if width % 2:
            raise ValueError(f"width {width} must be even for sinusoidal position encodings")
        self.width = width
        self.proj = nn.Linear(axes * width, width)

    def forward(self, positions: Tensor, dtype: torch.dtype) -> Tensor:
        return self.proj(sinusoidal(positions.to(dtype), self.width).flatten(-2))


class Attention(nn.Module):
    """Multi-head self-attention with QK-norm, axial RoPE and value residual learning."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} does not split into {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.RMSNorm(width // heads)
        self.k_norm = nn.RMSNorm(width // heads)
        self.rotary = AxialRotary(width // heads)
        self.value_mix = nn.Parameter(torch.tensor([1.0, 0.0]))  # (a, b) of V <- a V + b V_1
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, rotation: tuple[Tensor, Tensor],
                first_values: Tensor | None) -> tuple[Tensor, Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B, heads, N, d_h)
        if first_values is None:
            first_values = v
        else:
            v = self.value_mix[0] * v + self.value_mix[1] * first_values
        q = self.rotary.rotate(self.q_norm(q), rotation)
        k = self.rotary.rotate(self.k_norm(k), rotation)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d_h)
        return self.out(y.transpose(1, 2).reshape(b, n, d)), first_values


class Block(nn.Module):
    """Pre-norm transformer block, adaLN-modulated by a conditioning embedding."""

    def __init__(self, width: int, heads: int, cond_width: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.attention = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))
        self.modulation = nn.Linear(cond_width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, cond: Tensor, rotation: tuple[Tensor, Tensor],
                first_values: Tensor | None) -> tuple[Tensor, Tensor]:
        m1, s1, g1, m2, s2, g2 = self.modulation(cond)[:, None].chunk(6, dim=-1)  # each (B, 1, D)
        y, first_values = self.attention((1 + s1) * self.norm1(x) + m1, rotation, first_values)
        x = x + g1 * y
        x = x + g2 * self.mlp((1 + s2) * self.norm2(x) + m2)
        return x, first_values


class SpaceTimeTransformer(nn.Module):
    """``(B, C_in, L, H, W)``, conditioning ``(B, P)`` -> ``(B, C_out, L, H, W)``.

    Space is cut into ``patch x patch`` patches (1 for latent states; more for the pixel
    baseline), each patch of each state one token: ``N = L (H / patch) (W / patch)``.

    Args:
        in_channels: channels per state and pixel (latent channels, plus the mask channel).
        out_channels: predicted channels.
        cond_features: ``P``, the conditioning vector's length.
        width, depth, heads: transformer size.
        patch: spatial patch size.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_features: int, width: int = 128,
                 depth: int = 4, heads: int = 4, patch: int = 1, mlp_ratio: int = 4):
        super().__init__()
        self.patch, self.out_channels = patch, out_channels
        self.embed = nn.Linear(in_channels * patch**2, width)
        self.position = AbsolutePosition(width)
        self.cond = nn.Sequential(nn.Linear(cond_features, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.blocks = nn.ModuleList(Block(width, heads, width, mlp_ratio) for _ in range(depth))
        self.rotary = AxialRotary(width // heads)  # the rotation every block's attention applies (no weights)
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.head = nn.Linear(width, out_channels * patch**2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        b, _, length, height, width = x.shape
        p = self.patch
        h, w = height // p, width // p
        tokens = x.reshape(b, -1, length, h, p, w, p).permute(0, 2, 3, 5, 1, 4, 6)  # (B, L, h, w, C, p, p)
        tokens = self.embed(tokens.reshape(b, length * h * w, -1))  # (B, N, D)
        grid = torch.meshgrid(*(torch.arange(n, device=x.device) for n in (length, h, w)), indexing="ij")
        positions = torch.stack(grid, dim=-1).reshape(-1, 3)  # (N, 3): t, x, y
        tokens = tokens + self.position(positions, tokens.dtype)  # (N, D), the same for every sample
        rotation = self.rotary.rotation(positions, tokens.dtype)  # the same in every block
        c = self.cond(cond)  # (B, D)
        first_values = None
        for block in self.blocks:
            tokens, first_values = block(tokens, c, rotation, first_values)
        y = self.head(self.norm(tokens))  # (B, N, C_out p^2)
        y = y.reshape(b, length, h, w, self.out_channels, p, p).permute(0, 4, 1, 2, 5, 3, 6)  # (B, C, L, h, p, w, p)
        return y.reshape(b, self.out_channels, length, height, width)
