"""Metrics on channels-first tensors, through the_well's implementations where they match
the paper.

VRMSE (the_well): per sample and field,
``sqrt(<(u - v)^2> / (<(u - <u>)^2> + eps))``, ``<.>`` the spatial mean; a constant
prediction of the spatial mean scores ~1.
"""

from __future__ import annotations

from types import SimpleNamespace

from the_well.benchmark.metrics import VRMSE
from torch import Tensor


def vrmse(prediction: Tensor, truth: Tensor, eps: float = 1e-7) -> Tensor:
    """VRMSE of ``(..., C, H, W)`` tensors: ``(..., C)``, one value per sample and field."""
    meta = SimpleNamespace(n_spatial_dims=2)  # all the_well's VRMSE reads of WellMetadata
    return VRMSE.eval(_channels_last(prediction), _channels_last(truth), meta, eps=eps).float()


def _channels_last(t: Tensor) -> Tensor:
    """``(..., C, H, W)`` to the_well's ``(..., H, W, C)``, in float64."""
    return t.movedim(-3, -1).double()


def summarize(values: Tensor, names: list[str], prefix: str) -> dict[str, float]:
    """``(N, C)`` per-sample, per-field values to mean and median over samples and fields,
    plus the mean of each field: ``{prefix: mean, prefix_median: ..., prefix/<field>: ...}``."""
    per_sample = values.mean(dim=-1)  # (N,)
    out = {prefix: float(per_sample.mean()), f"{prefix}_median": float(per_sample.median())}
    for i, name in enumerate(names):
        out[f"{prefix}/{name}"] = float(values[:, i].mean())
    return out
