"""Stage ``train_emulator@<kind>-<c>`` (and ``train_pixel_solver``): train one window
emulator with the shared training loop, score its rollouts against persistence, track it,
and register it as a forecaster version of ``<dataset>-emulator``.

- Latent kinds (``diffusion``, ``solver``) train on the latent cache of the autoencoder
  with ``c`` latent channels (``cache_latents@<c>``): windows ``(c, L, h, w)``.
- ``pixel_solver`` trains the same neural solver on normalised pixel windows
  ``(C, L, H, W)``, cut into ``train_emulator.pixel.patch``-sized patches (the LoLA
  baseline).

Windows hold ``L = data.context + data.horizon`` states every ``data.stride`` stored steps.
Each training window gets a random context mask (Poisson size, some flipped backwards,
LoLA section 3); the loss is the emulator's own (denoising score matching or MSE).
Validation reports that loss on fixed masks and the mean squared error of a one-window
forecast from the first state (``val/window_mse``) in the emulator's space.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import mlflow
import numpy as np
import torch
from torch import Tensor, nn

from models.emulators import random_context_mask
from pipelines import paths, plots, registry, tracking
from pipelines.config import (CacheLatentsConfig, DataConfig, EmulatorModelConfig, SamplerConfig,
                              TrainEmulatorConfig)
from pipelines.data import WellWindows, trajectories
from pipelines.forecaster import EMULATORS, Forecaster, emulator_arguments
from pipelines.io import write_json, write_text
from pipelines.latent_data import TrajectoryWindows
from pipelines.registry import LoadedAutoencoder, load_exported_autoencoder
from pipelines.scoring import Persistence, Scores, Truth, score_baseline, score_forecaster, window_label
from pipelines.training import Batch, checkpoint_extra, distributed, latest_checkpoint, train
from pipelines.train_autoencoder import model_name as autoencoder_name
from pipelines.validate import ensure_valid

STAGE = "train_emulator"


@dataclass
class WindowObjective:
    """The emulator's loss on windows ``x (B, C, L, H, W)`` under random context masks."""

    context_rate: float
    flip: float
    sampler: SamplerConfig

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x = batch["x"]
        mask = random_context_mask(x.shape[0], x.shape[2], self.context_rate, self.flip).to(x.device)  # (B, L)
        return model.loss(x, mask, batch["cond"])

    def validate(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        device = batches[0]["x"].device
        losses, errors = [], []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)  # the same masks and noise at every validation
            for batch in batches:
                x, cond = batch["x"], batch["cond"]
                mask = random_context_mask(x.shape[0], x.shape[2], self.context_rate, self.flip).to(device)
                losses.append(float(model.loss(x, mask, cond)))
                first = torch.zeros_like(mask)
                first[:, 0] = True
                y = model.sample(x, first, cond, sampler=self.sampler.name, order=self.sampler.order,
                                 steps=self.sampler.steps)
                errors.append(float((y - x)[:, :, 1:].float().square().mean()))
        return {"val/loss": float(np.mean(losses)), "val/window_mse": float(np.mean(errors))}


def label(kind: str, latent_channels: int | None) -> str:
    """``diffusion_c16``, ``solver_c4``, ``pixel_solver``."""
    return kind if latent_channels is None else f"{kind}_c{latent_channels}"


def model_name(name: str) -> str:
    """``emulator_<label>``: its checkpoints and exported copy (``pipelines.paths``)."""
    return f"emulator_{name}"


def _pixel_windows(data: DataConfig, split: str, window: int, stride: int) -> TrajectoryWindows | WellWindows:
    """Normalised pixel windows: whole trajectories read once into memory with
    ``data.cache`` (small datasets), else streamed window by window through WellDataset."""
    if data.cache:
        return TrajectoryWindows.from_trajectories(trajectories(data, split), window, stride)
    return WellWindows(data.root, split, window, 0, stride, data.log_fields)


def build(kind: str, channels: int, cond_features: int, model: EmulatorModelConfig,
          seed: int) -> tuple[nn.Module, dict[str, int]]:
    """A fresh emulator of ``kind`` (``EMULATORS``) on ``channels`` channels, initialised from
    ``seed``, and its constructor arguments."""
    arguments = emulator_arguments(channels, cond_features, model)
    torch.manual_seed(seed)
    return EMULATORS[kind](**arguments), arguments


def objective(cfg: TrainEmulatorConfig) -> WindowObjective:
    return WindowObjective(cfg.context_rate, cfg.flip, cfg.sampler)


