"""Figures people would rather look at than read: loss curves and reconstruction panels.
Each function returns a matplotlib figure (Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, ylabel: str,
           log: bool = True) -> Figure:
    """One line per named ``(steps, values)`` series."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def reconstruction_panel(truth: np.ndarray, prediction: np.ndarray, channels: Sequence[str],
                         title: str) -> Figure:
    """Rows: fields; columns: truth, reconstruction, absolute error. ``truth`` and
    ``prediction`` are ``(C, H, W)`` in physical units."""
    c = len(channels)
    fig, axes = plt.subplots(c, 3, figsize=(7.5, 2.3 * c), squeeze=False, constrained_layout=True)
    for i, name in enumerate(channels):
        lo, hi = float(truth[i].min()), float(truth[i].max())
        error = np.abs(prediction[i] - truth[i])
        for j, (image, label, kwargs) in enumerate((
            (truth[i], "truth", {"vmin": lo, "vmax": hi, "cmap": "viridis"}),
            (prediction[i], "reconstruction", {"vmin": lo, "vmax": hi, "cmap": "viridis"}),
            (error, "|error|", {"cmap": "magma"}),
        )):
            ax = axes[i, j]
            im = ax.imshow(image.T, origin="lower", **kwargs)  # (x, y) arrays: x to the right
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(label)
            if j == 0:
                ax.set_ylabel(name)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(title)
    return fig
