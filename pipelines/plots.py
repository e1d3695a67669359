"""Figures people would rather look at than read: loss curves, reconstruction panels and
ensemble rank histograms. Each function returns a matplotlib figure (Agg backend, no display
needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, ylabel: str,
           log: bool = True, xlabel: str = "step") -> Figure:
    """One line per named ``(x, values)`` series."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    if log:
        ax.set_yscale("log")
        ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _image_grid(cells: Sequence[Sequence[tuple[np.ndarray, dict]]], row_labels: Sequence[str],
                col_labels: Sequence[str], title: str) -> Figure:
    """A grid of ``(image (X, Y), imshow kwargs)`` cells with a colour bar each."""
    rows, cols = len(cells), len(cells[0])
    # A fixed layout: matplotlib's constrained layout measures every colour bar's tick labels
    # and took about two thirds of the time of such a figure.
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.3 * rows), squeeze=False)
    fig.subplots_adjust(left=0.3 / cols, right=1 - 0.25 / cols, bottom=0.02, top=1 - 0.35 / rows, wspace=0.45,
                        hspace=0.15)
    for i, row in enumerate(cells):
        for j, (image, kwargs) in enumerate(row):
            ax = axes[i, j]
            im = ax.imshow(image.T, origin="lower", **kwargs)  # (x, y) arrays: x to the right
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j])
            if j == 0:
                ax.set_ylabel(row_labels[i])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(title)
    return fig


def _triple(truth: np.ndarray, prediction: np.ndarray) -> list[tuple[np.ndarray, dict]]:
    """Truth and prediction on the truth's colour scale, then the absolute error."""
    scale = {"vmin": float(truth.min()), "vmax": float(truth.max()), "cmap": "viridis"}
    return [(truth, scale), (prediction, scale), (np.abs(prediction - truth), {"cmap": "magma"})]


def reconstruction_panel(truth: np.ndarray, prediction: np.ndarray, channels: Sequence[str],
                         title: str) -> Figure:
    """Rows: fields; columns: truth, reconstruction, absolute error. ``truth`` and
    ``prediction`` are ``(C, H, W)`` in physical units."""
    cells = [_triple(truth[i], prediction[i]) for i in range(len(channels))]
    return _image_grid(cells, channels, ["truth", "reconstruction", "|error|"], title)


def assimilation_panel(truth: np.ndarray, free: np.ndarray, analysis: np.ndarray, spread: np.ndarray,
                       sensors: np.ndarray, title: str) -> Figure:
    """One field at one time: the truth with the sensors (white dots), the free forecast's
    and the analysis' ensemble means on the truth's colour scale, and the analysis spread.
    Images are ``(H, W)``; ``sensors`` is ``(S, 2)`` grid indices."""
    scale = {"vmin": float(truth.min()), "vmax": float(truth.max()), "cmap": "viridis"}
    cells = [[(truth, scale), (free, scale), (analysis, scale), (spread, {"cmap": "magma"})]]
    fig = _image_grid(cells, [""], ["truth and sensors", "free forecast", "analysis", "analysis spread"], title)
    fig.axes[0].scatter(sensors[:, 0], sensors[:, 1], s=6, c="white", edgecolors="black", linewidths=0.3)
    return fig


