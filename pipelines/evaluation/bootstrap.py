"""Uncertainty of scores over test trajectories, by the bootstrap (scipy's implementation).

Every model is scored on the same test trajectories, so a score is a vector of ``N``
per-trajectory values and two models' scores pair up trajectory by trajectory.

- :func:`intervals`: the mean of each column of ``(N, S)`` per-trajectory values with its
  two-sided bias-corrected and accelerated (BCa) bootstrap interval (Efron 1987;
  ``scipy.stats.bootstrap``), resampling trajectories.
- :func:`paired`: a paired bootstrap of the per-trajectory differences ``a - b``: the mean
  difference with its interval, and the probability that ``a`` is lower than ``b`` (the
  share of bootstrap means of the difference below zero); :func:`paired_statistic`, the
  same for any statistic of several models' per-trajectory scores (a ratio of ratios, say).

Resampling is seeded, so the same scores give the same intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Difference", "intervals", "paired", "paired_statistic"]

RESAMPLES = 2000


def intervals(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``values (N, S)`` -> ``(mean (S,), low (S,), high (S,))``. Columns without spread
    (every trajectory equal) get the degenerate interval ``[mean, mean]``; one trajectory
    gives ``[mean, mean]`` too (nothing to resample)."""
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0)
    low, high = mean.copy(), mean.copy()
    spread = np.ptp(values, axis=0) > 0 if values.shape[0] > 1 else np.zeros_like(mean, dtype=bool)
    if spread.any():
        lo, hi, _ = _bca((values[:, spread],), np.mean, confidence, seed, axis=0)
        low[spread], high[spread] = lo, hi
    return mean, low, high


@dataclass(frozen=True)
class Difference:
    """A paired comparison of ``a`` against ``b`` (lower is better): the mean per-trajectory
    difference ``a - b`` with its ``confidence`` interval, and ``probability`` that ``a``
    is the lower, over ``trajectories`` paired trajectories."""

    mean: float
    low: float
    high: float
    probability: float
    confidence: float
    trajectories: int

    def describe(self, metric: str, event: str = "better") -> str:
        """``<metric> difference <mean> [<low>, <high>] (...), P(<event>) = <probability>``."""
        return (f"{metric} difference {self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
                f"({100 * self.confidence:g}% interval, {self.trajectories} paired trajectories), "
                f"P({event}) = {self.probability:.3f}")


def paired(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, seed: int = 0) -> Difference:
    """Paired bootstrap of ``mean(a - b)``, ``a`` and ``b`` ``(N,)`` per-trajectory values
    of two models on the same trajectories."""
    return paired_statistic((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), confidence, seed)


def paired_statistic(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], confidence: float = 0.95,
                     seed: int = 0) -> Difference:
    """Paired bootstrap of any ``statistic(*samples, axis)`` of ``(N,)`` per-trajectory
    vectors (resampling trajectories jointly), read as a difference: ``probability`` is the
    share of bootstrap values below zero."""
    samples = [np.asarray(s, dtype=np.float64) for s in samples]
    if len({s.shape for s in samples}) != 1 or samples[0].ndim != 1:
        raise ValueError(f"paired scores must be vectors over the same trajectories, got shapes "
                         f"{[s.shape for s in samples]}")
    value = float(statistic(*samples, axis=-1))
    size = samples[0].size
    if size < 2 or not any(np.ptp(s) > 0 for s in samples):
        return Difference(value, value, value, float(value < 0), confidence, size)
    low, high, distribution = _bca(samples, statistic, confidence, seed, paired=True)
    probability = float(np.mean(distribution < 0))
    return Difference(value, float(low), float(high), probability, confidence, size)


def _bca(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], confidence: float, seed: int,
         **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scipy's BCa interval ``(low, high)`` of ``statistic`` over ``samples`` and its
    bootstrap distribution; where BCa is undefined (a degenerate jackknife, e.g. one
    outlier), the percentile interval of the same resamples."""
    from scipy import stats  # here, not at import: only scoring stages pay its ~2 s import
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns where BCa degenerates; the percentile interval replaces it
        result = stats.bootstrap(samples, statistic, vectorized=True, n_resamples=RESAMPLES, confidence_level=confidence,
                                 method="BCa", rng=np.random.default_rng(seed), **options)
    low, high = np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)
    percentile = np.percentile(result.bootstrap_distribution, [50 * (1 - confidence), 50 * (1 + confidence)], axis=-1)
    return (np.where(np.isfinite(low), low, percentile[0]), np.where(np.isfinite(high), high, percentile[1]),
            result.bootstrap_distribution)
