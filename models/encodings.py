r"""Sinusoidal encodings (Vaswani et al. 2017, in LoLA's form) of positions and times.

For values :math:`x` and :math:`F` features (``F`` even, :math:`K = F / 2` frequencies),

.. math::

    \mathrm{enc}(x) = \big(\sin(x \omega_0), \dots, \sin(x \omega_{K-1}),
                           \cos(x \omega_0), \dots, \cos(x \omega_{K-1})\big),
    \qquad \omega_k = \omega^{-k / n},

with :math:`n = K - 1` on the ``closed`` grid (the exponents span :math:`[0, 1]`, the last
frequency is :math:`1 / \omega`: the transformer's absolute positions) and :math:`n = K` on
the ``open`` grid (exponents in :math:`[0, 1)`: the diffusion time of the emulators).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["Grid", "sinusoidal"]

#: The frequency grid: exponents ``k / (K - 1)`` (``closed``) or ``k / K`` (``open``).
Grid = Literal["closed", "open"]


def sinusoidal(x: Tensor, features: int, omega: float = 1e3, grid: Grid = "closed") -> Tensor:
    """The encoding ``(*, features)`` of values ``x (*)`` (see the module docstring), in
    ``x``'s dtype and device."""
    half = features // 2
    if grid == "closed":
        freqs = omega ** -torch.linspace(0, 1, half, device=x.device, dtype=x.dtype)
    elif grid == "open":
        freqs = torch.exp(-math.log(omega) * torch.arange(half, device=x.device, dtype=x.dtype) / half)
    else:
        raise ValueError(f"grid must be 'closed' or 'open', got {grid!r}")
    angles = x[..., None] * freqs  # (*, K)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
