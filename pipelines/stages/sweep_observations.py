"""Stage ``sweep_observations``: how a registered assimilator's skill depends on its sensors.

The twin experiment (``pipelines.evaluation.twin``) of one decoder-route assimilator on the
first ``sweep_observations.trajectories`` trajectories of ``split``, repeated over a grid of
sensor densities (``fractions`` of the grid points) and noise levels (``noises``, times each
field's standard deviation); the assimilator's own layout gives the fields read and the
cadence. The layouts are nested: one random order of every grid point (``seed``), each
fraction its first points, so a denser layout holds every sensor of a sparser one. Each cell
is scored like ``evaluate`` scores assimilators: VRMSE and CRPS of the analysis ensemble by
lead window, with bootstrap intervals over trajectories.

By default the assimilator is the exported version of ``sweep_observations.assimilator`` (a
name of ``register_assimilator.assimilators``); ``latentops sweep-observations --model REF``
sweeps any registered version. Outputs: ``metrics/sweep_observations.json`` (the grid),
``metrics/sweep_observations/noise_<n>.csv`` (VRMSE by fraction and lead window, ``dvc
plots``), ``reports/sweep_observations.png`` (a heat map per lead window and the curves), and
one MLflow run in ``<dataset>/sweep_observations`` with all of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlflow
import numpy as np
from tqdm import tqdm

from pipelines import layout as paths
from pipelines import plots
from pipelines.data.observations import Layout, place, sensor_count
from pipelines.evaluation.scoring import Truth, window_label
from pipelines.evaluation.twin import score_assimilator
from pipelines.io import atomic_path, write_json, write_text
from pipelines.options import add_quiet, section
from pipelines.serving.assimilator_model import AssimilatorModel
from pipelines.settings.assimilation import SweepObservationsConfig
from pipelines.settings.data import DataConfig
from pipelines.tracking import names
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking
from pipelines.tracking.references import load_model

STAGE = "sweep_observations"


def layouts(base: Layout, fractions: tuple[float, ...], noises: tuple[float, ...], resolution: tuple[int, int],
            seed: int) -> list[tuple[float, float, Layout]]:
    """``(fraction, noise, layout)`` for every cell of the grid: ``base``'s fields and cadence,
    the first ``fraction`` of one random order of every grid point (drawn from ``seed``),
    noise ``noise``."""
    order = place(resolution[0] * resolution[1], resolution, seed)  # (H W, 2): denser layouts extend sparser ones
    return [(f, n, Layout(f"{base.name}_f{f:g}_n{n:g}", order[: sensor_count(f, resolution)], base.fields,
                          base.channels, base.every, n))
            for f in fractions for n in noises]


def run(cfg: SweepObservationsConfig, data: DataConfig, reference: str | None = None,
        progress: bool = True) -> dict[str, object]:
    """Sweep the assimilator ``reference`` (a version, an alias or a URI of
    ``<dataset>-assimilator``; default: the exported ``cfg.assimilator``); write and track the
    grid. Returns ``{"model", "fractions", "noises", "vrmse": {window: (F, N) nested lists}}``."""
    truth = Truth.load(data, cfg.split, cfg.trajectories)
    reference = reference or str(paths.registered_dir(paths.assimilator(cfg.assimilator)))
    uri, model = load_model(reference, names.assimilator_name(truth.dataset))
    assimilator = model.unwrap_python_model()
    if not isinstance(assimilator, AssimilatorModel):
        raise ValueError(f"--model {reference}: {uri} is not a registered assimilator (<dataset>-assimilator)")
    if assimilator.assimilator.encoder is not None:
        raise ValueError(f"--model {reference}: {uri} assimilates through its observation encoder, which reads only "
                         "the sensors it was trained on; sweep a decoder-route assimilator (encoder: false)")
    exported = Path(uri) / registry.REGISTERED  # an exported version says which registered one it is
    version = json.loads(exported.read_text()) if exported.is_file() else None
    label = f"{version['name']} v{version['version']}" if version else uri
    base = Layout.from_dict(assimilator.layout, truth.channels)
    resolution = tuple(truth.states.shape[-2:])
    windows = [window_label(a, b) for a, b in cfg.lead_windows]
    last = max(b for _, b in cfg.lead_windows)
    grid = layouts(base, cfg.fractions, cfg.noises, resolution, cfg.seed)
    cells = []
    for fraction, noise, observing in tqdm(grid, desc="sweep", unit="cell", disable=not progress):
        card = score_assimilator(assimilator.assimilator, observing, truth, last, cfg.seed).scorecard(
            cfg.lead_windows, cfg.confidence, cfg.seed)
        cells.append({"fraction": fraction, "noise": noise, "sensors": len(observing.points),
                      **{name: [e.value, e.low, e.high] for name, e in card.estimates.items()
                         if name.rsplit("_", 1)[0] in ("vrmse", "crps") and "/" not in name},
                      "seconds_per_cycle": card.value("seconds_per_cycle")})
    by_cell = {(cell["fraction"], cell["noise"]): cell for cell in cells}
    vrmse = np.array([[[by_cell[f, n][f"vrmse_{w}"][0] for n in cfg.noises] for f in cfg.fractions]
                      for w in windows])  # (W, F, N)
    summary = {"model": uri, "registered": version, "fractions": list(cfg.fractions), "noises": list(cfg.noises),
               "layout": {"fields": list(base.fields), "every": base.every}, "trajectories": len(truth.states),
               "split": cfg.split, "cells": cells}
    _write(summary, vrmse, windows, cfg, label, data, truth.dataset)
    return {"model": uri, "fractions": list(cfg.fractions), "noises": list(cfg.noises),
            "vrmse": {w: vrmse[k].tolist() for k, w in enumerate(windows)}}


def _write(summary: dict, vrmse: np.ndarray, windows: list[str], cfg: SweepObservationsConfig, label: str,
           data: DataConfig, dataset: str) -> None:
    write_json(paths.SWEEP, summary)
    with atomic_path(paths.SWEEP_CURVES) as tmp:
        tmp.mkdir(parents=True)
        for n, noise in enumerate(cfg.noises):
            rows = [",".join([f"{f:g}", *(f"{vrmse[w, k, n]:.6g}" for w in range(len(windows)))])
                    for k, f in enumerate(cfg.fractions)]
            write_text(tmp / f"noise_{noise:g}.csv", "\n".join([",".join(["fraction", *(f"vrmse_{w}" for w in windows)]),
                                                               *rows]) + "\n")
    fig = plots.sweep_panel(vrmse, cfg.fractions, cfg.noises, windows,
                            f"{label}: analysis VRMSE against sensor density and noise ({summary['trajectories']} "
                            f"{cfg.split} trajectories)")
    with atomic_path(paths.SWEEP_FIGURE) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plots.plt.close(fig)
    with tracking.start_run(STAGE, dataset, {STAGE: cfg, "data": data}, data.root, run_name="sweep-observations",
                            tags={"model": summary["model"], "model.label": label}, system_metrics=False):
        for cell in summary["cells"]:
            at = f"f{cell['fraction']:g}_n{cell['noise']:g}"
            mlflow.log_metrics({f"{name}/{at}": value[0] for name, value in cell.items() if isinstance(value, list)})
        for path in (paths.SWEEP, paths.SWEEP_FIGURE):
            mlflow.log_artifact(str(path))
        mlflow.log_artifacts(str(paths.SWEEP_CURVES), "curves")


# --------------------------------------------------------------------------- latentops sweep-observations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the twin experiment of a decoder-route <dataset>-assimilator version on the first "
        "sweep_observations.trajectories trajectories of sweep_observations.split over a grid of sensor "
        "fractions (sweep_observations.fractions, nested layouts: denser ones hold every sensor of sparser "
        "ones) and noise levels (sweep_observations.noises, times each field's std), keeping its fields and "
        "cadence; score each cell like evaluate (VRMSE and CRPS of the analysis by lead window, bootstrap "
        f"intervals). Writes {paths.SWEEP}, {paths.SWEEP_CURVES}/noise_<n>.csv (dvc plots) and "
        f"{paths.SWEEP_FIGURE} (a heat map per lead window and the curves); one MLflow run.")
    add_quiet(parser)
    parser.add_argument("--model", help="version, alias or models:/ URI of <dataset>-assimilator (default: the "
                                        "exported version of sweep_observations.assimilator)")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, SweepObservationsConfig, "sweep_observations")
    outcome = run(cfg, section(args, DataConfig, "data"), args.model, progress=not args.quiet)
    window, values = list(outcome["vrmse"].items())[-1]
    for noise, column in zip(outcome["noises"], zip(*values)):
        print(f"sweep-observations: {outcome['model']}: VRMSE {window} at noise {noise:g}, by sensor fraction "
              + ", ".join(f"{f:g}: {v:.3f}" for f, v in zip(outcome["fractions"], column)))
    print(f"wrote {paths.SWEEP}, {paths.SWEEP_CURVES}/ and {paths.SWEEP_FIGURE}")
    return 0
