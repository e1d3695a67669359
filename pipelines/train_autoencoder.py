"""Stage ``train_autoencoder@<c>``: train one autoencoder of latent width ``c`` on single
states of the data split, track it, and register it as a version of
``<dataset>-autoencoder``.

Loss (``train_autoencoder.loss``), on normalised states ``x`` and reconstructions
``y = D(E(x))`` of shape ``(B, C, H, W)``:

- ``mse``: ``<(y - x)^2>``;
- ``vrmse``: ``mean_{B,C} sqrt(<(y - x)^2> / (Var_{H,W}(x) + eps))``, the VRMSE loss of
  the LoLA code, which weighs every field of every state alike.

Validation reports VRMSE in physical units (mean and median over states, per field), the
paper's reconstruction metric.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from torch import Tensor, nn

from models.autoencoder import Autoencoder
from pipelines import paths, plots, registry, tracking
from pipelines.config import DataConfig, TrainAutoencoderConfig
from pipelines.data import FieldNormalizer, WellWindows, geometric_augmentation
from pipelines.io import write_json, write_text
from pipelines.metrics import summarize, vrmse
from pipelines.training import Batch, checkpoint_extra, distributed, latest_checkpoint, train
from pipelines.validate import ensure_valid

STAGE = "train_autoencoder"


def _states(batch: Batch) -> Tensor:
    return batch["x"][:, :, 0]  # (B, C, 1, H, W) -> (B, C, H, W): windows of one frame


def mse_loss(y: Tensor, x: Tensor) -> Tensor:
    return (y - x).square().mean()


def vrmse_loss(y: Tensor, x: Tensor, eps: float = 1e-2) -> Tensor:
    variance = x.var(dim=(-2, -1), unbiased=False)  # (B, C)
    return ((y - x).square().mean(dim=(-2, -1)) / (variance + eps)).sqrt().mean()


LOSSES = {"mse": mse_loss, "vrmse": vrmse_loss}


@dataclass
class ReconstructionObjective:
    """Reconstruction of single states; validation in physical units."""

    loss_name: str
    normalizer: FieldNormalizer

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x = _states(batch)
        return LOSSES[self.loss_name](model(x), x)

    def validate(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        losses, scores = [], []
        for batch in batches:
            x = _states(batch)
            y = model(x).float()
            losses.append(float(LOSSES[self.loss_name](y, x)))
            truth, recon = self.normalizer.denormalize(x, dim=1), self.normalizer.denormalize(y, dim=1)
            scores.append(vrmse(recon, truth).cpu())  # (B, C)
        metrics = summarize(torch.cat(scores), list(self.normalizer.channels), "val/vrmse")
        metrics["val/loss"] = float(np.mean(losses))
        return metrics


def model_name(latent_channels: int) -> str:
    """``autoencoder_c<c>``: its checkpoints and exported copy (``pipelines.paths``)."""
    return f"autoencoder_c{latent_channels}"


def states(cfg: TrainAutoencoderConfig, data: DataConfig) -> tuple[WellWindows, WellWindows]:
    """Single states of the train split (augmented with ``cfg.augment``) and of the
    valid split, checked against the model's downsampling."""
    ensure_valid(data.root)
    transform = geometric_augmentation() if cfg.augment else None
    train_set = WellWindows(data.root, "train", 1, 0, 1, data.log_fields, transform=transform, cache=data.cache)
    valid_set = WellWindows(data.root, "valid", 1, 0, 1, data.log_fields, cache=data.cache)
    train_set.preload(), valid_set.preload()  # with data.cache: whole trajectories read at once
    cfg.model.check_resolution(train_set.resolution, f"{STAGE}.model.patch")
    return train_set, valid_set


def build(cfg: TrainAutoencoderConfig, channels: int, latent_channels: int) -> Autoencoder:
    """A fresh autoencoder of ``cfg.model``, initialised from ``cfg.train.seed``."""
    torch.manual_seed(cfg.train.seed)
    return Autoencoder(channels, latent_channels, cfg.model.patch, cfg.model.widths, cfg.model.blocks,
                       cfg.model.attention_heads, cfg.model.dropout, cfg.model.bound)


