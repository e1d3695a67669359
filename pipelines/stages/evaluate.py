"""Stage ``evaluate``: score every registered version the same way, from the Model Registry.

For every version of ``<dataset>-autoencoder``, ``<dataset>-emulator`` and
``<dataset>-assimilator`` that has no result for the current evaluation key (a digest of the
test data, of the ``evaluate:`` settings and of the scoring code and ``models/``), this stage

- reconstructs (autoencoders) or forecasts (emulators: ``members`` members each) the first
  ``trajectories`` trajectories of ``evaluate.split`` from their first state, at the
  emulators' lead times (every ``data.stride`` stored steps, up to the last lead window);
  an assimilator assimilates the first ``assimilation_trajectories`` of them, observed by
  its own sensor layout, its estimated conditioning hidden from it (the twin experiment,
  ``pipelines.evaluation.twin``: also the wall time per cycle and the estimates' errors);
- scores them per trajectory and lead time with one metric suite (``pipelines.evaluation.scoring``):
  VRMSE of the ensemble mean (the headline) and member-averaged, the fair CRPS, the
  spread-skill ratio (ensembles), power-spectrum RMSE per band, each against the ground
  truth and, for latent emulators, against the auto-encoded truth ``D(E(x))``;
- logs them to a child MLflow run (nested under one evaluation run; the lead time is the
  step), with plots (VRMSE vs lead, power spectra, rollout panels per field, an animation,
  the rank histogram of ensembles) and the scorecard (``scorecard.json``);
- tags the model version with its headline number and interval, the evaluation status, key
  and run (``eval.*``), and rewrites its model card (``pipelines.tracking.cards``): the
  scorecard, every number with its bootstrap interval over trajectories, beside the
  baselines' on the same trajectories (emulators).

The baselines (persistence, the conserved mean, climatology) are scored by the same code on
the same trajectories. Then it writes ``metrics/evaluation.json`` (every version evaluated
under the current key, and the baselines), one lead-time CSV per row under
``metrics/evaluation/`` (``dvc plots``), and the comparison report of the forecasts with the
paper's findings (``pipelines.evaluation.report``). ``--force`` re-evaluates every version.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mlflow
import torch
from tqdm import tqdm

from models.kinds import AUTOENCODER, emulator_kinds
from models.forecaster import Forecaster
from pipelines import layout, plots
from pipelines.data.observations import Layout
from pipelines.data.validate import ensure_valid
from pipelines.data.windows import trajectories
from pipelines.evaluation import metrics, report, scoring, twin
from pipelines.evaluation.key import evaluation_key
from pipelines.evaluation.scorecard import Result, Scorecard
from pipelines.evaluation.scoring import (AE_TRUTH, Baseline, Climatology, ConservedMean, Persistence, Scores, Truth,
                               curve_table, score_autoencoder, score_baseline, score_forecaster,
                               window_label)
from pipelines.io import atomic_path, write_json, write_text
from pipelines.options import add_quiet, section
from pipelines.settings.data import DataConfig
from pipelines.settings.evaluation import EvaluateConfig
from pipelines.tracking import cards, evaluations
from pipelines.tracking import runs as tracking
from pipelines.tracking.cards import ASSIMILATOR, BASELINES_FILE, EVAL, SCORECARD_FILE
from pipelines.tracking.evaluations import Entry, evaluated, registered
from pipelines.tracking.locks import store_lock
from pipelines.tracking.registry import load_autoencoder, load_pyfunc

STAGE = "evaluate"
CURVE_METRICS = ("vrmse", "crps", "spread_skill")  # per-lead columns of the CSV curves, where defined


# --------------------------------------------------------------------------- what is scored


def baselines(data: DataConfig) -> list[Baseline]:
    """The trivial forecasts in every comparison: persistence, the conserved mean, and the
    climatology of the training split."""
    return [Persistence(), ConservedMean(), Climatology(trajectories(data, "train"))]


def score_baselines(truth: Truth, cfg: EvaluateConfig, data: DataConfig) -> list[tuple[Result, Scores]]:
    """Each baseline's result row and per-lead scores, on ``truth``."""
    windows = list(cfg.lead_windows)
    rows = []
    for baseline in baselines(data):
        scores = score_baseline(baseline, truth, cfg, data.stride)
        rows.append((Result(baseline.kind, baseline.kind, scores.scorecard(windows, cfg.confidence, cfg.seed)),
                     scores))
    return rows


