"""A registered autoencoder at run time: the network with its normalisation, and its MLflow
pyfunc form (the registered ``<dataset>-autoencoder`` versions).

A version holds the network's weights as a safetensors state dict (artifact ``weights``) and,
in its ``model_config``, the constructor arguments, the normalisation and the SHA-256 of its
files (:mod:`pipelines.serving.artifacts`); :func:`load_autoencoder_files` rebuilds it from
``models/``, wherever it is loaded: a served version, an exported directory, or the directory
bundled in a forecaster or an assimilator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

from models.autoencoder import Autoencoder, LoadedAutoencoder
from models.normalizer import FieldNormalizer
from pipelines.serving.artifacts import load_module, model_files

__all__ = ["AutoencoderModel", "load_autoencoder_dir", "load_autoencoder_files"]


def load_autoencoder_files(artifacts: Mapping[str, str | Path],
                           config: Mapping[str, Any]) -> tuple[Autoencoder, FieldNormalizer]:
    """The autoencoder (eval mode, CPU) and its normalisation from a version's artifacts and
    ``model_config``, its files verified first."""
    return load_module(Autoencoder, artifacts, config), FieldNormalizer.from_dict(config["normalizer"])


def load_autoencoder_dir(directory: str | Path) -> tuple[Autoencoder, FieldNormalizer]:
    """:func:`load_autoencoder_files` of the version's MLflow model directory ``directory``."""
    return load_autoencoder_files(*model_files(directory))


class AutoencoderModel(mlflow.pyfunc.PythonModel):
    """The registered form of an autoencoder (MLflow pyfunc): normalised states ``(B, C, H,
    W)`` in, their reconstruction out."""

    _skip_type_hint_validation = True  # inputs are validated by the signature given at logging

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model, self.normalizer = load_autoencoder_files(context.artifacts, context.model_config)

    @torch.no_grad()
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """The reconstruction ``D(E(x))`` of normalised states ``(B, C, H, W)``."""
        return self.model(torch.as_tensor(np.asarray(model_input, dtype=np.float32))).numpy()
