"""The comparison report, laid out like the LoLA paper's tables: one row per model kind and
compression rate (the latest evaluated version of each), one column per lead-time window.

Written to ``reports/comparison.md`` and ``reports/comparison.png``; ``latentops compare``
prints the markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pipelines import plots
from pipelines.io import atomic_path, write_text
from pipelines.metrics import BAND_NAMES

REPORTS = Path("reports")
KIND_ORDER = {"autoencoder": 0, "diffusion": 1, "solver": 2, "pixel_solver": 3, "persistence": 4}
KIND_NAMES = {"autoencoder": "autoencoder", "diffusion": "diffusion", "solver": "neural solver (latent)",
              "pixel_solver": "neural solver (pixel)", "persistence": "persistence (baseline)"}


def latest(results: Sequence[dict]) -> list[dict]:
    """The latest evaluated version of every (kind, latent width), in table order."""
    rows: dict[tuple[str, str], dict] = {}
    for r in results:
        key = (r["kind"], r["latent_channels"])
        if key not in rows or r["version"] > rows[key]["version"]:
            rows[key] = r
    return sorted(rows.values(), key=lambda r: (KIND_ORDER.get(r["kind"], 9), _rate(r)))


def _rate(r: dict) -> float:
    try:
        return float(r["compression_rate"])
    except ValueError:
        return math.inf


def _cell(metrics: dict, key: str, digits: int = 3) -> str:
    value = metrics.get(key)
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def table(results: Sequence[dict], windows: Sequence[str]) -> str:
    """The markdown report: VRMSE against the truth (with spread-skill and inference time),
    then against the auto-encoded truth and the power-spectrum RMSE."""
    rows = latest(results)
    if not rows:
        return "No evaluated versions yet: run `latentops evaluate` (or `dvc repro`).\n"
    head = ["model", "rate", "version"]
    lines = [
        "## VRMSE against the ground truth, by lead-time window",
        "",
        _row(head + [f"VRMSE {w}" for w in windows] + [f"spread-skill {w}" for w in windows] + ["s / trajectory"]),
        _row(["---"] * (3 + 2 * len(windows) + 1)),
    ]
    for r in rows:
        m = r["metrics"]
        lines.append(_row([KIND_NAMES.get(r["kind"], r["kind"]), r["compression_rate"] or "–", str(r["version"] or "–")]
                          + [_cell(m, f"vrmse_{w}") for w in windows]
                          + [_cell(m, f"spread_skill_{w}", 2) for w in windows]
                          + [_cell(m, "seconds_per_trajectory", 2)]))
    last = windows[-1]
    lines += [
        "",
        f"## Against the auto-encoded truth D(E(x)), and power-spectrum RMSE by band (lead window {last})",
        "",
        _row(head + [f"VRMSE vs D(E(x)) {w}" for w in windows] + [f"PS-RMSE {b}" for b in BAND_NAMES]),
        _row(["---"] * (3 + len(windows) + len(BAND_NAMES))),
    ]
    for r in rows:
        m = r["metrics"]
        lines.append(_row([KIND_NAMES.get(r["kind"], r["kind"]), r["compression_rate"] or "–", str(r["version"] or "–")]
                          + [_cell(m, f"ae_truth/vrmse_{w}") for w in windows]
                          + [_cell(m, f"psrmse_{b}_{last}") for b in BAND_NAMES]))
    lines += ["", "Rows: the latest evaluated version of each model kind and compression rate. Spread-skill: "
              "stochastic emulators only (~1 calibrated, < 1 under-dispersed). Time: one trajectory, every member, "
              "decoded to physical fields."]
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def write(results: Sequence[dict], windows: Sequence[str], directory: Path = REPORTS) -> list[Path]:
    """``comparison.md`` and ``comparison.png`` under ``directory``, written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / "comparison.md"
    write_text(markdown, "# Model comparison\n\n" + table(results, windows))
    figure = directory / "comparison.png"
    rows = latest(results)
    groups = [f"{KIND_NAMES.get(r['kind'], r['kind'])}\nrate {r['compression_rate'] or '–'}" for r in rows]
    series = {w: [r["metrics"].get(f"vrmse_{w}", float("nan")) for r in rows] for w in windows}
    fig = plots.grouped_bars(groups, series, "VRMSE against the ground truth by lead-time window", "VRMSE")
    with atomic_path(figure) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plots.plt.close(fig)
    return [markdown, figure]
