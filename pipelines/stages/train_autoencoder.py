"""Stage ``train_autoencoder@<c>``: train one autoencoder of latent width ``c`` (the recipe:
``pipelines.recipes.autoencoder``) on single states of the data split, track it, and save it
to ``data/models/autoencoder_c<c>`` (``pipelines.recipes.artifact``; the ``register`` stage
registers it as a version of ``<dataset>-autoencoder``).
"""

from __future__ import annotations

import argparse

import torch

from models.kinds import AUTOENCODER
from pipelines import layout
from pipelines.options import add_quiet, add_steps, section, steps_override
from pipelines.recipes.artifact import Trained
from pipelines.recipes.autoencoder import ReconstructionObjective, build, states
from pipelines.recipes.training import TrainResult
from pipelines.settings.autoencoder import TrainAutoencoderConfig
from pipelines.settings.data import DataConfig
from pipelines.stages.runner import Finished, StageSummary, TrainingJob, run_training

STAGE = "train_autoencoder"


def run(cfg: TrainAutoencoderConfig, data: DataConfig, latent_channels: int, progress: bool = True,
        stop_at: int | None = None) -> StageSummary:
    """Train, track and save the autoencoder of width ``latent_channels``.

    Returns the summary also written to ``metrics/autoencoder/c<c>.json`` (the model's
    directory, run id, final validation metrics). ``stop_at`` stops early, leaving a
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
        model.eval()
        shown = torch.stack([valid_set[i]["x"][:, 0] for i in (0, len(valid_set) // 2)])  # (2, C, H, W)
        trained = Trained(AUTOENCODER, model, model.arguments(), run_id, digest, tags,
                          {"normalizer": train_set.normalizer.to_dict(), "shown": [0, len(valid_set) // 2]},
                          {"example": shown[:1], "shown": shown})  # the input example; the states its figures show
        rows = [f"{h['step']},{h['val/loss']:.6g},{h['val/vrmse']:.6g}" for h in result.history]
        return Finished(trained, {"latent_channels": latent_channels, "compression_rate": model.compression_rate},
                        (layout.autoencoder_curve(latent_channels),
                         "\n".join(["step,val_loss,val_vrmse", *rows]) + "\n"))

    return run_training(job, finish, layout.autoencoder_summary(latent_channels), progress, stop_at)


# --------------------------------------------------------------------------- latentops train-autoencoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Train the autoencoder of one latent width on data.root with the shared training loop, "
                          "track it in MLflow and save it to data/models/autoencoder_c<C> (`latentops register` registers it as "
                          "<dataset>-autoencoder). Resumes from its latest checkpoint if a previous run was interrupted.")
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
    print(f"train_autoencoder: c={args.latent_channels} (rate {summary['compression_rate']:g}) saved to "
          f"{summary['model']}; validation VRMSE "
          f"{summary.get('val_vrmse', float('nan')):.4f} (median {summary.get('val_vrmse_median', float('nan')):.4f})")
    return 0
