"""Stage ``train_autoencoder@<c>``: train one autoencoder of latent width ``c`` (the recipe:
``pipelines.recipes.autoencoder``) on single states of the data split, track it, and
register it as a version of ``<dataset>-autoencoder``, exported to ``data/models/autoencoder_c<c>``.
"""

from __future__ import annotations

import argparse
import torch

from models.autoencoder import Autoencoder
from pipelines import layout, plots
from pipelines.config import DataConfig, TrainAutoencoderConfig
from pipelines.data.windows import WellWindows
from pipelines.options import add_quiet, add_steps, section, steps_override
from pipelines.recipes.autoencoder import ReconstructionObjective, build, states
from pipelines.recipes.training import TrainResult
from pipelines.stages.runner import Finished, StageSummary, TrainingJob, run_training
from pipelines.tracking import registry
from pipelines.tracking import runs as tracking

STAGE = "train_autoencoder"


def run(cfg: TrainAutoencoderConfig, data: DataConfig, latent_channels: int, progress: bool = True,
        stop_at: int | None = None) -> StageSummary:
    """Train, track and register the autoencoder of width ``latent_channels``.

    Returns the summary also written to ``metrics/autoencoder/c<c>.json`` (registered
    version, run id, final validation metrics). ``stop_at`` stops early, leaving a
    checkpoint to resume from (used to test resumption).
    """
    train_set, valid_set = states(cfg, data)
    model = build(cfg, len(train_set.channels), latent_channels)
    objective = ReconstructionObjective(cfg.loss, train_set.normalizer)
    tags = {"latent_channels": str(latent_channels), "compression_rate": f"{model.compression_rate:g}"}
    job = TrainingJob(STAGE, train_set.dataset_name, layout.autoencoder(latent_channels),
                      f"autoencoder-c{latent_channels}", {STAGE: cfg, "data": data}, data.root, model, objective,
                      train_set, valid_set, cfg.train, tags,
                      {"latent_channels": latent_channels, "parameters": sum(p.numel() for p in model.parameters())},
                      {"validation loss": "val/loss", "validation VRMSE (physical)": "val/vrmse"})

    def finish(result: TrainResult, run_id: str, digest: str) -> Finished:
        _log_reconstructions(model, objective, valid_set, latent_channels)
        example = valid_set[0]["x"][None, :, 0]  # (1, C, H, W)
        version = registry.register_autoencoder(model, train_set.normalizer, example, job.dataset, {
            **tags, "data_hash": digest, "run_id": run_id})  # its scores: the run, then evaluate's eval.* tags
        rows = [f"{h['step']},{h['val/loss']:.6g},{h['val/vrmse']:.6g}" for h in result.history]
        return Finished(version, {"latent_channels": latent_channels, "compression_rate": model.compression_rate},
                        (layout.autoencoder_curve(latent_channels),
                         "\n".join(["step,val_loss,val_vrmse", *rows]) + "\n"))

    return run_training(job, finish, layout.autoencoder_summary(latent_channels), progress, stop_at)


def _log_reconstructions(model: Autoencoder, objective: ReconstructionObjective, valid_set: WellWindows,
                         latent_channels: int) -> None:
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


# --------------------------------------------------------------------------- latentops train-autoencoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Train the autoencoder of one latent width on data.root with the shared training loop, "
                          "track it in MLflow and register it as <dataset>-autoencoder. Resumes from its latest "
                          "checkpoint if a previous run was interrupted.")
    add_quiet(parser)
    parser.add_argument("--latent-channels", type=int, required=True,
                        help="latent channels c (sets the compression rate)")
    add_steps(parser, "train_autoencoder")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, TrainAutoencoderConfig, "train_autoencoder", steps_override(args))
    data = section(args, DataConfig, "data")
    summary = run(cfg, data, args.latent_channels, progress=not args.quiet)
    if summary.rank:  # a torchrun worker: rank 0 reports
        return 0
    print(f"train_autoencoder: c={args.latent_channels} (rate {summary['compression_rate']:g}) registered as "
          f"{summary['registered_model']} version {summary['version']}; validation VRMSE "
          f"{summary.get('val_vrmse', float('nan')):.4f} (median {summary.get('val_vrmse_median', float('nan')):.4f})")
    return 0