# --------------------------------------------------------------------------- the stage


def run(cfg: EvaluateConfig, data: DataConfig, force: bool = False, progress: bool = True) -> dict[str, object]:
    """Evaluate every registered version without a result under the current key (all with
    ``force``); write the results, curves and the comparison report. Returns
    ``{"evaluated": [labels], "skipped": [labels], "results": [Result, ...]}``."""
    ensure_valid(data.root)
    key = evaluation_key(cfg, data)
    truth = Truth.load(data, cfg.split, max(cfg.trajectories, cfg.assimilation_trajectories))
    dataset = truth.dataset
    client = tracking.configure()
    base = score_baselines(truth.pick(slice(0, cfg.trajectories)), cfg, data)
    done = []
    with store_lock(STAGE):  # a second evaluate waits, then finds these versions scored
        entries = registered(client, dataset)
        todo = [e for e in entries if force or evaluations.card(e, key) is None]
        if todo:
            with tracking.start_run(STAGE, dataset, {STAGE: cfg, "data": data}, data.root, run_name="evaluate",
                                    tags={"evaluation_key": key}, system_metrics=False):
                for entry in tqdm(todo, desc="evaluate", unit="version", disable=not progress):
                    _evaluate_one(client, entry, dataset, truth, cfg, data.stride, key, base)
                    done.append(entry.label)
                results = evaluated(client, dataset, key) + [result for result, _ in base]
                for path in _write_outputs(results, base, cfg, truth.boundaries[: cfg.trajectories]):
                    mlflow.log_artifact(str(path), "report")
        else:
            results = evaluated(client, dataset, key) + [result for result, _ in base]
            _write_outputs(results, base, cfg, truth.boundaries[: cfg.trajectories])
    return {"evaluated": done, "skipped": [e.label for e in entries if e.label not in done], "results": results}


def _evaluate_one(client: mlflow.MlflowClient, entry: Entry, dataset: str, truth: Truth, cfg: EvaluateConfig,
                  stride: int, key: str, base: list[tuple[Result, Scores]]) -> None:
    """Score ``entry`` in a child run of the active one (metrics, figures, ``scorecard.json``
    and, for an emulator, the ``base``-lines' cards on the same trajectories), then tag the
    version and rewrite its model card."""
    tags = {"stage": STAGE, "model": entry.version.name, "model_version": str(entry.version.version),
            "kind": entry.kind, "latent_channels": entry.latent_channels, "evaluation_key": key}
    with tracking.start_child_run(mlflow.active_run().info.run_id, entry.label, tags) as child:
        truth = truth.pick(slice(0, cfg.assimilation_trajectories if entry.kind == ASSIMILATOR else cfg.trajectories))
        members = entry.version.tags.get("members", cfg.members) if entry.kind == ASSIMILATOR else cfg.members
        mlflow.log_params({"model_uri": entry.uri, "trajectories": truth.states.shape[0],
                           "members": members, "split": cfg.split, "confidence": cfg.confidence})
        scores, sample, card = _score(entry, dataset, truth, cfg, stride)
        _log_scores(scores)
        _log_figures(scores, truth, stride, sample, entry.label)
        mlflow.log_metrics(_flat(card))
        mlflow.log_dict(card.to_dict(), SCORECARD_FILE)
        if entry.kind in emulator_kinds():  # scored on the baselines' trajectories: the card shows them side by side
            mlflow.log_dict({result.label: result.card.to_dict() for result, _ in base}, BASELINES_FILE)
    new = cards.evaluation_tags(card, key, child.info.run_id)
    for stale in set(entry.version.tags) - set(new):
        if stale.startswith(EVAL):  # from an earlier evaluation: another headline window, or an older layout
            client.delete_model_version_tag(entry.version.name, entry.version.version, stale)
    for name, value in new.items():
        client.set_model_version_tag(entry.version.name, entry.version.version, name, value)
    cards.refresh(client, entry.version.name, entry.version.version)