def rollout_panel(truth: np.ndarray, prediction: np.ndarray, leads: Sequence[int], title: str) -> Figure:
    """One field along a rollout. Rows: truth, prediction, absolute error; columns: lead
    times. ``truth`` and ``prediction`` are ``(T, H, W)``, one frame per entry of ``leads``.
    Truth and prediction share the truth's colour scale over all the leads, the errors one
    scale of their own, so colours compare across leads (one colour bar per row)."""
    error = np.abs(prediction - truth)
    scale = {"vmin": float(truth.min()), "vmax": float(truth.max()), "cmap": "viridis"}
    rows = [(truth, scale), (prediction, scale), (error, {"vmin": 0.0, "vmax": float(error.max()), "cmap": "magma"})]
    cols = len(leads)
    fig, axes = plt.subplots(3, cols, figsize=(2.2 * cols + 1.0, 6.6), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.88, bottom=0.02, top=0.88, wspace=0.05, hspace=0.12)
    for i, (images, kwargs) in enumerate(rows):
        for j in range(cols):
            ax = axes[i, j]
            im = ax.imshow(images[j].T, origin="lower", **kwargs)  # (x, y) arrays: x to the right
            ax.set_axis_off()
            if i == 0:
                ax.set_title(f"lead {leads[j]}")
        axes[i, 0].text(-0.08, 0.5, ["truth", "prediction", "|error|"][i], rotation=90, ha="right", va="center",
                        transform=axes[i, 0].transAxes)
        box = axes[i, -1].get_position()
        fig.colorbar(im, cax=fig.add_axes((0.9, box.y0, 0.015, box.height)))
    fig.suptitle(title)
    return fig


