"""Stage ``train_obs_encoder@<layout>-<c>``: train LD-EnSF's observation encoder (the recipe:
``pipelines.recipes.obs_encoder``) for one sensor layout of ``sensors.layouts`` into the latents
of the trained autoencoder with ``c`` channels, with the shared training loop; calibrate its
errors on the valid split; track it, and save it to ``data/models/obs_encoder_<layout>_c<c>``
(``pipelines.recipes.artifact``; the ``register`` stage registers it as a version of
``<dataset>-obs-encoder``, tagged with the layout, its autoencoder's version, the data hash).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import mlflow

from models.kinds import OBS_ENCODER
from pipelines import layout as paths
from pipelines.data.validate import ensure_valid
from pipelines.data.windows import trajectories
from pipelines.data.observations import layout_of
from pipelines.options import add_quiet, add_steps, section, steps_override
from pipelines.recipes.artifact import Trained, load_autoencoder
from pipelines.recipes.obs_encoder import EncoderObjective, build, calibrate, sequences
from pipelines.recipes.training import TrainResult
from pipelines.settings.data import DataConfig
from pipelines.settings.latents import CacheLatentsConfig
from pipelines.settings.obs_encoder import TrainObsEncoderConfig
from pipelines.settings.sensors import SensorsConfig
from pipelines.stages.runner import Finished, StageSummary, TrainingJob, run_training
from pipelines.tracking import runs as tracking

STAGE = "train_obs_encoder"


def run(cfg: TrainObsEncoderConfig, sensors: SensorsConfig, data: DataConfig, cache: CacheLatentsConfig,
        layout_name: str, latent_channels: int, progress: bool = True, stop_at: int | None = None) -> StageSummary:
    """Train, calibrate, track and save the encoder of layout ``layout_name`` into the
    latents of the autoencoder with ``latent_channels``. ``stop_at`` stops early, leaving a
    checkpoint to resume from."""
    sensor_layout = sensors.layout(layout_name, "--layout")
    ensure_valid(data.root)
    windows = trajectories(data, "valid")
    autoencoder = load_autoencoder(paths.model_dir(paths.autoencoder(latent_channels)))
    cache_path = paths.latent_cache(cache.output, latent_channels)
    if not (cache_path / "train.h5").is_file():
        raise FileNotFoundError(f"{cache_path}/train.h5: no latent cache; run `latentops cache-latents "
                                f"--latent-channels {latent_channels}` (or `dvc repro cache_latents`)")
    layout = layout_of(layout_name, sensor_layout, windows.channels, windows.resolution)
    train_set, valid_set = (sequences(data, cfg, layout, cache_path, split) for split in ("train", "valid"))
    model = build(train_set, layout, cfg, cfg.train.seed)
    objective = EncoderObjective(cfg.dropout)
    name = paths.obs_encoder(layout_name, latent_channels)
    tags = {"layout": layout_name, "sensors": str(len(layout.channel)), "latent_channels": str(latent_channels),
            "parameters": ",".join(cfg.parameters), "layout_settings": json.dumps(dataclasses.asdict(sensor_layout))}

    def lineage() -> None:
        digest, _ = tracking.data_hash(cache_path)
        tracking.log_dataset(cache_path, f"{windows.dataset_name}-latents-c{latent_channels}", digest)

    job = TrainingJob(STAGE, windows.dataset_name, name, name.removeprefix("obs_encoder_"),
                      {STAGE: cfg, "sensors": sensors, "data": data}, data.root, model, objective, train_set,
                      valid_set, cfg.train, tags,
                      {"layout": layout_name, "sensors": len(layout.channel), "latent_channels": latent_channels,
                       "parameters": sum(p.numel() for p in model.parameters()), "train_sequences": len(train_set)},
                      {"validation latent MSE": "val/latent_mse", "validation parameter MAE": "val/parameter_mae"},
                      lineage)

    def finish(result: TrainResult, run_id: str, digest: str) -> Finished:
        calibration = calibrate(model, valid_set, cfg.shrinkage, cfg.train.seed)
        mlflow.log_metrics({f"calibration/{k}": v for k, v in calibration.items()})
        mlflow.log_dict(layout.to_dict(), "layout.json")
        metadata = {"layout": layout.to_dict(), "parameters": list(cfg.parameters)}
        saved = Trained(OBS_ENCODER, model, model.arguments(), run_id, digest, tags,
                        {"metadata": metadata, "autoencoder": {"model": autoencoder.name, "run_id": autoencoder.run_id}})
        rows = [f"{h['step']},{h['val/latent_mse']:.6g},{h['val/parameter_mae']:.6g}" for h in result.history]
        return Finished(saved, {"layout": layout_name, "latent_channels": latent_channels,
                                  **{k: round(v, 5) for k, v in calibration.items()}},
                        (paths.obs_encoder_curve(name), "\n".join(["step,latent_mse,parameter_mae", *rows]) + "\n"))

    return run_training(job, finish, paths.obs_encoder_summary(name), progress, stop_at)


# --------------------------------------------------------------------------- latentops train-obs-encoder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train LD-EnSF's observation encoder for one sensor layout of sensors.layouts: sequences of its "
        "noisy readings (some dropped at random) to the latents of the trained autoencoder with "
        "--latent-channels (targets: its latent cache) and the conditioning entries "
        "train_obs_encoder.parameters, with the shared training loop; calibrate its errors on the valid "
        "split (the Gaussian likelihood of the encoder route of the latent EnSF); track it in MLflow and "
        "save it to data/models/obs_encoder_<layout>_c<C> (`latentops register` registers it as "
        "<dataset>-obs-encoder, tagged with the layout, the autoencoder version and the data hash). Resumes from its latest checkpoint if a previous run was interrupted.")
    add_quiet(parser)
    parser.add_argument("--layout", required=True, help="sensor layout: a key of sensors.layouts")
    parser.add_argument("--latent-channels", type=int, required=True,
                        help="latent channels c of the autoencoder and cache")
    add_steps(parser, "train_obs_encoder")


def main(args: argparse.Namespace) -> int:
    cfg = section(args, TrainObsEncoderConfig, "train_obs_encoder", steps_override(args))
    sensors = section(args, SensorsConfig, "sensors")
    data, cache = section(args, DataConfig, "data"), section(args, CacheLatentsConfig, "cache_latents")
    summary = run(cfg, sensors, data, cache, args.layout, args.latent_channels, progress=not args.quiet)
    if summary.rank:
        return 0
    print(f"train_obs_encoder: layout {args.layout}, c={args.latent_channels} saved to "
          f"{summary['model']}; on valid: latent RMSE "
          f"{summary['latent_rmse']:.3f}, {', '.join(cfg.parameters)} MAE {summary['parameter_mae']:.4f} "
          f"(at the last reading {summary['parameter_mae_last']:.4f})")
    return 0
