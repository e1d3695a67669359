"""Stage ``train_emulator@<kind>-<c>`` (and ``train_pixel_solver``): train one window
emulator (the recipe: ``pipelines.recipes.emulator``) on the latents of the trained
autoencoder with ``c`` channels, with the shared training loop, score its rollouts against
persistence, track it, and save it to ``data/models/emulator_<kind>[_c<c>]``
(``pipelines.recipes.artifact``; the ``register`` stage registers it as a forecaster version
of ``<dataset>-emulator``, bundled with its autoencoder's registered version).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import mlflow

from models.forecaster import Forecaster
from models.kinds import emulator_kinds, kind as kind_of
from pipelines import layout
from pipelines.data.validate import ensure_valid
from pipelines.data.windows import WellWindows, trajectories
from pipelines.evaluation.scoring import Persistence, Scores, Truth, score_baseline, score_forecaster, window_label
from pipelines.options import add_quiet, add_steps, channels, section, steps_override
from pipelines.recipes import artifact
from pipelines.recipes.emulator import build, latent_windows, objective, pixel_windows
from pipelines.recipes.training import TrainResult
from pipelines.settings.data import DataConfig
from pipelines.settings.emulator import TrainEmulatorConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.stages.runner import Finished, StageSummary, TrainingJob, run_training
from pipelines.tracking import runs as tracking

STAGE = "train_emulator"


@dataclass
class Trained:
    """What :func:`run` returns: the summary (also in ``metrics/emulator/<label>.json``) and
    the trained forecaster (``None`` when stopped early)."""

    summary: StageSummary
    forecaster: Forecaster | None = None


def run(cfg: TrainEmulatorConfig, data: DataConfig, cache: CacheLatentsConfig, kind: str,
        latent_channels: int | None = None, progress: bool = True, stop_at: int | None = None) -> Trained:
    """Train, score, track and save one emulator of ``kind`` (``models.kinds``): a latent
    kind with ``latent_channels``, a pixel kind without. ``stop_at`` stops early, leaving a
    checkpoint to resume from."""
    if kind not in emulator_kinds():
        raise ValueError(f"unknown emulator kind {kind!r}; valid kinds are {sorted(emulator_kinds())}")
    latent = kind_of(kind).latent
    if latent == (latent_channels is None):
        raise ValueError(f"{kind}: " + ("needs --latent-channels" if latent else "takes no --latent-channels"))
    cfg.check_window(data, STAGE)
    ensure_valid(data.root)
    scoring = trajectories(data, cfg.score.split)  # the split the rollouts are scored on
    name = layout.emulator(kind, latent_channels)
    label = name.removeprefix("emulator_")
    autoencoder_dir = layout.model_dir(layout.autoencoder(latent_channels)) if latent else None
    space = _space(cfg, data, cache, scoring, latent_channels, autoencoder_dir)
    train_set, valid_set, channels, normalizer, model_cfg, ae_model, ae_tags, cache_path, ae_lineage = space

    model, arguments = build(kind, channels, len(scoring.condition_names), model_cfg, cfg.train.seed)
    tags = {"kind": kind, **ae_tags}

    def lineage() -> None:
        if latent:
            digest, _ = tracking.data_hash(cache_path)
            tracking.log_dataset(cache_path, f"{scoring.dataset_name}-latents-c{latent_channels}", digest)

    job = TrainingJob(STAGE, scoring.dataset_name, name, label, {STAGE: cfg, "data": data}, data.root, model,
                      objective(cfg), train_set, valid_set, cfg.train, tags,
                      {"kind": kind, "latent_channels": ae_tags["latent_channels"],
                       "parameters": sum(p.numel() for p in model.parameters()), "train_windows": len(train_set)},
                      {"validation loss": "val/loss", "validation one-window MSE": "val/window_mse"}, lineage)
    trained: list[Forecaster] = []

    def finish(result: TrainResult, run_id: str, digest: str) -> Finished:
        forecaster = Forecaster(kind, model.eval(), arguments, normalizer, ae_model, data.context + data.horizon,
                                data.stride, cfg.overlap, cfg.sampler, scoring.condition_names)
        truth = Truth.from_windows(scoring, cfg.score.trajectories, data.context)
        scores, _ = score_forecaster(forecaster, truth, cfg.score)
        persistence = score_baseline(Persistence(), truth, cfg.score, data.stride)
        rollout = _rollout_summary(scores, persistence, cfg)
        mlflow.log_metrics(rollout)
        _log_scores(scores, persistence, cfg.score.split)
        initial = truth.initial(data.stride)[:1].permute(0, 2, 3, 4, 1)  # (1, K, H, W, C): the input example
        rollout_curves = {"split": cfg.score.split, "leads": list(scores.leads),
                          "vrmse": scores.by_lead("vrmse").tolist(), "persistence": persistence.by_lead("vrmse").tolist()}
        saved = artifact.Trained(kind, model, arguments, run_id, digest, tags,
                        {"normalizer": normalizer.to_dict(), "settings": forecaster.settings(),
                         "autoencoder": ae_lineage, "rollout": rollout_curves},
                        {"states": initial, "cond": truth.cond[:1]})
        trained.append(forecaster)
        rows = [f"{lead},{m:.6g},{p:.6g}" for lead, m, p in zip(scores.leads, scores.by_lead("vrmse").tolist(),
                                                                 persistence.by_lead("vrmse").tolist())]
        return Finished(saved, {"kind": kind, "latent_channels": latent_channels,
                                **{k.replace("/", "_"): round(v, 5) for k, v in rollout.items()}},
                        (layout.emulator_rollout(name), "\n".join(["lead,vrmse,persistence", *rows]) + "\n"))

    summary = run_training(job, finish, layout.emulator_summary(name), progress, stop_at)
    return Trained(summary, trained[0] if trained else None)


def _space(cfg: TrainEmulatorConfig, data: DataConfig, cache: CacheLatentsConfig, scoring: WellWindows,
           latent_channels: int | None, autoencoder_dir: Path | None) -> tuple:
    """The emulator's space: ``(train_set, valid_set, channels, normalizer, model config,
    autoencoder network or None, autoencoder tags, latent cache or None, autoencoder lineage
    or None)``; the lineage (which trained autoencoder, by directory and training run) lets
    the ``register`` stage bundle its registered version."""
    if autoencoder_dir is not None:
        autoencoder = artifact.load_autoencoder(autoencoder_dir)
        cache_path = layout.latent_cache(cache.output, latent_channels)
        train_set, valid_set = latent_windows(cache_path, autoencoder.run_id, data)
        tags = {"latent_channels": str(latent_channels), "compression_rate": f"{autoencoder.model.compression_rate:g}"}
        return (train_set, valid_set, latent_channels, autoencoder.normalizer, cfg.latent, autoencoder.model, tags,
                cache_path, {"model": autoencoder.name, "run_id": autoencoder.run_id})
    if any(n % cfg.pixel.patch for n in scoring.resolution):
        raise ValueError(f"{STAGE}.pixel.patch: {cfg.pixel.patch} does not divide the resolution "
                         f"{list(scoring.resolution)}")
    train_set, valid_set = (pixel_windows(data, split) for split in ("train", "valid"))
    tags = {"latent_channels": "none", "compression_rate": "1", "autoencoder_version": "none"}
    return train_set, valid_set, len(scoring.channels), scoring.normalizer, cfg.pixel, None, tags, None, None


def _rollout_summary(scores: Scores, persistence: Scores, cfg: TrainEmulatorConfig) -> dict[str, float]:
    """``rollout_<split>/``: VRMSE, spread-skill and persistence by lead window, time."""
    windows = list(cfg.score.lead_windows)
    summary, baseline = scores.summary(windows), persistence.summary(windows)
    prefix = f"rollout_{cfg.score.split}"
    out = {f"{prefix}/seconds_per_trajectory": summary["seconds_per_trajectory"]}
    for first, last in windows:
        w = window_label(first, last)
        out[f"{prefix}/vrmse_{w}"] = summary[f"vrmse_{w}"]
        out[f"{prefix}/persistence_{w}"] = baseline[f"vrmse_{w}"]
        if f"spread_skill_{w}" in summary:
            out[f"{prefix}/spread_skill_{w}"] = summary[f"spread_skill_{w}"]
    return out


def _log_scores(scores: Scores, persistence: Scores, split: str) -> None:
    """Rollout VRMSE per lead as step metrics (lead = step); the ``register`` stage plots them."""
    curve, baseline = scores.by_lead("vrmse").tolist(), persistence.by_lead("vrmse").tolist()
    for lead, model, repeat in zip(scores.leads, curve, baseline):
        mlflow.log_metrics({f"rollout_{split}/vrmse": model, f"rollout_{split}/persistence": repeat}, step=lead,
                           synchronous=False)


# --------------------------------------------------------------------------- latentops train-emulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a latent emulator (diffusion or solver, on the latent cache of --latent-channels) or the "
        "pixel-space neural solver with the shared training loop; score its rollouts against persistence "
        "on train_emulator.score.split; track it in MLflow and save it to data/models/emulator_<kind>[_c<C>] "
        "(`latentops register` registers it as a forecaster version of <dataset>-emulator). Resumes from its latest checkpoint if a previous run was interrupted.")
    add_quiet(parser)
    parser.add_argument("--kind", required=True, choices=emulator_kinds(), help="emulator kind")
    parser.add_argument("--latent-channels", type=channels, help="latent channels c of the autoencoder and cache "
                                                                 "(latent kinds only; 'none' = not given)")
    add_steps(parser, "train_emulator")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, TrainEmulatorConfig, "train_emulator", steps_override(args))
    data = section(args, DataConfig, "data")
    cache = section(args, CacheLatentsConfig, "cache_latents")
    summary = run(cfg, data, cache, args.kind, args.latent_channels, progress=not args.quiet).summary
    if summary.rank:  # a torchrun worker: rank 0 reports
        return 0
    split = cfg.score.split
    scores = ", ".join(f"{key.split('vrmse_')[1]}: {value:.3f} (persistence {summary[key.replace('vrmse', 'persistence')]:.3f})"
                       for key, value in summary.values.items() if key.startswith(f"rollout_{split}_vrmse_"))
    print(f"train_emulator: {layout.emulator(args.kind, args.latent_channels)} saved to {summary['model']}; "
          f"{split} rollout VRMSE by lead window: {scores}")
    return 0
