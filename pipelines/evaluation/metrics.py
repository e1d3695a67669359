"""Metrics on channels-first tensors, through the_well's implementations where they match
the paper (LoLA, Rozet et al. 2025, section 4 and appendix C).

- VRMSE (the_well): per sample and field, ``sqrt(<(u - v)^2> / (var(u) + eps))``, ``<.>`` the
  spatial mean and ``var(u) = H W / (H W - 1) <(u - <u>)^2>`` the truth's spatial variance
  (the_well's ``torch.std``, Bessel-corrected); a constant prediction of the spatial mean scores ~1.
- Ensemble-mean VRMSE corrected to an infinite ensemble (``ensemble_mean_vrmse``): the mean
  ``m`` of ``M`` members drawn around ``mu`` with variance ``sigma^2`` has
  ``E[(m - y)^2] = (mu - y)^2 + sigma^2 / M``, so a finite ensemble's mean scores worse than
  the distribution's mean by ``sqrt(1 + 1 / (M SNR))``-like factors (about ``sqrt(1 + 1/M)`` for a
  calibrated ensemble). With ``s^2`` the unbiased member variance (``E[s^2] = sigma^2``),
  ``<(m - y)^2> - <s^2> / M`` is unbiased for the infinite ensemble's squared error (the
  "fair" ensemble-mean MSE: Ferro 2014; Leutbecher 2019, "Ensemble size: How suboptimal is
  less than infinity?", QJRMS 145 S1); the VRMSE is ``sqrt(max(0, that) / (var(u) + eps))``,
  the_well's normaliser. Scores of ensembles of different sizes (and deterministic models)
  compare; ``M = 1`` gives the plain VRMSE.
- Power-spectrum RMSE: isotropic power spectra ``P_u``, ``P_v`` of truth and prediction
  (the_well's ``power_spectrum`` definition, on unit-wavenumber shells); the shells are grouped into
  ``bands`` bands evenly spaced in log-frequency (low, mid, high) and, per band,
  ``sqrt(mean_k (1 - P_v(k) / P_u(k))^2)``.
- Spread-skill ratio of an ensemble (Fortin et al. 2014): skill = RMSE of the ensemble mean
  against the truth, spread = ``sqrt((M + 1) / M * unbiased ensemble variance)``, both
  spatially averaged; ~1 calibrated, < 1 under-dispersed, > 1 over-dispersed.
  ``spread_skill_ratio`` gives ``spread / skill`` per sample and field (LoLA takes one ratio per
  field, trajectory and lead, then averages).
- Fair CRPS of an ensemble ``x_1 .. x_M`` against ``y``, pointwise (Ferro 2014, "Fair scores for
  ensemble forecasts", QJRMS 140; Zamo & Naveau 2018):
  ``(1/M) sum_i |x_i - y| - sum_{i,j} |x_i - x_j| / (2 M (M - 1))``, the second term 0 for
  ``M = 1``; unbiased for the CRPS of the distribution the members are drawn from. The pair sum is
  computed from the order statistics, ``sum_{i,j} |x_i - x_j| = 2 sum_k (2k - M - 1) x_(k)``.
  ``crps`` is its spatial mean divided by the truth's spatial standard deviation
  ``sqrt(var(u) + eps)`` (VRMSE's normaliser, as above), per sample and field, so that fields
  of different scales compare.
- Rank histogram (Hamill 2001, "Interpretation of rank histograms for verifying ensemble
  forecasts", MWR 129): per element, the rank of the truth among the members, the number of
  members strictly below it plus a uniformly random share of the ties, counted over ranks
  ``0 .. M``; flat for a calibrated ensemble, U-shaped for an under-dispersed one.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
from the_well.benchmark.metrics import VRMSE
from torch import Tensor

BAND_NAMES = ("low", "mid", "high")


def vrmse(prediction: Tensor, truth: Tensor, eps: float = 1e-7) -> Tensor:
    """VRMSE of ``(..., C, H, W)`` tensors: ``(..., C)``, one value per sample and field."""
    meta = SimpleNamespace(n_spatial_dims=2)  # all the_well's VRMSE reads of WellMetadata
    return VRMSE.eval(_channels_last(prediction), _channels_last(truth), meta, eps=eps).float()


def ensemble_mean_vrmse(ensemble: Tensor, truth: Tensor, eps: float = 1e-7) -> Tensor:
    """VRMSE of the mean of ``ensemble (M, ..., C, H, W)`` against ``truth (..., C, H, W)``,
    corrected to an infinite ensemble: ``(..., C)``,
    ``sqrt(max(0, <(m - y)^2> - <s^2> / M) / (var(y) + eps))`` with ``m`` the member mean,
    ``s^2`` the unbiased member variance, ``<.>`` the spatial mean and ``var`` the truth's
    Bessel-corrected spatial variance. One member: the plain :func:`vrmse`."""
    members = ensemble.shape[0]
    if members == 1:
        return vrmse(ensemble[0], truth, eps)
    ensemble, truth = _common(ensemble, truth)
    mean = ensemble.mean(dim=0)
    error = (mean - truth).square().double().mean(dim=(-2, -1))
    variance = ((ensemble - mean).square().sum(dim=0) / (members - 1)).double().mean(dim=(-2, -1))
    scale = truth.double().var(dim=(-2, -1), unbiased=True) + eps
    return ((error - variance / members).clamp(min=0) / scale).sqrt().float()


def _common(*tensors: Tensor) -> tuple[Tensor, ...]:
    """``tensors`` in their common floating precision (float32 inputs stay float32)."""
    dtype = torch.promote_types(torch.result_type(tensors[0], tensors[1]), torch.float32)
    return tuple(t.to(dtype) for t in tensors)


def _channels_last(t: Tensor) -> Tensor:
    """``(..., C, H, W)`` to the_well's ``(..., H, W, C)``, in float64."""
    return t.movedim(-3, -1).double()