def latent_cache(cache: CacheLatentsConfig, dataset: str, latent_channels: int,
                 autoencoder: LoadedAutoencoder) -> Path:
    """The cache directory of ``c`` latent channels, checked to come from ``autoencoder``."""
    directory = Path(cache.output) / dataset / f"c{latent_channels}"
    if not (directory / "train.h5").is_file():
        raise FileNotFoundError(f"{directory}/train.h5: no latent cache; run `latentops cache-latents "
                                f"--latent-channels {latent_channels}` (or `dvc repro cache_latents@{latent_channels}`)")
    with h5py.File(directory / "train.h5", "r") as f:
        version = int(f.attrs["autoencoder_version"])
    if version != autoencoder.version:
        raise ValueError(f"{directory} was encoded with {autoencoder.name} version {version}, but the exported "
                         f"autoencoder is version {autoencoder.version}; re-run cache-latents for c={latent_channels}")
    return directory


@dataclass
class Trained:
    """What :func:`run` returns: the summary (also in ``metrics/emulator/<label>.json``) and
    the trained forecaster (``None`` when stopped early)."""

    summary: dict[str, object]
    forecaster: Forecaster | None = None


def run(cfg: TrainEmulatorConfig, data: DataConfig, cache: CacheLatentsConfig, kind: str,
        latent_channels: int | None = None, progress: bool = True, stop_at: int | None = None) -> Trained:
    """Train, score, track and register one emulator.

    ``kind`` is ``diffusion`` or ``solver`` with ``latent_channels``, or ``pixel_solver``
    without. The registered version is exported to ``data/models/<dataset>/emulator_<label>``.
    ``stop_at`` stops early, leaving a checkpoint to resume from.
    """
    if kind not in EMULATORS:
        raise ValueError(f"unknown emulator kind {kind!r}; valid kinds are {sorted(EMULATORS)}")
    latent = kind != "pixel_solver"
    if latent == (latent_channels is None):
        raise ValueError(f"{kind}: " + ("needs --latent-channels" if latent else "takes no --latent-channels"))
    cfg.check_window(data, STAGE)
    ensure_valid(data.root)
    window, stride = data.context + data.horizon, data.stride
    scoring = trajectories(data, cfg.score.split)  # the split the rollouts are scored on
    dataset = scoring.dataset_name
    name = label(kind, latent_channels)

    if latent:
        autoencoder = load_exported_autoencoder(paths.model_dir(dataset, autoencoder_name(latent_channels)))
        cache_path = latent_cache(cache, dataset, latent_channels, autoencoder)
        train_files = [cache_path / "train.h5", *sorted(cache_path.glob("train_augmented.h5"))]
        train_set = TrajectoryWindows.from_caches(train_files, window, stride)
        valid_set = TrajectoryWindows.from_caches([cache_path / "valid.h5"], window, stride)
        channels, normalizer, model_cfg = latent_channels, autoencoder.normalizer, cfg.latent
        ae_model, ae_tags = autoencoder.model, {
            "latent_channels": str(latent_channels), "compression_rate": f"{autoencoder.model.compression_rate:g}",
            "autoencoder_version": str(autoencoder.version)}
    else:
        train_set, valid_set = (_pixel_windows(data, split, window, stride) for split in ("train", "valid"))
        channels, normalizer, model_cfg, ae_model = len(scoring.channels), scoring.normalizer, cfg.pixel, None
        ae_tags = {"latent_channels": "none", "compression_rate": "1", "autoencoder_version": "none"}
        size = model_cfg.patch
        if any(n % size for n in scoring.resolution):
            raise ValueError(f"{STAGE}.pixel.patch: {size} does not divide the resolution {list(scoring.resolution)}")

    model, arguments = build(kind, channels, len(scoring.condition_names), model_cfg, cfg.train.seed)
    directory = paths.checkpoint_dir(dataset, model_name(name))
    rank, world_size = distributed()
    if rank > 0:  # under torchrun: train beside rank 0, which tracks, checkpoints, scores and registers
        train(model, objective(cfg), train_set, valid_set, cfg.train, directory, rank=rank, world_size=world_size,
              stop_at=stop_at, progress=False)
        return Trained({"rank": rank})
    run_id = checkpoint_extra(latest_checkpoint(directory)).get("run_id")
    tags = {"kind": kind, **ae_tags}
    with tracking.start_run(STAGE, dataset, {STAGE: cfg, "data": data}, data.root, run_name=name, run_id=run_id,
                            tags=tags) as active:
        if run_id is None:
            mlflow.log_params({"kind": kind, "latent_channels": ae_tags["latent_channels"],
                               "parameters": sum(p.numel() for p in model.parameters()),
                               "train_windows": len(train_set)})
            if latent:
                digest, _ = tracking.data_hash(cache_path)
                tracking.log_dataset(cache_path, f"{dataset}-latents-c{latent_channels}", digest)
        result = train(model, objective(cfg), train_set, valid_set, cfg.train, directory, tracking.tracking_hooks(),
                       extra={"run_id": active.info.run_id}, world_size=world_size, stop_at=stop_at,
                       progress=progress, label=f"{STAGE} {name}")
        if result.step < cfg.train.steps:
            return Trained({"step": result.step, "run_id": active.info.run_id, "finished": False})
        mlflow.log_metrics({"train/skipped_steps_total": result.skipped_steps, "train/seconds": result.seconds})
        tracking.log_training_curves(result.history, {"validation loss": "val/loss",
                                                      "validation one-window MSE": "val/window_mse"}, name)

        forecaster = Forecaster(kind, model.eval(), arguments, normalizer, ae_model, window, stride, cfg.overlap,
                                cfg.sampler, scoring.condition_names)
        truth = Truth.from_windows(scoring, cfg.score.trajectories, data.context)
        scores, _ = score_forecaster(forecaster, truth, cfg.score)
        persistence = score_baseline(Persistence(), truth, cfg.score, stride)
        rollout = _rollout_summary(scores, persistence, cfg)
        mlflow.log_metrics(rollout)
        _log_scores(scores, persistence, name, cfg.score.split)

        example = {"states": truth.initial(stride)[:1].permute(0, 2, 3, 4, 1).numpy(),  # (1, K, H, W, C)
                   "cond": truth.cond[:1].numpy()}
        digest = mlflow.get_run(active.info.run_id).data.tags["data.hash"]
        version = registry.register_forecaster(
            forecaster, paths.model_dir(dataset, autoencoder_name(latent_channels)) if latent else None, example, dataset,
            {**tags, "data_hash": digest, "run_id": active.info.run_id,
             **{k.replace("rollout_", "").replace("/", "_"): f"{v:.5g}" for k, v in rollout.items()
                if "/vrmse_" in k}})
        final = result.history[-1] if result.history else {}
        summary = {
            "kind": kind, "latent_channels": latent_channels, "registered_model": version.name,
            "version": int(version.version), "run_id": active.info.run_id, "data_hash": digest,
            "steps": result.step, "skipped_steps": result.skipped_steps, "seconds": round(result.seconds, 1),
            **{k.replace("/", "_"): round(v, 6) for k, v in final.items() if k != "step"},
            **{k.replace("/", "_"): round(v, 5) for k, v in rollout.items()},
        }
    registry.export_version(version.name, version.version, paths.model_dir(dataset, model_name(name)))
    write_json(paths.summary_path("emulator", name), summary)
    curve, baseline = scores.by_lead("vrmse").tolist(), persistence.by_lead("vrmse").tolist()
    rows = [f"{lead},{m:.6g},{p:.6g}" for lead, m, p in zip(scores.leads, curve, baseline)]
    write_text(Path("metrics") / "emulator" / f"{name}_rollout.csv",
               "\n".join(["lead,vrmse,persistence", *rows]) + "\n")
    shutil.rmtree(directory, ignore_errors=True)  # registered: the checkpoints have served
    return Trained(summary, forecaster)


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


def _log_scores(scores: Scores, persistence: Scores, name: str, split: str) -> None:
    """Rollout VRMSE per lead as step metrics (lead = step) and as a plot."""
    curve, baseline = scores.by_lead("vrmse").tolist(), persistence.by_lead("vrmse").tolist()
    for lead, model, repeat in zip(scores.leads, curve, baseline):
        mlflow.log_metrics({f"rollout_{split}/vrmse": model, f"rollout_{split}/persistence": repeat}, step=lead,
                           synchronous=False)
    tracking.log_figure(plots.curves({name: (scores.leads, curve), "persistence": (scores.leads, baseline)},
                                     f"rollout VRMSE on {split}", "VRMSE (physical, mean over fields)",
                                     xlabel="lead time (stored steps)"), "plots/rollout_vrmse.png")
