"""A registered observation encoder (``models.observation.ObservationEncoder``) as an MLflow
pyfunc (the ``<dataset>-obs-encoder`` versions): its weights as a safetensors state dict
(artifact ``weights``), its constructor arguments and the SHA-256 of its files in its
``model_config`` (:mod:`pipelines.serving.artifacts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

from models.observation import ObservationEncoder
from pipelines.serving.artifacts import load_module, model_files

__all__ = ["ObsEncoderModel", "load_obs_encoder_dir"]


def load_obs_encoder_dir(directory: str | Path) -> ObservationEncoder:
    """The encoder (eval mode, CPU) of the version's MLflow model directory ``directory``, its
    files verified first."""
    return load_module(ObservationEncoder, *model_files(directory))


class ObsEncoderModel(mlflow.pyfunc.PythonModel):
    """The registered form of an observation encoder (MLflow pyfunc): readings ``(B, T, S)``
    (physical units, NaN: missing) in, ``{"latents": (B, T, c, h, w), "parameters": (B, T,
    K)}`` out."""

    _skip_type_hint_validation = True

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = load_module(ObservationEncoder, context.artifacts, context.model_config)

    @torch.no_grad()
    def predict(self, context: Any, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The encoder's latent and parameter estimates of ``model_input``'s readings."""
        latents, parameters, _ = self.model(torch.as_tensor(np.asarray(model_input, dtype=np.float32)))
        return {"latents": latents.numpy(), "parameters": parameters.numpy()}