def isotropic_spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    """Isotropic power spectrum of ``(..., C, H, W)`` on unit-wavenumber shells
    ``|k| in [n, n + 1)``, ``n = 1 .. min(H, W) / 2 - 1`` (the mean, k = 0, left out):
    ``(wavenumbers (K,), spectrum (..., C, K))``, the mean of ``|FFT(x)|^2`` over each shell.

    The same definition as the_well's ``power_spectrum`` (which the tests check this
    against), computed with a scatter-add instead of its dense one-hot product, which
    needs ``H W K`` times the memory of the input."""
    height, width = x.shape[-2:]
    size = min(height, width)
    ky = torch.fft.fftfreq(height, d=1 / height, dtype=torch.float64)
    kx = torch.fft.fftfreq(width, d=1 / width, dtype=torch.float64)
    shell = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).floor().long().flatten()  # (H W,)
    keep = (shell >= 1) & (shell < size // 2)
    index = shell[keep] - 1
    # The transform keeps the input's precision (float32 forecasts: complex64, twice as fast);
    # the shell sums are float64.
    power = torch.fft.fft2(x).abs().square().flatten(-2)[..., keep].double()  # (..., C, n)
    sums = torch.zeros(*power.shape[:-1], size // 2 - 1, dtype=torch.float64).index_add_(-1, index, power)
    counts = torch.bincount(index, minlength=size // 2 - 1).clamp(min=1)
    return torch.arange(1, size // 2, dtype=torch.float64), sums / counts


def band_edges(wavenumbers: Tensor, bands: int = 3) -> list[Tensor]:
    """Masks of ``bands`` bands evenly spaced in log-frequency over ``wavenumbers``."""
    edges = np.logspace(0, math.log10(float(wavenumbers.max()) + 1e-9), bands + 1)
    edges[-1] += 1e-6
    return [(wavenumbers >= lo) & (wavenumbers < hi) for lo, hi in zip(edges[:-1], edges[1:])]


def spectrum_rmse(prediction: Tensor, truth: Tensor, bands: int = 3, eps: float = 1e-12) -> Tensor:
    """Power-spectrum RMSE per band of ``(..., C, H, W)`` tensors: ``(..., C, bands)``."""
    k, p_true = isotropic_spectrum(truth)
    _, p_pred = isotropic_spectrum(prediction)
    ratio = (1 - p_pred / (p_true + eps)).square()  # (..., C, K)
    return torch.stack([ratio[..., mask].mean(dim=-1).sqrt() for mask in band_edges(k, bands)], dim=-1).float()


def spread_skill(ensemble: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """``(spread, skill)`` of ``ensemble (M, ..., H, W)`` against ``truth (..., H, W)``,
    spatially averaged: ``(...)`` each. Their ratio is the spread-skill ratio."""
    spread, skill = _spread_skill(ensemble, truth)
    return spread.float(), skill.float()


def _spread_skill(ensemble: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """``spread_skill`` in float64 (pointwise terms in the inputs' precision, spatial means
    in float64)."""
    members = ensemble.shape[0]
    ensemble, truth = _common(ensemble, truth)
    mean = ensemble.mean(dim=0)
    skill = (mean - truth).square().double().mean(dim=(-2, -1)).sqrt()
    # The unbiased variance over members, written out: torch's var over the first axis is ~7x slower.
    variance = (ensemble - mean).square().sum(dim=0) / (members - 1) if members > 1 else torch.zeros_like(truth)
    spread = ((members + 1) / members * variance.double()).mean(dim=(-2, -1)).sqrt()
    return spread, skill


def spread_skill_ratio(ensemble: Tensor, truth: Tensor, eps: float = 1e-12) -> Tensor:
    """Spread-skill ratio of ``ensemble (M, ..., C, H, W)`` against ``truth (..., C, H, W)``:
    ``(..., C)``, one ratio per sample and field (a caller averages). A skill below ``eps``
    (a perfect ensemble mean) is taken as ``eps``."""
    spread, skill = _spread_skill(ensemble, truth)
    return (spread / skill.clamp(min=eps)).float()


def fair_crps(ensemble: Tensor, truth: Tensor) -> Tensor:
    """Pointwise fair CRPS of ``ensemble (M, ...)`` against ``truth (...)``: ``(...)``.
    One member gives the absolute error."""
    return _fair_crps(ensemble, truth).float()


def _fair_crps(ensemble: Tensor, truth: Tensor) -> Tensor:
    """``fair_crps`` in the inputs' common precision (float64 for float64 inputs)."""
    # Written by hand: no maintained library in the pins computes the fair CRPS without
    # building the (M, M, ...) pairwise tensor (scoringrules is not a dependency), and real
    # inputs (16 members x 4 trajectories x 25 leads x 5 fields x 64 x 64) make that too big.
    # The pair sum comes from the order statistics instead, in O(M log M) per element.
    members = ensemble.shape[0]
    ensemble, truth = _common(ensemble, truth)
    error = (ensemble - truth).abs().mean(dim=0)
    if members == 1:
        return error
    rank = torch.arange(1, members + 1, dtype=ensemble.dtype, device=ensemble.device)
    weights = (2 * rank - members - 1).view(-1, *([1] * (ensemble.dim() - 1)))  # (M, 1, ...)
    pairs = 2 * (weights * ensemble.sort(dim=0).values).sum(dim=0)  # sum_{i,j} |x_i - x_j|
    return error - pairs / (2 * members * (members - 1))


def crps(ensemble: Tensor, truth: Tensor, eps: float = 1e-7) -> Tensor:
    """Normalised CRPS of ``ensemble (M, ..., C, H, W)`` against ``truth (..., C, H, W)``:
    ``(..., C)``, the spatial mean of ``fair_crps`` over the truth's spatial standard
    deviation ``sqrt(var(u) + eps)``, one value per sample and field. ``var`` is
    Bessel-corrected, as the_well's VRMSE normaliser is, so a constant one-member error
    scores the same as its VRMSE."""
    scale = (truth.double().var(dim=(-2, -1), unbiased=True) + eps).sqrt()
    return (_fair_crps(ensemble, truth).double().mean(dim=(-2, -1)) / scale).float()


def rank_histogram(ensemble: Tensor, truth: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Rank histogram of ``truth (...)`` among ``ensemble (M, ...)``: ``(M + 1,)`` int64
    counts over ranks ``0 .. M``, one rank per element: the number of members strictly
    below the truth plus a uniformly random integer in ``[0, ties]`` (members equal to it)."""
    members = ensemble.shape[0]
    ensemble, truth = _common(ensemble, truth)
    below = (ensemble < truth).sum(dim=0)
    ties = (ensemble == truth).sum(dim=0)
    draw = torch.rand(below.shape, generator=generator, dtype=torch.float64, device=below.device)
    share = torch.minimum((draw * (ties + 1)).floor().long(), ties)  # uniform on 0 .. ties
    return torch.bincount((below + share).flatten(), minlength=members + 1)


def summarize(values: Tensor, names: list[str], prefix: str) -> dict[str, float]:
    """``(N, C)`` per-sample, per-field values to mean and median over samples and fields,
    plus the mean of each field: ``{prefix: mean, prefix_median: ..., prefix/<field>: ...}``."""
    per_sample = values.mean(dim=-1)  # (N,)
    out = {prefix: float(per_sample.mean()), f"{prefix}_median": float(per_sample.median())}
    for i, name in enumerate(names):
        out[f"{prefix}/{name}"] = float(values[:, i].mean())
    return out
