"""Stage ``assimilate``: the twin experiment of latent data assimilation (LD-EnSF).

The first ``assimilate.trajectories`` trajectories of ``assimilate.split`` play the truth.
Each is observed (``pipelines.data.observations.sample``: a fraction ``sensors`` of the grid
points, every ``every`` stored steps, noise ``noise`` times each field's standard deviation;
written to ``data/observations/<split>_<i>.h5``), and for the best evaluated version of each
latent kind in ``assimilate.kinds`` (lowest ``vrmse_mean`` in ``metrics/evaluation.json``),
every method of the table ``pipelines.serving.methods.METHODS`` runs through the one twin
experiment loop (``pipelines.evaluation.twin.experiment``), e.g.:

- ``free``: the emulator's forecast from the first state, ``members`` members, no readings;
- ``ensf``: the same emulator and ensemble, corrected by the latent ensemble score filter
  wherever readings exist (``pipelines.serving.assimilator``);
- ``encoded``, ``mmps``, and the full-space ``letkf`` (once, on the first
  ``assimilate.enkf.trajectories`` trajectories).

All are scored by the evaluation's metric suite (VRMSE of the ensemble mean, fair CRPS,
spread-skill) at every forecast time, per lead window with bootstrap intervals over
trajectories; the ratio of the filter's VRMSE to the free forecast's, per window, gets a
paired bootstrap interval. Wall time per cycle (forecast step and analysis, all members) is
measured for each. Outputs: ``metrics/assimilation.json``, ``metrics/assimilation/<row>.csv``
(per lead, ``dvc plots``), ``reports/assimilation.md`` and two figures, and one MLflow run
in ``<dataset>/assimilate`` with the versions used as lineage tags.

``latentops assimilate`` (:func:`assimilate`) is the same filter on one observation file and
any registered version: the analysis in The Well's channels-last layout, plots, an MLflow run
with the model version and the file's hash.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import mlflow
import numpy as np
import torch

from models.kinds import kind
from models.forecaster import Forecaster
from pipelines import layout, plots
from pipelines.data.observations import ObservationError, layout_of, read_checked
from pipelines.evaluation import letkf  # noqa: F401  (registers the full-space LETKF in METHODS)
from pipelines.evaluation.bootstrap import intervals, paired_statistic
from pipelines.evaluation.metrics import vrmse
from pipelines.evaluation.scorecard import Estimate, Result
from pipelines.evaluation.scoring import Truth, curve_table, window_label
from pipelines.evaluation.timing import machine
from pipelines.evaluation.twin import METRICS, TwinScores, experiment, observe, readings
from pipelines.io import atomic_path, write_json, write_text
from pipelines.options import add_quiet, section
from pipelines.serving.assimilator import LatentAssimilator, hide
from pipelines.serving.assimilator_model import AssimilatorModel
from pipelines.serving.methods import METHODS, Assimilator, Setup
from pipelines.settings.assimilation import AssimilateConfig
from pipelines.settings.data import DataConfig
from pipelines.settings.sensors import SensorLayoutConfig, SensorsConfig
from pipelines.settings.simulate import SimulateConfig
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking
from pipelines.tracking.references import load_emulator

STAGE = "assimilate"
CURVES = tuple(m.name for m in METRICS)


@dataclass
class Version:
    """A registered emulator version chosen for the experiment, and its forecaster."""

    label: str  # as in metrics/evaluation.json, e.g. solver_c16_v4
    kind: str
    name: str  # the registered model, e.g. euler_mini-emulator
    version: int
    forecaster: Forecaster
    encoder: registry.LoadedObsEncoder

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def chosen(kinds: tuple[str, ...], evaluation: Path = layout.EVALUATION) -> list[tuple[str, dict]]:
    """The best evaluated version (lowest ``vrmse_mean``) of each of ``kinds``, from
    ``evaluation`` (``metrics/evaluation.json``): ``(label, row)`` pairs."""
    if not evaluation.is_file():
        raise FileNotFoundError(f"{evaluation} not found: run `latentops evaluate` first")
    rows = json.loads(evaluation.read_text())
    picked = []
    for kind in kinds:
        candidates = [(label, row) for label, row in rows.items() if row.get("kind") == kind and row.get("version")]
        if not candidates:
            raise ValueError(f"assimilate.kinds: {evaluation} has no evaluated {kind} version; evaluated kinds are "
                             f"{sorted({r.get('kind') for r in rows.values() if r.get('version')})}")
        picked.append(min(candidates, key=lambda item: item[1]["metrics"]["vrmse_mean"]))
    return picked


def _load(label: str, row: dict, layout_name: str) -> Version:
    """The version of ``row`` and the exported observation encoder of ``layout_name`` into
    its autoencoder's latents (checked to be of the same autoencoder version)."""
    uri = f"models:/{row['name']}/{row['version']}"
    forecaster = registry.load_pyfunc(uri).unwrap_python_model().forecaster
    c = forecaster.autoencoder.latent_channels
    encoder = registry.load_exported_obs_encoder(layout.registered_dir(layout.obs_encoder(layout_name, c)))
    used = registry.configure().get_model_version(row["name"], str(row["version"])).tags.get("autoencoder_version")
    registry.check_same_autoencoder(encoder, used, uri)
    return Version(label, row["kind"], row["name"], int(row["version"]), forecaster, encoder)