def spectra(wavenumbers: np.ndarray, truth: np.ndarray, prediction: np.ndarray, leads: Sequence[int],
            channels: Sequence[str], title: str) -> Figure:
    """Isotropic power spectra of truth (solid) and prediction (dashed), one panel per field,
    one colour per lead. ``truth`` and ``prediction`` are ``(T, C, K)``."""
    fig, axes = plt.subplots(1, len(channels), figsize=(3.2 * len(channels), 3), squeeze=False)
    fig.subplots_adjust(left=0.25 / len(channels), right=0.99, bottom=0.17, top=0.8, wspace=0.3)  # fixed: faster
    for c, name in enumerate(channels):
        ax = axes[0, c]
        for t, lead in enumerate(leads):
            line, = ax.loglog(wavenumbers, truth[t, c], label=f"lead {lead}")
            ax.loglog(wavenumbers, prediction[t, c], "--", color=line.get_color())
        ax.set(title=name, xlabel="wavenumber k")
        ax.minorticks_off()  # log axes' minor ticks took two thirds of the figure's time
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("power (solid: truth, dashed: prediction)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def rollout_animation(truth: np.ndarray, prediction: np.ndarray, leads: Sequence[int], field: str,
                      path: str, size: int = 192) -> None:
    """A GIF of one field along a rollout: truth, prediction and absolute error side by side
    (truth and prediction on the truth's colour scale), one frame per lead, captioned.
    ``truth`` and ``prediction`` are ``(T, H, W)``; each panel is about ``size`` pixels.

    Drawn from the arrays with matplotlib's colour maps and Pillow, not frame by frame with
    matplotlib (which took ~2 s a rollout)."""
    from PIL import Image, ImageDraw

    lo, hi = float(truth.min()), float(truth.max())
    error = np.abs(prediction - truth)
    top = max(float(error.max()), 1e-12)
    colour, heat = matplotlib.colormaps["viridis"], matplotlib.colormaps["magma"]
    scale = max(1, size // max(truth.shape[1:]))
    gap, header = 4, 18

    def panel(image: np.ndarray, cmap, vmin: float, vmax: float) -> np.ndarray:
        rgb = cmap(np.clip((image - vmin) / max(vmax - vmin, 1e-12), 0, 1))[..., :3]
        rgb = np.flipud(rgb.transpose(1, 0, 2))  # (x, y) arrays: x to the right, y up
        return np.kron(rgb, np.ones((scale, scale, 1)))

    frames = []
    for t, lead in enumerate(leads):
        panels = [panel(truth[t], colour, lo, hi), panel(prediction[t], colour, lo, hi), panel(error[t], heat, 0, top)]
        white = np.ones((panels[0].shape[0], gap, 3))
        row = np.concatenate([panels[0], white, panels[1], white, panels[2]], axis=1)
        row = np.concatenate([np.ones((header, row.shape[1], 3)), row], axis=0)
        frame = Image.fromarray((255 * row).astype(np.uint8))
        ImageDraw.Draw(frame).text((4, 3), f"{field}, lead {lead}: truth | prediction | |error|", fill=(0, 0, 0))
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=250, loop=0)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
                 log: bool = True, errors: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> Figure:
    """One group of bars per entry of ``groups``, one bar per named series (log scale with
    ``log``); ``errors``: an interval ``(low, high)`` per bar of a series, drawn as an error bar."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) * len(series) / 2), 4), constrained_layout=True)
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        yerr = None
        if errors is not None and name in errors:
            bounds = np.asarray(errors[name], dtype=float)  # (groups, 2)
            yerr = np.abs(np.stack([np.asarray(values) - bounds[:, 0], bounds[:, 1] - np.asarray(values)]))
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name, yerr=yerr, capsize=2)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set(ylabel=ylabel, title=title)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return fig


def pareto_front(values: Sequence[Sequence[float]], front: Sequence[Sequence[float]], numbers: Sequence[int],
                 names: Sequence[str], title: str) -> Figure:
    """Two objectives of every trial (``values``, labelled by trial ``numbers``), with the
    Pareto-optimal ones (``front``) joined as a staircase; both minimised."""
    points, best = np.asarray(values, dtype=float), np.asarray(sorted(front), dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    ax.scatter(points[:, 1], points[:, 0], c="0.6", label="trials")
    for number, (y, x) in zip(numbers, points):
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color="0.4")
    if len(best):
        order = np.argsort(best[:, 1])
        ax.step(best[order, 1], best[order, 0], where="post", color="C3")
        ax.scatter(best[:, 1], best[:, 0], c="C3", label="Pareto front", zorder=3)
    ax.set(xlabel=names[1], ylabel=names[0], title=title)
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def rank_histogram(counts: Sequence[int] | np.ndarray, title: str) -> Figure:
    """Relative frequency of each rank ``0 .. M`` of the truth among ``M`` members, from
    ``(M + 1,)`` counts (``metrics.rank_histogram``), against the flat ``1 / (M + 1)`` of a
    calibrated ensemble."""
    counts = np.asarray(counts, dtype=float)
    members = len(counts) - 1
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.bar(np.arange(members + 1), counts / max(counts.sum(), 1.0), width=0.9, color="C0")
    ax.axhline(1 / (members + 1), color="k", linestyle="--", label="flat (calibrated)")
    ax.set(xlabel=f"rank of the truth among {members} members", ylabel="frequency", title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return fig


def sweep_panel(values: np.ndarray, fractions: Sequence[float], noises: Sequence[float], windows: Sequence[str],
                title: str) -> Figure:
    """Skill against sensor density and noise: ``values (W, F, N)`` (VRMSE per lead window,
    sensor fraction and noise level) as one annotated heat map per window (fractions across,
    noise levels down), and below, VRMSE against the fraction, one line per window and noise."""
    count = len(windows)
    fig, axes = plt.subplots(2, count, figsize=(3.2 * count + 0.5, 6.4), squeeze=False)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.09, top=0.86, wspace=0.45, hspace=0.5)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    for w, window in enumerate(windows):
        ax = axes[0, w]
        ax.imshow(values[w].T, origin="upper", cmap="viridis_r", vmin=low, vmax=high, aspect="auto")
        for f in range(len(fractions)):
            for n in range(len(noises)):
                ax.text(f, n, f"{values[w, f, n]:.2f}", ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(fractions)), [f"{100 * f:g}%" for f in fractions], fontsize=8)
        ax.set_yticks(range(len(noises)), [f"{n:g}" for n in noises], fontsize=8)
        ax.set(title=f"VRMSE {window}", xlabel="sensor fraction", ylabel="noise / field std" if w == 0 else None)
        line = axes[1, w]
        for n, noise in enumerate(noises):
            line.plot(fractions, values[w, :, n], marker="o", label=f"noise {noise:g}")
        line.set_xscale("log")
        line.set(xlabel="sensor fraction", ylabel="VRMSE" if w == 0 else None)
        line.grid(alpha=0.3)
    axes[1, 0].legend(fontsize=8)
    fig.suptitle(title)
    return fig
