"""The lifecycle of a training stage, written once: every training stage (autoencoder,
emulator, observation encoder) hands it a :class:`TrainingJob` and a ``finish`` step.

Under ``torchrun``, ranks other than 0 only train. Rank 0 resumes the MLflow run whose id
the latest checkpoint holds (or starts one), trains with the shared loop while logging its
metrics, then calls the stage's ``finish`` (scoring, calibration) inside the run, which
returns the trained model (:class:`~pipelines.recipes.artifact.Trained`). Afterwards it saves
that model for DVC (``layout.model_dir``), writes the summary and the stage's curve CSV, and
removes the checkpoints, which have served. A run stopped early (``stop_at``) keeps its
checkpoints and reports ``finished=False``. Registering the model (its figures, its version,
its card) is the ``register`` stage's job: nothing here imports the registry or the serving
runtime, so editing them retrains nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from torch import nn
from torch.utils.data import Dataset

from pipelines import layout
from pipelines.io import write_json, write_text
from pipelines.recipes.artifact import Trained
from pipelines.recipes.training import (Hooks, Objective, TrainResult, checkpoint_extra, distributed,
                                       latest_checkpoint, train)
from pipelines.settings.training import TrainConfig
from pipelines.tracking import runs as tracking

__all__ = ["Finished", "StageSummary", "TrainingJob", "run_training", "tracking_hooks"]


def tracking_hooks() -> Hooks:
    """Loop hooks that log step and validation metrics to the active run, asynchronously."""

    def log(step: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=step, synchronous=False)

    return Hooks(on_step=log, on_validation=log)


@dataclass
class TrainingJob:
    """What a training stage trains and how it is recorded: ``model`` (a
    ``layout.autoencoder``/``layout.emulator`` name) names its checkpoints and export;
    ``validation`` maps curve labels to validation metric keys; ``params`` are logged once,
    when the run starts."""

    stage: str
    dataset: str
    model_name: str
    run_name: str
    config: Mapping[str, Any]
    data_root: str
    network: nn.Module
    objective: Objective
    train_set: Dataset
    valid_set: Dataset
    train_cfg: TrainConfig
    tags: dict[str, str]
    params: dict[str, Any]
    validation: dict[str, str]
    on_start: Callable[[], None] = lambda: None  # more lineage for a new run (datasets)


@dataclass
class Finished:
    """What a stage's ``finish`` step made: the trained model, the summary entries of its
    own, and its curve CSV (path and text)."""

    trained: Trained
    summary: dict[str, Any]
    curve: tuple[Path, str]


@dataclass
class StageSummary:
    """What :func:`run_training` returns (and writes, as JSON, when ``finished``)."""

    finished: bool
    rank: int = 0
    step: int = 0
    run_id: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # the summary file's entries

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def run_training(job: TrainingJob, finish: Callable[[TrainResult, str, str], Finished], summary_path: Path,
                 progress: bool = True, stop_at: int | None = None) -> StageSummary:
    """Train, track, finish and save ``job``; ``finish(result, run_id, data_hash)`` runs
    inside the MLflow run, after training."""
    directory = layout.checkpoint_dir(job.dataset, job.model_name)
    rank, world_size = distributed()
    if rank > 0:  # under torchrun: train beside rank 0, which tracks, checkpoints and registers
        train(job.network, job.objective, job.train_set, job.valid_set, job.train_cfg, directory, rank=rank,
              world_size=world_size, stop_at=stop_at, progress=False)
        return StageSummary(False, rank=rank)
    resumed = checkpoint_extra(latest_checkpoint(directory)).get("run_id")
    with tracking.start_run(job.stage, job.dataset, job.config, job.data_root, run_name=job.run_name, run_id=resumed,
                            tags=job.tags) as active:
        run_id = active.info.run_id
        if resumed is None:
            mlflow.log_params(job.params)
            job.on_start()
        result = train(job.network, job.objective, job.train_set, job.valid_set, job.train_cfg, directory,
                       tracking_hooks(), extra={"run_id": run_id}, world_size=world_size, stop_at=stop_at,
                       progress=progress, label=f"{job.stage} {job.run_name}")
        if result.step < job.train_cfg.steps:
            return StageSummary(False, step=result.step, run_id=run_id)
        mlflow.log_metrics({"train/skipped_steps_total": result.skipped_steps, "train/seconds": result.seconds})
        digest = mlflow.get_run(run_id).data.tags["data.hash"]
        done = finish(result, run_id, digest)
        final = result.history[-1] if result.history else {}
        values = {
            **done.summary, "model": str(layout.model_dir(job.model_name)), "run_id": run_id, "data_hash": digest,
            "steps": result.step, "skipped_steps": result.skipped_steps,
            "seconds": round(result.seconds, 1),
            **{k.replace("/", "_"): round(v, 6) for k, v in final.items() if k != "step"},
        }
    done.trained.config["curves"] = {"title": job.run_name, "validation": job.validation}  # the register stage plots them
    done.trained.save(layout.model_dir(job.model_name))
    write_json(summary_path, values)
    write_text(*done.curve)
    shutil.rmtree(directory, ignore_errors=True)  # saved: the checkpoints have served
    return StageSummary(True, step=result.step, run_id=run_id, values=values)