def _setup(v: Version | None, cfg: AssimilateConfig, simulate: SimulateConfig, truth: Truth,
           names: list[str], stride: int) -> Setup:
    """What the methods of the table are built from: version ``v``'s forecaster and
    observation encoder (``None``: a full-space method's), and the stage's settings."""
    options = {"assimilate": cfg, "enkf": cfg.enkf, "simulate": simulate, "channels": truth.channels,
               "condition_names": names, "stride": stride}
    if v is None:
        return Setup(None, cfg.enkf.members, options=options)
    return Setup(v.forecaster, cfg.members, cfg.filter, cfg.encoder_filter, v.encoder.model, v.encoder.parameters,
                 cfg.estimate, cfg.mmps.iterations, options)


def _methods(versions: list[Version], cfg: AssimilateConfig, simulate: SimulateConfig, truth: Truth,
             stride: int) -> dict[str, Assimilator]:
    """The latent methods of :data:`METHODS` on each version that they apply to, by row label
    (``<method>_<version>``), in the table's order within each version."""
    return {f"{m.name}_{v.label}": m.build(_setup(v, cfg, simulate, truth, v.forecaster.condition_names, stride))
            for v in versions for m in METHODS.values()
            if m.full_space is None and (not m.diffusion or kind(v.kind).stochastic)}