def run(cfg: TrainAutoencoderConfig, data: DataConfig, latent_channels: int, progress: bool = True,
        stop_at: int | None = None) -> dict[str, object]:
    """Train, track and register the autoencoder of width ``latent_channels``.

    Returns the summary also written to ``metrics/autoencoder/c<c>.json`` (registered
    version, run id, final validation metrics); the registered version is also exported to
    ``data/models/<dataset>/autoencoder_c<c>`` for DVC. ``stop_at`` stops early, leaving a
    checkpoint to resume from (used to test resumption).
    """
    train_set, valid_set = states(cfg, data)
    dataset = train_set.dataset_name
    model = build(cfg, len(train_set.channels), latent_channels)
    objective = ReconstructionObjective(cfg.loss, train_set.normalizer)
    directory = paths.checkpoint_dir(dataset, model_name(latent_channels))
    rank, world_size = distributed()
    if rank > 0:  # under torchrun: train beside rank 0, which tracks, checkpoints and registers
        train(model, objective, train_set, valid_set, cfg.train, directory, rank=rank, world_size=world_size,
              stop_at=stop_at, progress=False)
        return {"rank": rank}
    run_id = checkpoint_extra(latest_checkpoint(directory)).get("run_id")
    tags = {"latent_channels": str(latent_channels), "compression_rate": f"{model.compression_rate:g}"}
    with tracking.start_run(STAGE, dataset, {STAGE: cfg, "data": data}, data.root,
                            run_name=f"autoencoder-c{latent_channels}", run_id=run_id, tags=tags) as active:
        if run_id is None:
            mlflow.log_params({"latent_channels": latent_channels, "parameters": sum(p.numel() for p in model.parameters())})
        result = train(model, objective, train_set, valid_set, cfg.train, directory, tracking.tracking_hooks(),
                       extra={"run_id": active.info.run_id}, world_size=world_size, stop_at=stop_at, progress=progress,
                       label=f"{STAGE}@{latent_channels}")
        if result.step < cfg.train.steps:
            return {"step": result.step, "run_id": active.info.run_id, "finished": False}
        final = result.history[-1] if result.history else {}
        mlflow.log_metrics({"train/skipped_steps_total": result.skipped_steps, "train/seconds": result.seconds})
        _log_figures(model, objective, valid_set, result.history, latent_channels)
        example = valid_set[0]["x"][None, :, 0]  # (1, C, H, W)
        digest = mlflow.get_run(active.info.run_id).data.tags["data.hash"]
        version = registry.register_autoencoder(model, train_set.normalizer, example, dataset, {
            **tags, "data_hash": digest, "run_id": active.info.run_id,
            "val_vrmse": f"{final.get('val/vrmse', float('nan')):.5f}",
        })
        summary = {
            "latent_channels": latent_channels, "compression_rate": model.compression_rate,
            "registered_model": version.name, "version": int(version.version), "run_id": active.info.run_id,
            "data_hash": digest, "steps": result.step, "skipped_steps": result.skipped_steps,
            "seconds": round(result.seconds, 1),
            **{k.replace("/", "_"): round(v, 6) for k, v in final.items() if k != "step"},
        }
    registry.export_version(version.name, version.version, paths.model_dir(dataset, model_name(latent_channels)))
    write_json(paths.summary_path("autoencoder", f"c{latent_channels}"), summary)
    _write_curves(latent_channels, result.history)
    shutil.rmtree(directory, ignore_errors=True)  # registered: the checkpoints have served
    return summary


def _log_figures(model: Autoencoder, objective: ReconstructionObjective, valid_set: WellWindows,
                 history: list[dict[str, float]], latent_channels: int) -> None:
    tracking.log_training_curves(history, {"validation loss": "val/loss", "validation VRMSE (physical)": "val/vrmse"},
                                 f"autoencoder c={latent_channels}")
    model.eval()
    norm = objective.normalizer
    for index in (0, len(valid_set) // 2):
        x = valid_set[index]["x"][None, :, 0]  # (1, C, H, W)
        with torch.no_grad():
            y = model(x.to(next(model.parameters()).device)).cpu()
        truth, recon = norm.denormalize(x, dim=1)[0].numpy(), norm.denormalize(y, dim=1)[0].numpy()
        tracking.log_figure(plots.reconstruction_panel(truth, recon, norm.channels,
                                                       f"c={latent_channels}, validation state {index}"),
                            f"plots/reconstruction_{index}.png")


def _write_curves(latent_channels: int, history: list[dict[str, float]]) -> None:
    """Validation curves as CSV for ``dvc plots``."""
    rows = [f"{h['step']},{h['val/loss']:.6g},{h['val/vrmse']:.6g}" for h in history]
    write_text(Path("metrics") / "autoencoder" / f"c{latent_channels}_curve.csv",
               "\n".join(["step,val_loss,val_vrmse", *rows]) + "\n")
