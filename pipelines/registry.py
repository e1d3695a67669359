"""Model Registry: registering trained models and loading them back, by name and version.

Registered names are ``<dataset>-autoencoder`` and ``<dataset>-emulator``. A registered
autoencoder carries its normalisation (channels, log transform, mean, std) in the model's
metadata, so it maps physical states to latents anywhere, without the training code's
context; the model's own code (``models/``) travels with it as a code path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import models
from models.autoencoder import Autoencoder
from pipelines.data import FieldNormalizer
from pipelines.io import atomic_path, write_json
from pipelines.tracking import configure, tracking_uri

MODELS_CODE = str(Path(models.__file__).parent)


def autoencoder_name(dataset: str) -> str:
    return f"{dataset}-autoencoder"


def _requirements() -> list[str]:
    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "numpy"]


def register_autoencoder(model: Autoencoder, normalizer: FieldNormalizer, example: torch.Tensor,
                         dataset: str, tags: dict[str, str]) -> ModelVersion:
    """Log ``model`` to the active run and register it as a new version of
    ``<dataset>-autoencoder`` with a signature, an input example (normalised states
    ``(1, C, H, W)``) and ``tags`` on the version."""
    client = configure()
    model = model.cpu().eval()
    example_np = example.cpu().numpy().astype(np.float32)
    with torch.no_grad():
        output = model(example.cpu()).numpy()
    info = mlflow.pytorch.log_model(
        model, name="autoencoder", serialization_format="pickle",
        signature=infer_signature(example_np, output), input_example=example_np,
        registered_model_name=autoencoder_name(dataset), code_paths=[MODELS_CODE],
        pip_requirements=_requirements(),
        metadata={"normalizer": normalizer.to_dict(), "latent_channels": model.latent_channels,
                  "downsampling": model.downsampling},
    )
    version = client.get_model_version(autoencoder_name(dataset), str(info.registered_model_version))
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, str(value))
    return client.get_model_version(version.name, version.version)


@dataclass
class LoadedAutoencoder:
    """A registered autoencoder with its normalisation: physical ``(B, C, H, W)`` states in,
    latents ``(B, c, h, w)`` out, and back. ``name``/``version``/``run_id`` say which
    registered version it is."""

    model: Autoencoder
    normalizer: FieldNormalizer
    name: str
    version: int
    run_id: str

    @torch.no_grad()
    def encode(self, states: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.normalizer.normalize(states, dim=1))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.normalizer.denormalize(self.model.decode(latents), dim=1)


def _load(uri: str, name: str, version: int, run_id: str) -> LoadedAutoencoder:
    model = mlflow.pytorch.load_model(uri, map_location="cpu").eval()
    metadata: dict[str, Any] = mlflow.models.get_model_info(uri).metadata or {}
    return LoadedAutoencoder(model, FieldNormalizer.from_dict(metadata["normalizer"]), name, version, run_id)


def load_autoencoder(dataset: str, version: str | int) -> LoadedAutoencoder:
    """Load version ``version`` of ``<dataset>-autoencoder`` from the registry."""
    client = configure()
    name = autoencoder_name(dataset)
    try:
        model_version = client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"{name} version {version} is not in the Model Registry at {tracking_uri()}; "
                         "train it (latentops train-autoencoder) or point MLFLOW_TRACKING_URI at the "
                         "store that holds it") from None
    return _load(f"models:/{name}/{version}", name, int(version), model_version.run_id or "")


REGISTERED = "registered.json"  # beside MLmodel in an exported version: which version it is


def export_version(name: str, version: str | int, destination: str | Path) -> Path:
    """Copy registered version ``version`` of ``name`` (its MLflow model directory) to
    ``destination``, atomically, with ``registered.json`` naming the version and run.

    The training stages export what they register, so DVC tracks (and pushes) the exact
    model a registry version holds, and the stages after them read it from there."""
    client = configure()
    model_version = client.get_model_version(name, str(version))
    with atomic_path(destination) as tmp:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp))
        write_json(tmp / REGISTERED, {"name": name, "version": int(version), "run_id": model_version.run_id})
    return Path(destination)


def load_exported_autoencoder(directory: str | Path) -> LoadedAutoencoder:
    """Load an autoencoder exported by :func:`export_version`."""
    directory = Path(directory)
    if not (directory / REGISTERED).is_file():
        raise ValueError(f"{directory}: not an exported autoencoder (no {REGISTERED}); run "
                         "`latentops train-autoencoder` for it or pass --version to use the registry")
    info = json.loads((directory / REGISTERED).read_text())
    return _load(str(directory), info["name"], info["version"], info["run_id"])