def run(cfg: AssimilateConfig, sensors_cfg: SensorsConfig, data: DataConfig,
        simulate: SimulateConfig, progress: bool = True) -> dict[str, object]:
    """Run the twin experiment (``sensors_cfg``: the layouts, of which ``cfg.layout`` is
    observed; ``simulate``: the Clawpack settings of the full-space baseline); returns a
    summary (rows, VRMSE ratios to the free forecast, timings, parameter errors)."""
    torch.manual_seed(cfg.seed)
    sensor_layout = sensors_cfg.layout(cfg.layout, "assimilate.layout")
    versions = [_load(label, row, cfg.layout) for label, row in chosen(cfg.kinds)]
    truth = Truth.load(data, cfg.split, cfg.trajectories)
    observing = layout_of(cfg.layout, sensor_layout, truth.channels, tuple(truth.states.shape[-2:]))
    unknown = sorted(set(cfg.estimate) - set(versions[0].encoder.parameters))
    if unknown:
        raise ValueError(f"assimilate.estimate: {unknown} are not estimated by the observation encoders, which "
                         f"estimate {list(versions[0].encoder.parameters)} (train_obs_encoder.parameters)")
    stride = versions[0].forecaster.stride
    leads = truth.leads(stride, max(last for _, last in cfg.lead_windows))
    observed = observe(observing, truth, cfg.seed)
    for i, observations in enumerate(observed):
        observations.write(layout.observations(cfg.split, i))
    results = experiment(_methods(versions, cfg, simulate, truth, stride), truth, observed, leads, stride, cfg.seed,
                         "assimilate" if progress else None)
    rows = {label: (Result(label, v.kind, result.scores.scorecard(cfg.lead_windows, cfg.confidence, cfg.seed),
                           v.name, v.version), result.scores, result.seconds_per_cycle)
            for label, result in results.items()
            for v in versions if label.split("_", 1)[1] == v.label}
    first = versions[0].label
    free, ensf = results[f"free_{first}"].first.movedim(1, 2), results[f"ensf_{first}"].first.movedim(1, 2)
    panel = {"free": free.mean(dim=0)[:, -1].numpy(), "analysis": ensf.mean(dim=0)[:, -1].numpy(),
             "spread": ensf.std(dim=0)[:, -1].numpy(), "sensors": observed[0].index}
    extra = {"parameter_error": _parameter_errors(results, cfg), "layout": cfg.layout}
    names = versions[0].forecaster.condition_names
    for m in METHODS.values():
        if m.full_space is None or cfg.enkf.trajectories == 0:
            continue
        count = min(cfg.enkf.trajectories, len(truth.states))
        method = m.build(_setup(None, cfg, simulate, truth, names, stride))
        label = f"{m.name}_{m.full_space}"
        result = experiment({label: method}, truth.pick(slice(0, count)), observed[:count], leads, stride, cfg.seed,
                            label if progress else None)[label]
        rows[label] = (Result(label, m.name, result.scores.scorecard(cfg.lead_windows, cfg.confidence, cfg.seed)),
                       result.scores, result.seconds_per_cycle)
        if hasattr(method, "repairs"):
            extra[f"{m.name}_repaired_values"] = method.repairs
    ratios = _ratios(rows, cfg)
    return _write(rows, ratios, versions, truth, panel, leads, cfg, data, extra, sensor_layout)


def _parameter_errors(results: dict[str, TwinScores], cfg: AssimilateConfig) -> dict[str, dict[str, list[float]]]:
    """Per row that estimated conditioning entries: each entry's absolute error at the last
    cycle, ``[mean, low, high]`` with a bootstrap interval over trajectories."""
    out = {}
    for label, result in results.items():
        if result.estimated:
            mean, low, high = intervals(result.errors, cfg.confidence, cfg.seed)
            out[label] = {name: [float(mean[k]), float(low[k]), float(high[k])]
                          for k, name in enumerate(result.estimated)}
    return out


def _ratios(rows: dict, cfg: AssimilateConfig) -> dict[str, dict[str, Estimate]]:
    """Per assimilating row (``<method>_<version>``) and lead window: its mean VRMSE over the
    free forecast's of the same version, with a paired bootstrap interval over trajectories."""
    out = {}
    for label, (result, _, _) in rows.items():
        method, version = label.split("_", 1)
        free = rows.get(f"free_{version}")
        if method == "free" or free is None:
            continue
        out[label] = {}
        for first, last in cfg.lead_windows:
            name = f"vrmse_{window_label(first, last)}"
            if name not in result.card.trajectories:
                continue
            pair = (np.array(result.card.trajectories[name]), np.array(free[0].card.trajectories[name]))
            ratio = paired_statistic(pair, lambda a, b, axis=-1: np.mean(a, axis=axis) / np.mean(b, axis=axis),
                                     cfg.confidence, cfg.seed)
            out[label][window_label(first, last)] = Estimate(ratio.mean, ratio.low, ratio.high)
    return out


