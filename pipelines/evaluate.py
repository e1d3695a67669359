"""Stage ``evaluate``: score every registered version the same way, from the Model Registry.

For every version of ``<dataset>-autoencoder`` and ``<dataset>-emulator`` that has no result
for the current evaluation key (a digest of the test data and of the ``evaluate:`` settings),
this stage

- reconstructs (autoencoders) or forecasts (emulators: ``members`` members each) the first
  ``trajectories`` trajectories of ``evaluate.split`` from their first state, at the
  emulators' lead times (every ``data.stride`` stored steps, up to the last lead window);
- computes per lead time: VRMSE per field, power-spectrum RMSE per band, the spread-skill
  ratio (stochastic emulators), each against the ground truth and, for latent emulators,
  against the auto-encoded truth ``D(E(x))`` (``pipelines.metrics``);
- logs them to a child MLflow run (nested under one evaluation run; the lead time is the
  step), with plots (VRMSE vs lead, power spectra, rollout panels per field, an animation);
- writes the summary onto the model version as ``eval.*`` tags.

Then it writes ``metrics/evaluation.json`` (every version evaluated under the current key),
one lead-time CSV per version under ``metrics/evaluation/`` (``dvc plots``), and the
comparison report (``pipelines.report``). ``--force`` re-evaluates every version.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from torch import Tensor
from tqdm import tqdm

from pipelines import plots, report, tracking
from pipelines.config import DataConfig, EvaluateConfig
from pipelines.forecaster import Forecaster
from pipelines.io import atomic_path, write_json, write_text
from pipelines.metrics import BAND_NAMES, isotropic_spectrum
from pipelines.registry import autoencoder_name, emulator_name, load_autoencoder
from pipelines.scoring import LeadScores, Truth, score_autoencoder, score_forecaster, score_persistence, window_label
from pipelines.validate import ensure_valid
from pipelines.welldata import split_files

STAGE = "evaluate"
TAG = "eval."  # prefix of the evaluation tags on a model version
RESULTS = Path("metrics") / "evaluation.json"
CURVES = Path("metrics") / "evaluation"


# --------------------------------------------------------------------------- what is scored


def evaluation_key(cfg: EvaluateConfig, data: DataConfig) -> str:
    """Digest of the evaluation data (the split's files) and settings: a version evaluated
    under the same key is not evaluated again."""
    digest = hashlib.sha256()
    for path in split_files(data.root, cfg.split):
        digest.update(path.name.encode())
        digest.update(hashlib.md5(path.read_bytes()).digest())
    settings = {**asdict(cfg), "context": data.context, "stride": data.stride, "log_fields": list(data.log_fields)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def baselines(truth: Truth, cfg: EvaluateConfig, stride: int) -> list[dict]:
    """Result rows of the baselines (not registry versions): persistence."""
    metrics = score_persistence(truth, cfg, stride).summary(list(cfg.lead_windows))
    return [{"label": "persistence", "name": "", "version": 0, "kind": "persistence", "latent_channels": "",
             "compression_rate": "", "run_id": "", "metrics": metrics}]


# --------------------------------------------------------------------------- the registry


@dataclass
class Entry:
    """One registered version and what it is: ``kind`` is ``autoencoder`` or an emulator
    kind."""

    version: ModelVersion
    kind: str
    latent_channels: str
    compression_rate: str

    @property
    def label(self) -> str:
        width = "" if self.latent_channels in ("", "none") else f"_c{self.latent_channels}"
        return f"{self.kind}{width}_v{self.version.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.version.name}/{self.version.version}"


def registered(client: mlflow.MlflowClient, dataset: str) -> list[Entry]:
    """Every version of ``<dataset>-autoencoder`` and ``<dataset>-emulator``."""
    entries = []
    for name, default_kind in ((autoencoder_name(dataset), "autoencoder"), (emulator_name(dataset), None)):
        for version in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
            tags = version.tags
            entries.append(Entry(version, default_kind or tags.get("kind", "unknown"), tags.get("latent_channels", ""),
                                 tags.get("compression_rate", "")))
    return entries


def evaluated(client: mlflow.MlflowClient, dataset: str, key: str) -> list[dict]:
    """Results of every version evaluated under ``key``, read back from its tags."""
    results = []
    for entry in registered(client, dataset):
        version = entry.version
        if version.tags.get(f"{TAG}key") != key:
            continue
        metrics = {k[len(TAG):]: float(v) for k, v in version.tags.items()
                   if k.startswith(TAG) and k not in (f"{TAG}key", f"{TAG}run_id")}
        results.append({"label": entry.label, "name": entry.version.name, "version": int(entry.version.version),
                        "kind": entry.kind, "latent_channels": entry.latent_channels,
                        "compression_rate": entry.compression_rate, "run_id": version.tags.get(f"{TAG}run_id", ""),
                        "metrics": metrics})
    return results


# --------------------------------------------------------------------------- the stage


def run(cfg: EvaluateConfig, data: DataConfig, force: bool = False, progress: bool = True) -> dict[str, object]:
    """Evaluate every registered version without a result under the current key (all with
    ``force``); write the results, curves and the comparison report. Returns
    ``{"evaluated": [labels], "skipped": [labels], "results": [...]}``."""
    ensure_valid(data.root)
    key = evaluation_key(cfg, data)
    truth = Truth.load(data, cfg.split, cfg.trajectories)
    dataset = truth.dataset
    client = tracking.configure()
    entries = registered(client, dataset)
    todo = [e for e in entries if force or e.version.tags.get(f"{TAG}key") != key]
    done = []
    if todo:
        with tracking.start_run(STAGE, dataset, {STAGE: cfg, "data": data}, data.root, run_name="evaluate",
                                tags={"evaluation_key": key}, system_metrics=False):
            for entry in tqdm(todo, desc="evaluate", unit="version", disable=not progress):
                _evaluate_one(client, entry, dataset, truth, cfg, data.stride, key)
                done.append(entry.label)
            results = evaluated(client, dataset, key) + baselines(truth, cfg, data.stride)
            paths = _write_outputs(results, cfg)
            for path in paths:
                mlflow.log_artifact(str(path), "report")
    else:
        results = evaluated(client, dataset, key) + baselines(truth, cfg, data.stride)
        _write_outputs(results, cfg)
    return {"evaluated": done, "skipped": [e.label for e in entries if e.label not in done], "results": results}


def _evaluate_one(client: mlflow.MlflowClient, entry: Entry, dataset: str, truth: Truth, cfg: EvaluateConfig,
                  stride: int, key: str) -> None:
    tags = {"stage": STAGE, "model": entry.version.name, "model_version": str(entry.version.version),
            "kind": entry.kind, "latent_channels": entry.latent_channels, "evaluation_key": key}
    with mlflow.start_run(run_name=entry.label, nested=True, tags=tags) as child:
        mlflow.log_params({"model_uri": entry.uri, "trajectories": truth.states.shape[0],
                           "members": cfg.members, "split": cfg.split})
        if entry.kind == "autoencoder":
            autoencoder = load_autoencoder(dataset, entry.version.version)
            scores, sample = score_autoencoder(autoencoder, truth, cfg, stride)
        else:
            forecaster: Forecaster = mlflow.pyfunc.load_model(entry.uri).unwrap_python_model().forecaster
            scores, sample = score_forecaster(forecaster, truth, cfg)
        _log_scores(scores)
        _log_figures(scores, truth, stride, sample, entry.label)
        summary = scores.summary(list(cfg.lead_windows))
        mlflow.log_metrics(summary)
    for name, value in summary.items():
        client.set_model_version_tag(entry.version.name, entry.version.version, f"{TAG}{name}", f"{value:.6g}")
    client.set_model_version_tag(entry.version.name, entry.version.version, f"{TAG}run_id", child.info.run_id)
    client.set_model_version_tag(entry.version.name, entry.version.version, f"{TAG}key", key)


def _log_scores(scores: LeadScores) -> None:
    """Per-lead metrics with the lead time as the step, so the UI plots them as curves."""
    bands = BAND_NAMES[: scores.psrmse.shape[1]]
    for i, lead in enumerate(scores.leads):
        metrics = {"vrmse": float(scores.vrmse[i].mean())}
        metrics.update({f"vrmse/{name}": float(scores.vrmse[i, c]) for c, name in enumerate(scores.channels)})
        metrics.update({f"psrmse_{band}": float(scores.psrmse[i, b]) for b, band in enumerate(bands)})
        if scores.vrmse_ae is not None:
            metrics["ae_truth/vrmse"] = float(scores.vrmse_ae[i].mean())
        if scores.spread_skill is not None:
            metrics["spread_skill"] = float(scores.spread_skill[i])
        mlflow.log_metrics(metrics, step=lead, synchronous=False)


def _log_figures(scores: LeadScores, truth: Truth, stride: int, prediction: Tensor, label: str) -> None:
    """``prediction``: trajectory 0 (member 0), ``(T, C, H, W)``."""
    leads = scores.leads
    series = {"mean": (leads, scores.vrmse.mean(dim=1).tolist())}
    series.update({name: (leads, scores.vrmse[:, c].tolist()) for c, name in enumerate(scores.channels)})
    if scores.vrmse_ae is not None:
        series["mean, against D(E(x))"] = (leads, scores.vrmse_ae.mean(dim=1).tolist())
    tracking.log_figure(plots.curves(series, f"{label}: VRMSE", "VRMSE", xlabel="lead time (stored steps)"),
                        "plots/vrmse_vs_lead.png")
    target = truth.targets(stride, leads)[0]  # (T, C, H, W)
    picks = sorted({0, len(leads) // 2, len(leads) - 1})
    k, p_true = isotropic_spectrum(target[picks])
    _, p_pred = isotropic_spectrum(prediction[picks])
    tracking.log_figure(plots.spectra(k.numpy(), p_true.numpy(), p_pred.numpy(), [leads[i] for i in picks],
                                      scores.channels, f"{label}: power spectra, trajectory 0"), "plots/spectra.png")
    panel = sorted({0, len(leads) // 4, len(leads) // 2, len(leads) - 1})
    for c, name in enumerate(scores.channels):
        tracking.log_figure(plots.rollout_panel(target[panel, c].numpy(), prediction[panel, c].numpy(),
                                                [leads[i] for i in panel], f"{label}: {name}, trajectory 0"),
                            f"plots/rollout_{name}.png")
    c = 1 if len(scores.channels) > 1 else 0  # density, in Euler's channel order
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"rollout_{scores.channels[c]}.gif"
        plots.rollout_animation(target[:, c].numpy(), prediction[:, c].numpy(), leads, scores.channels[c], str(path))
        mlflow.log_artifact(str(path), "plots")


def _write_outputs(results: list[dict], cfg: EvaluateConfig) -> list[Path]:
    """``metrics/evaluation.json``, ``metrics/evaluation/<label>.csv`` (per-lead curves from
    each evaluation run) and the comparison report; returns the report's paths."""
    write_json(RESULTS, {r["label"]: {k: v for k, v in r.items() if k != "label"} for r in results})
    client = mlflow.MlflowClient()
    with atomic_path(CURVES) as tmp:
        tmp.mkdir(parents=True)
        for r in results:
            if not r["run_id"]:
                continue
            history = {m.step: m.value for m in client.get_metric_history(r["run_id"], "vrmse")}
            rows = [f"{lead},{value:.6g}" for lead, value in sorted(history.items())]
            write_text(tmp / f"{r['label']}.csv", "\n".join(["lead,vrmse", *rows]) + "\n")
    return report.write(results, [window_label(a, b) for a, b in cfg.lead_windows])
