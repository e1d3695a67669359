"""Every artifact of the pipeline, named once, relative to the repository root.

- ``checkpoints/<dataset>/<model>/``: checkpoints of runs in progress (git-ignored);
- ``data/models/<model>/``: what a training stage made: weights and what rebuilds them (DVC output,
  ``pipelines.recipes.artifact``);
- ``data/registry/<model>/``: its registered version, exported by the ``register`` stage (DVC output);
- ``<cache_latents.output>/c<c>/``: the latent cache of the autoencoder with ``c`` channels;
- ``metrics/``: stage summaries, curves and the evaluation (DVC metrics and plots, in git);
- ``reports/``: the comparison report;
- ``data/observations/<split>_<trajectory>.h5``: synthetic observations (``latentops observe``).

``<model>`` is :func:`autoencoder`, :func:`emulator`, :func:`obs_encoder` or :func:`assimilator`. The dataset's name comes from its HDF5
files alone (``dataset_name``): paths under ``data/`` do not contain it, so pointing
``data.root`` at another dataset keeps DVC's outputs and the files the code writes the same.
``dvc.yaml`` spells these paths with its ``${...}`` parameters; ``tests/code/test_layout.py``
checks them against this module.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSIMILATION", "ASSIMILATION_CURVES", "ASSIMILATION_FIGURE", "ASSIMILATION_PANEL", "ASSIMILATION_REPORT",
           "CHECKPOINTS", "COMPARISON_FIGURE", "COMPARISON_REPORT", "EVALUATION", "EVALUATION_CURVES", "METRICS", "MODELS", "OBSERVATIONS", "PROMOTION", "REGISTRY", "REPORTS",
           "SIMULATE_SUMMARY", "SWEEP", "SWEEP_CURVES", "SWEEP_FIGURE", "assimilator", "autoencoder", "autoencoder_curve", "autoencoder_summary", "checkpoint_dir",
           "emulator", "emulator_rollout", "emulator_summary", "latent_cache", "model_dir", "obs_encoder",
           "obs_encoder_curve", "obs_encoder_summary", "observations", "registered_dir"]

CHECKPOINTS = Path("checkpoints")
MODELS = Path("data") / "models"
REGISTRY = Path("data") / "registry"
OBSERVATIONS = Path("data") / "observations"
METRICS = Path("metrics")
REPORTS = Path("reports")
SIMULATE_SUMMARY = METRICS / "simulate.yaml"
EVALUATION = METRICS / "evaluation.json"
EVALUATION_CURVES = METRICS / "evaluation"
COMPARISON_REPORT = REPORTS / "comparison.md"
COMPARISON_FIGURE = REPORTS / "comparison.png"
PROMOTION = METRICS / "promotion.json"
ASSIMILATION = METRICS / "assimilation.json"
ASSIMILATION_CURVES = METRICS / "assimilation"
ASSIMILATION_REPORT = REPORTS / "assimilation.md"
ASSIMILATION_FIGURE = REPORTS / "assimilation.png"
ASSIMILATION_PANEL = REPORTS / "assimilation_panel.png"
SWEEP = METRICS / "sweep_observations.json"
SWEEP_CURVES = METRICS / "sweep_observations"
SWEEP_FIGURE = REPORTS / "sweep_observations.png"


def autoencoder(latent_channels: int) -> str:
    """``autoencoder_c<c>``."""
    return f"autoencoder_c{latent_channels}"


def emulator(kind: str, latent_channels: int | None) -> str:
    """``emulator_<kind>_c<c>`` for a latent emulator, ``emulator_<kind>`` for a pixel one."""
    return f"emulator_{kind}" if latent_channels is None else f"emulator_{kind}_c{latent_channels}"


def observations(split: str, trajectory: int) -> Path:
    return OBSERVATIONS / f"{split}_{trajectory}.h5"


def checkpoint_dir(dataset: str, model: str) -> Path:
    return CHECKPOINTS / dataset / model


def model_dir(model: str) -> Path:
    """What the training stage of ``model`` made (a DVC output)."""
    return MODELS / model


def registered_dir(model: str) -> Path:
    """The exported copy of ``model``'s registered version (the ``register`` stage's output)."""
    return REGISTRY / model


def latent_cache(output: str | Path, latent_channels: int) -> Path:
    """The latent cache of ``c`` channels under ``cache_latents.output``."""
    return Path(output) / f"c{latent_channels}"


def autoencoder_summary(latent_channels: int) -> Path:
    return METRICS / "autoencoder" / f"c{latent_channels}.json"


def autoencoder_curve(latent_channels: int) -> Path:
    return METRICS / "autoencoder" / f"c{latent_channels}_curve.csv"


def _emulator_label(model: str) -> str:
    return model.removeprefix("emulator_")


def emulator_summary(model: str) -> Path:
    return METRICS / "emulator" / f"{_emulator_label(model)}.json"


def emulator_rollout(model: str) -> Path:
    return METRICS / "emulator" / f"{_emulator_label(model)}_rollout.csv"


def obs_encoder(layout: str, latent_channels: int) -> str:
    """``obs_encoder_<layout>_c<c>``: the observation encoder of sensor layout ``layout``
    into the latents of the autoencoder with ``c`` channels."""
    return f"obs_encoder_{layout}_c{latent_channels}"


def obs_encoder_summary(model: str) -> Path:
    return METRICS / "obs_encoder" / f"{model.removeprefix('obs_encoder_')}.json"


def obs_encoder_curve(model: str) -> Path:
    return METRICS / "obs_encoder" / f"{model.removeprefix('obs_encoder_')}_curve.csv"


def assimilator(name: str) -> str:
    """``assimilator_<name>``: the registered assimilator ``name`` of ``register_assimilator.assimilators``."""
    return f"assimilator_{name}"