def _write(rows: dict, ratios: dict, versions: list[Version], truth: Truth, panel: dict, leads: list[int],
           cfg: AssimilateConfig, data: DataConfig, extra: dict, observing: SensorLayoutConfig) -> dict[str, object]:
    windows = [window_label(a, b) for a, b in cfg.lead_windows]
    summary = {label: result.summary() | {"method": label.split("_", 1)[0], "seconds_per_cycle": per_cycle,
                                          "trajectories": int(scores.values["vrmse"].shape[0])}
               for label, (result, scores, per_cycle) in rows.items()}
    ratio_json = {label: {w: [e.value, e.low, e.high] for w, e in by.items()} for label, by in ratios.items()}
    speedup = {}
    if "letkf_clawpack" in summary:
        speedup = {label: summary["letkf_clawpack"]["seconds_per_cycle"] / summary[label]["seconds_per_cycle"]
                   for label in ratios}
    routes = {v.label: summary[f"ensf_{v.label}"]["seconds_per_cycle"] / summary[f"encoded_{v.label}"]["seconds_per_cycle"]
              for v in versions}
    write_json(layout.ASSIMILATION, {"rows": summary, "vrmse_ratio_over_free": ratio_json,
                                     "cycle_time_letkf_over": speedup, "cycle_time_decoder_over_encoder": routes,
                                     "sensors": observing.fraction, "noise": observing.noise, "every": observing.every,
                                     "members": cfg.members, "trajectories": len(truth.states), **extra})
    with atomic_path(layout.ASSIMILATION_CURVES) as tmp:
        tmp.mkdir(parents=True)
        for label, (_, scores, _) in rows.items():
            columns = {n: dict(zip(scores.leads, scores.by_lead(n).tolist())) for n in CURVES if n in scores.values}
            write_text(tmp / f"{label}.csv", curve_table(columns, CURVES))
    write_text(layout.ASSIMILATION_REPORT, _report(rows, ratios, speedup, routes, extra["parameter_error"], windows,
                                                   cfg, observing))
    series = {f"{METHODS[label.split('_', 1)[0]].label}, {label.split('_', 1)[1]}": (leads, scores.by_lead("vrmse").tolist())
              for label, (_, scores, _) in rows.items()}
    figures = {layout.ASSIMILATION_FIGURE: plots.curves(series, "VRMSE of the ensemble mean against the truth",
                                                        "VRMSE", log=False, xlabel="lead (stored steps)")}
    c = truth.channels.index("density") if "density" in truth.channels else 0
    figures[layout.ASSIMILATION_PANEL] = plots.assimilation_panel(
        truth.states[0, c, leads[-1]].numpy(), panel["free"][c], panel["analysis"][c], panel["spread"][c],
        panel["sensors"], f"{truth.channels[c]}, {cfg.split} trajectory 0, lead {leads[-1]}: "
                          f"{versions[0].label}, {len(np.unique(panel['sensors'], axis=0))} sensor positions")
    for path, fig in figures.items():
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plots.plt.close(fig)
    _track(summary, ratios, versions, cfg, data, truth.dataset)
    return {"rows": {label: {w: s["metrics"].get(f"vrmse_{w}") for w in windows} for label, s in summary.items()},
            "ratios": {label: {w: str(e) for w, e in by.items()} for label, by in ratios.items()},
            "seconds_per_cycle": {label: s["seconds_per_cycle"] for label, s in summary.items()},
            "cycle_time_letkf_over": speedup, "cycle_time_decoder_over_encoder": routes,
            "parameter_error": extra["parameter_error"]}


def _report(rows: dict, ratios: dict, speedup: dict, routes: dict, parameter_errors: dict, windows: list[str],
            cfg: AssimilateConfig, observing: SensorLayoutConfig) -> str:
    head = (f"# Latent data assimilation: twin experiment\n\n{cfg.trajectories} {cfg.split} trajectories observed by "
            f"the sensor layout {cfg.layout}: {observing.fraction:.2%} of the grid points, every {observing.every} "
            f"stored steps, noise {observing.noise:.0%} of each field's standard deviation; {cfg.members} members. "
            f"VRMSE and CRPS of the ensemble, mean [{cfg.confidence:.0%} bootstrap interval] over trajectories, by "
            f"lead window. The encoder route does not know {', '.join(cfg.estimate)} and estimates it.\n\n")
    lines = ["| method | version | trajectories | " + " | ".join(f"VRMSE {w} | CRPS {w}" for w in windows)
             + " | s / cycle |", "|---|---|---|" + "---|---|" * len(windows) + "---|"]
    for label, (result, scores, per_cycle) in rows.items():
        method, version = label.split("_", 1)
        cells = [f"{result.card.get(f'{m}_{w}').cell()}" if f"{m}_{w}" in result.card else "–"
                 for w in windows for m in ("vrmse", "crps")]
        lines.append(f"| {METHODS[method].label} | {version} | {scores.values['vrmse'].shape[0]} | " + " | ".join(cells)
                     + f" | {per_cycle:.3f} |")
    ratio_lines = ["", "VRMSE over the free forecast's of the same version (paired bootstrap over trajectories):", ""]
    ratio_lines += [f"- {label}: " + ", ".join(f"{w}: {e.cell(2)}" for w, e in by.items()) for label, by in ratios.items()]
    if speedup:
        ratio_lines += ["", "Wall time per cycle of the full-space LETKF (Clawpack forecast, physical fields) over "
                            "each latent method's (latent ensemble; decoding for scoring not counted), summed over every "
                            f"cycle of this run on {machine()}:", ""]
        ratio_lines += [f"- {label}: {value:.1f}x" for label, value in speedup.items()]
    ratio_lines += ["", "Wall time per cycle of the latent EnSF through the decoder over through the observation "
                        "encoder:", ""]
    ratio_lines += [f"- {label}: {value:.1f}x" for label, value in routes.items()]
    ratio_lines += ["", f"Absolute error of the estimated conditioning at the last cycle (ensemble mean), mean "
                        f"[{cfg.confidence:.0%} bootstrap interval] over trajectories:", ""]
    ratio_lines += [f"- {label}: " + ", ".join(f"{name} {m:.3f} [{lo:.3f}, {hi:.3f}]" for name, (m, lo, hi) in by.items())
                    for label, by in parameter_errors.items()]
    return head + "\n".join(lines + ratio_lines) + "\n"