def _score(entry: Entry, dataset: str, truth: Truth, cfg: EvaluateConfig, stride: int
           ) -> tuple[Scores, torch.Tensor, Scorecard]:
    """The version's per-lead scores, trajectory 0's (first member's) prediction ``(T, C, H,
    W)`` and its scorecard."""
    windows = list(cfg.lead_windows)
    if entry.kind == AUTOENCODER:
        scores, sample = score_autoencoder(load_autoencoder(dataset, entry.version.version), truth, cfg, stride)
    elif entry.kind == ASSIMILATOR:
        model = load_pyfunc(entry.uri).unwrap_python_model()
        result = twin.score_assimilator(model.assimilator, Layout.from_dict(model.layout, truth.channels), truth,
                                        cfg.last_lead, cfg.seed)
        return result.scores, result.sample, result.scorecard(windows, cfg.confidence, cfg.seed)
    else:
        forecaster: Forecaster = load_pyfunc(entry.uri).unwrap_python_model().forecaster
        scores, sample = score_forecaster(forecaster, truth, cfg)
    return scores, sample, scores.scorecard(windows, cfg.confidence, cfg.seed)


def _flat(card: Scorecard) -> dict[str, float]:
    """The card as run metrics: each value, and ``<name>_low`` / ``<name>_high``."""
    out = {"seconds_per_trajectory": card.seconds}
    for name, estimate in card.estimates.items():
        out |= {name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high}
    return out


def _log_scores(scores: Scores) -> None:
    """Per-lead metrics (means over trajectories, and fields or bands) with the lead time as
    the step, so the UI plots them as curves; VRMSE also per field."""
    for i, lead in enumerate(scores.leads):
        values = {}
        for name, tensor in scores.values.items():
            per = tensor[:, i].double().mean(dim=0)  # (K,)
            if name.endswith(scoring.SpectrumRMSE.name):
                values |= {f"{name}_{band}": float(per[k]) for k, band in enumerate(scores.labels[name])}
            else:
                values[name] = float(per.mean())
            if name == scoring.EnsembleMeanVRMSE.name:
                values |= {f"{name}/{field}": float(per[k]) for k, field in enumerate(scores.labels[name])}
        mlflow.log_metrics(values, step=lead, synchronous=False)