def _track(summary: dict, ratios: dict, versions: list[Version], cfg: AssimilateConfig, data: DataConfig,
           dataset: str) -> None:
    tags = {f"model.{v.kind}": v.uri for v in versions}
    with tracking.start_run(STAGE, dataset, {"assimilate": cfg, "data": data}, data.root, run_name="twin-experiment",
                            tags=tags, system_metrics=False):
        for label, row in summary.items():
            mlflow.log_metrics({f"{label}/{n}": v for n, v in row["metrics"].items()}
                               | {f"{label}/seconds_per_cycle": row["seconds_per_cycle"]})
        for label, by in ratios.items():
            mlflow.log_metrics({f"ratio/{label}/{w}": e.value for w, e in by.items()})
        for path in (layout.ASSIMILATION, layout.ASSIMILATION_REPORT, layout.ASSIMILATION_FIGURE,
                     layout.ASSIMILATION_PANEL):
            mlflow.log_artifact(str(path))
        mlflow.log_artifacts(str(layout.ASSIMILATION_CURVES), "curves")


# --------------------------------------------------------------------------- one observation file


def assimilate(cfg: AssimilateConfig, data: DataConfig, reference: str, path: str | Path, split: str = "test",
               trajectory: int = 0, members: int | None = None, seed: int = 0,
               output: str | Path = "assimilations/analysis", save_members: bool = False) -> dict[str, object]:
    """Assimilate the observation file ``path`` of trajectory ``trajectory`` of ``split``
    (its first state is the initial condition, the rest of it the truth the plots show) with
    the registered emulator ``reference`` and the filter of ``cfg``, or the registered
    assimilator ``reference`` (its filter, members and encoder; the conditioning entries it
    estimates are hidden from it, and their estimates reported); write ``<output>.h5``:
    ``analysis_mean``, ``analysis_spread``, ``free_mean`` and ``truth`` ``(T, H, W, C)`` at the
    forecast times ``times`` (stored steps), ``members (M, T, H, W, C)`` on request, and
    ``<output>.png``; track the run. Returns a summary."""
    if members is not None and members < 2:
        raise ValueError(f"need --members >= 2; got {members}")
    truth = Truth.load_one(data, split, trajectory)
    states = truth.states[0]  # (C, T, H, W)
    observations = read_checked(path, truth.dataset, truth.channels, states.shape[-2:], states.shape[1])
    uri, model = load_emulator(reference, truth.dataset)
    registered = model.unwrap_python_model()
    forecaster = registered.forecaster
    if isinstance(registered, AssimilatorModel):  # a registered assimilator: its own filter, members, encoder
        assimilator = registered.assimilator
        assimilator = assimilator if members is None else dataclasses.replace(assimilator, members=members)
    else:
        assimilator = LatentAssimilator(forecaster, cfg.filter, cfg.members if members is None else members)
    members = assimilator.members
    stride = forecaster.stride
    steps = (states.shape[1] - 1) // stride
    sensors, values = readings(observations, truth.channels, stride, steps)
    used = int(torch.isfinite(values).any(dim=1).sum())
    if used == 0:
        raise ObservationError(f"{path}: no reading falls on a forecast time (multiples of the emulator's stride, "
                               f"{stride} stored steps, from {stride} to {steps * stride}); times are "
                               f"{observations.times.tolist()[:8]}")
    generator = torch.Generator().manual_seed(seed)
    hidden = [forecaster.condition_names.index(name) for name in assimilator.parameters]
    cond = hide(truth.cond[0], forecaster.condition_names, assimilator.parameters)  # estimated by its encoder
    start = time.perf_counter()
    result = assimilator.run(states[:, 0], cond, sensors, values, generator)
    per_cycle = (time.perf_counter() - start) / steps
    latents = result.latents
    estimates = {name: float(result.cond[:, -1, k].mean()) for name, k in zip(assimilator.parameters, hidden)}
    analysis = forecaster.from_space(latents).movedim(2, 1)  # (M, T, C, H, W)
    free = forecaster.forecast(states[None, :, :1], truth.cond, steps, members,
                               seed)[0, :, :, 1:].movedim(2, 1)
    times = [stride * k for k in range(1, steps + 1)]
    target = states[:, times].movedim(1, 0)  # (T, C, H, W)
    scores = {"analysis": vrmse(analysis.mean(dim=0), target).mean(dim=1),
              "free": vrmse(free.mean(dim=0), target).mean(dim=1)}  # (T,)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    well = lambda x: x.movedim(-3, -1).numpy()  # noqa: E731  (..., C, H, W) -> (..., H, W, C)
    output = Path(output)
    with atomic_path(output.with_suffix(".h5")) as tmp, h5py.File(tmp, "w") as f:
        f["analysis_mean"], f["analysis_spread"] = well(analysis.mean(dim=0)), well(analysis.std(dim=0))
        f["free_mean"], f["truth"], f["times"] = well(free.mean(dim=0)), well(target), np.array(times)
        if save_members:
            f["members"] = well(analysis)
        f.attrs.update({"model": uri, "observations": str(path), "observations_sha256": digest, "split": split,
                        "trajectory": trajectory, "channels": list(truth.channels), "dataset": truth.dataset,
                        "members": members, **{f"estimated_{name}": value for name, value in estimates.items()}})
    c = truth.channels.index("density") if "density" in truth.channels else 0
    figure = output.with_suffix(".png")
    fig = plots.assimilation_panel(target[-1, c].numpy(), free.mean(dim=0)[-1, c].numpy(),
                                   analysis.mean(dim=0)[-1, c].numpy(), analysis.std(dim=0)[-1, c].numpy(),
                                   observations.index, f"{truth.channels[c]} at stored step {times[-1]}: {uri}")
    with atomic_path(figure) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plots.plt.close(fig)
    tags = {"model": uri, "observations": str(path), "observations.sha256": digest}
    with tracking.start_run(STAGE, truth.dataset, {"assimilate": cfg, "data": data}, data.root,
                            run_name="assimilate", tags=tags, system_metrics=False):
        for k, t in enumerate(times):
            mlflow.log_metrics({"vrmse_analysis": float(scores["analysis"][k]),
                                "vrmse_free": float(scores["free"][k])}, step=t)
        mlflow.log_metrics({"seconds_per_cycle": per_cycle, **{f"estimated_{k}": v for k, v in estimates.items()}})
        mlflow.log_artifact(str(figure))
    return {"model": uri, "output": str(output.with_suffix(".h5")), "figure": str(figure), "cycles": steps,
            "readings_used": used, "seconds_per_cycle": per_cycle, "estimated": estimates,
            "vrmse_analysis": float(scores["analysis"].mean()), "vrmse_free": float(scores["free"].mean())}


# --------------------------------------------------------------------------- latentops twin-experiment, assimilate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The twin experiment of the assimilate stage: observe the first assimilate.trajectories trajectories "
        "of assimilate.split with the sensor layout assimilate.layout of sensors.layouts (written under "
        "data/observations/), forecast them with the best evaluated version of each of assimilate.kinds "
        "freely, with the latent ensemble score filter (LD-EnSF; assimilate.filter) through the decoder and "
        "through the layout's observation encoder (assimilate.encoder_filter; estimating assimilate.estimate), "
        "diffusion also guided by MMPS, and Clawpack with the LETKF (assimilate.enkf); score them all: VRMSE "
        "and CRPS by lead window with bootstrap intervals, VRMSE over the free forecast's with a paired "
        "interval, wall time per cycle, the error of the estimated conditioning. Writes "
        "metrics/assimilation.json, metrics/assimilation/*.csv, reports/assimilation.{md,png} and "
        "reports/assimilation_panel.png; one MLflow run.")
    add_quiet(parser)


def main(args: argparse.Namespace) -> int:
    outcome = run(section(args, AssimilateConfig, "assimilate"), section(args, SensorsConfig, "sensors"),
                  section(args, DataConfig, "data"), section(args, SimulateConfig, "simulate"),
                  progress=not args.quiet)
    for label, by in outcome["ratios"].items():
        print(f"twin-experiment: {label}: VRMSE / the free forecast's, by lead window: "
              + ", ".join(f"{w} {ratio}" for w, ratio in by.items()))
    print(f"twin-experiment: seconds per cycle {outcome['seconds_per_cycle']}; LETKF's cycle time over each "
          f"latent method's {outcome['cycle_time_letkf_over']}; through the decoder over through the observation "
          f"encoder {outcome['cycle_time_decoder_over_encoder']}; error of the estimated conditioning "
          f"{outcome['parameter_error']} -> {layout.ASSIMILATION}, {layout.ASSIMILATION_REPORT}")
    return 0