def _log_figures(scores: Scores, truth: Truth, stride: int, prediction: torch.Tensor, label: str) -> None:
    """``prediction``: trajectory 0 (member 0), ``(T, C, H, W)``."""
    leads = scores.leads
    channels = scores.labels["vrmse"]
    per_field = scores.values["vrmse"].double().mean(dim=0)  # (T, C)
    series = {"mean": (leads, scores.by_lead("vrmse").tolist())}
    series.update({name: (leads, per_field[:, c].tolist()) for c, name in enumerate(channels)})
    if f"{AE_TRUTH}vrmse" in scores.values:
        series["mean, against D(E(x))"] = (leads, scores.by_lead(f"{AE_TRUTH}vrmse").tolist())
    tracking.log_figure(plots.curves(series, f"{label}: VRMSE of the ensemble mean", "VRMSE",
                                     xlabel="lead time (stored steps)"), "plots/vrmse_vs_lead.png")
    if scores.ranks is not None:
        tracking.log_figure(plots.rank_histogram(scores.ranks.numpy(), f"{label}: rank histogram, every lead"),
                            "plots/rank_histogram.png")
    target = truth.targets(stride, leads)[0]  # (T, C, H, W)
    picks = sorted({0, len(leads) // 2, len(leads) - 1})
    k, p_true = metrics.isotropic_spectrum(target[picks])
    _, p_pred = metrics.isotropic_spectrum(prediction[picks])
    tracking.log_figure(plots.spectra(k.numpy(), p_true.numpy(), p_pred.numpy(), [leads[i] for i in picks],
                                      channels, f"{label}: power spectra, trajectory 0"), "plots/spectra.png")
    panel = sorted({0, len(leads) // 4, len(leads) // 2, len(leads) - 1})
    for c, name in enumerate(channels):
        tracking.log_figure(plots.rollout_panel(target[panel, c].numpy(), prediction[panel, c].numpy(),
                                                [leads[i] for i in panel], f"{label}: {name}, trajectory 0"),
                            f"plots/rollout_{name}.png")
    c = 1 if len(channels) > 1 else 0  # density, in Euler's channel order
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"rollout_{channels[c]}.gif"
        plots.rollout_animation(target[:, c].numpy(), prediction[:, c].numpy(), leads, channels[c], str(path))
        mlflow.log_artifact(str(path), "plots")


def _write_outputs(results: list[Result], base: list[tuple[Result, Scores]], cfg: EvaluateConfig,
                   boundaries: list[str]) -> list[Path]:
    """``metrics/evaluation.json``, ``metrics/evaluation/<label>.csv`` (per-lead curves:
    from each version's evaluation run, and of the baselines) and the comparison report
    (``boundaries``: each scored trajectory's boundary type); returns the report's paths."""
    write_json(layout.EVALUATION, {r.label: r.summary() for r in results})
    client = mlflow.MlflowClient()
    with atomic_path(layout.EVALUATION_CURVES) as tmp:
        tmp.mkdir(parents=True)
        for r in results:
            if r.run_id:
                columns = {n: {m.step: m.value for m in client.get_metric_history(r.run_id, n)} for n in CURVE_METRICS}
                write_text(tmp / f"{r.label}.csv", curve_table(columns, CURVE_METRICS))
        for r, scores in base:
            columns = {n: dict(zip(scores.leads, scores.by_lead(n).tolist())) for n in CURVE_METRICS
                       if n in scores.values}
            write_text(tmp / f"{r.label}.csv", curve_table(columns, CURVE_METRICS))
    forecasts = [r for r in results if r.kind != ASSIMILATOR]
    return report.write(forecasts, [window_label(a, b) for a, b in cfg.lead_windows], cfg.confidence, boundaries)


# --------------------------------------------------------------------------- latentops evaluate, compare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Query the Model Registry for every version of <dataset>-autoencoder, <dataset>-emulator and "
        "<dataset>-assimilator and evaluate each one that has no result for the current test data, "
        "evaluate settings and scoring code: VRMSE of the ensemble mean, member VRMSE, fair CRPS, "
        "spread-skill and power-spectrum RMSE per trajectory and lead time, against the truth and the "
        "auto-encoded truth, with bootstrap intervals; the same for the baselines (persistence, conserved "
        "mean, climatology). Assimilators: the twin experiment on the first "
        "evaluate.assimilation_trajectories trajectories, observed by each one's sensor layout, with the "
        "wall time per cycle and the error of the conditioning it estimates. One nested MLflow run per "
        "version with plots; its scorecard as eval.* tags on the version; metrics/evaluation.json, "
        "metrics/evaluation/*.csv and reports/comparison.{md,png} with the paper's findings checked.")
    add_quiet(parser)
    parser.add_argument("--force", action="store_true", help="re-evaluate versions that already have a result")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, EvaluateConfig, "evaluate")
    data = section(args, DataConfig, "data")
    outcome = run(cfg, data, force=args.force, progress=not args.quiet)
    print(f"evaluate: evaluated {len(outcome['evaluated'])} version(s) {outcome['evaluated']}; "
          f"{len(outcome['skipped'])} already evaluated under the current data and settings")
    print(f"wrote {layout.EVALUATION}, {layout.EVALUATION_CURVES}/ and {layout.REPORTS}/comparison.md")
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Print the comparison report (the paper's table layout, with intervals, baselines and the "
                          "paper's four findings checked) of every version evaluated under the current evaluate "
                          "settings, read from the Model Registry.")


def compare_main(args: argparse.Namespace) -> int:
    cfg = section(args, EvaluateConfig, "evaluate")
    data = section(args, DataConfig, "data")
    truth = Truth.load(data, cfg.split, cfg.trajectories)
    results = evaluated(tracking.configure(), truth.dataset, evaluation_key(cfg, data))
    results += [result for result, _ in score_baselines(truth, cfg, data)]
    print(report.table(results, [window_label(a, b) for a, b in cfg.lead_windows], cfg.confidence, truth.boundaries),
          end="")
    return 0