def add_assimilate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the latent ensemble score filter (LD-EnSF; settings: assimilate.filter) with a registered latent "
        "<dataset>-emulator version (by default the 'production' alias), or a registered <dataset>-assimilator "
        "version with its own filter, members and observation encoder (estimating the conditioning entries "
        "it was trained to), on an observation file (HDF5 or CSV, "
        "see `latentops observe`) of one trajectory of data.root, starting from its first state. Readings "
        "at forecast times (multiples of the emulator's stride) are assimilated; the others are ignored and "
        "counted. Writes OUTPUT.h5 (analysis mean and spread, free-forecast mean and truth, (T, H, W, C); "
        "the members with --save-members) and OUTPUT.png (truth and sensors, free forecast, analysis, "
        "spread at the last time); one MLflow run with the model URI and the file's SHA-256.")
    parser.add_argument("--model", default="production",
                        help="alias or version number of <dataset>-emulator, or a models:/ URI of an emulator or of "
                             "an assimilator, e.g. models:/euler_mini-assimilator@production (default: %(default)s)")
    parser.add_argument("--observations", required=True, help="observation file (.h5, .hdf5 or .csv)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--trajectory", type=int, default=0, help="index in the split (default: %(default)s)")
    parser.add_argument("--members", type=int, help="ensemble members (default: assimilate.members)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-members", action="store_true", help="also write every member of the analysis")
    parser.add_argument("--output", default="assimilations/analysis",
                        help="output path without suffix (default: %(default)s)")


def assimilate_main(args: argparse.Namespace) -> int:
    summary = assimilate(section(args, AssimilateConfig, "assimilate"), section(args, DataConfig, "data"),
                         args.model, args.observations, args.split, args.trajectory, args.members,
                         args.seed, args.output, args.save_members)
    estimated = "".join(f"; estimated {name} {value:.4f}" for name, value in summary["estimated"].items())
    print(f"assimilate: {summary['model']}: {summary['cycles']} cycles ({summary['readings_used']} with readings), "
          f"{summary['seconds_per_cycle']:.3f} s per cycle; VRMSE of the analysis {summary['vrmse_analysis']:.3f}, "
          f"of the free forecast {summary['vrmse_free']:.3f}{estimated} -> {summary['output']}, {summary['figure']}")
    return 0
