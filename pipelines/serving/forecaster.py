"""The registered ``<dataset>-emulator`` versions: the MLflow pyfunc form of a
:class:`models.forecaster.Forecaster`.

:class:`ForecasterModel` is the pyfunc: input ``{"states": (B, K, H, W, C), "cond": (B, P)}``
in The Well's channels-last layout, params ``horizon`` (``T``), ``members`` (``M``) and
``seed``; output ``(B, M, K + T, H, W, C)``. With sensor readings among the inputs
(:data:`~pipelines.serving.assimilator.OBSERVATION_INPUTS`) a latent version assimilates them
instead (param ``method``: ``ensf``, the latent score filter, or ``mmps``, guided diffusion):
see :func:`pipelines.serving.assimilator.answer`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from models.autoencoder import Autoencoder
from models.forecaster import FORECAST_PARAMS, Forecaster
from models.networks import network_class
from models.normalizer import FieldNormalizer
from models.samplers import ODESampler
from pipelines.serving.artifacts import verify
from pipelines.serving.assimilator import OBSERVATION_INPUTS, answer
from pipelines.serving.autoencoder import load_autoencoder_dir

__all__ = ["EMULATOR_FILE", "PREDICT_PARAMS", "ForecasterModel", "load_forecaster", "save_emulator"]

EMULATOR_FILE = "emulator.safetensors"

#: Defaults of the params (also the registered model's ParamSchema); ``method`` applies to
#: requests with sensor readings only.
PREDICT_PARAMS: dict[str, int | str] = {**FORECAST_PARAMS, "method": "ensf"}


def save_emulator(forecaster: Forecaster, path: str | Path) -> Path:
    """The forecaster's emulator as a safetensors file: its weights (tensors only; shared
    parameters, as a denoiser's backbone, once) and, in the header's metadata, what rebuilds
    it (constructor arguments, normalisation, :meth:`Forecaster.settings`). The autoencoder
    is stored on its own."""
    settings = {"arguments": forecaster.arguments, "normalizer": forecaster.normalizer.to_dict(),
                **forecaster.settings()}
    save_model(forecaster.emulator.cpu(), str(path), metadata={"forecaster": json.dumps(settings)})
    return Path(path)


def load_forecaster(emulator_path: str | Path, autoencoder: Autoencoder | None) -> Forecaster:
    """Rebuild a :class:`~models.forecaster.Forecaster` from :func:`save_emulator`'s file and
    its autoencoder (no pickle: tensors and JSON only)."""
    with safe_open(str(emulator_path), framework="pt") as f:
        saved = json.loads(f.metadata()["forecaster"])
    emulator = network_class(saved["kind"])(**saved["arguments"])
    load_model(emulator, str(emulator_path))
    return Forecaster(saved["kind"], emulator.eval(), saved["arguments"], FieldNormalizer.from_dict(saved["normalizer"]),
                      autoencoder, saved["window"], saved["stride"], saved["overlap"], ODESampler(**saved["sampler"]),
                      list(saved["condition_names"]))


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """The registered form of a :class:`~models.forecaster.Forecaster` (MLflow pyfunc).

    Artifacts: ``emulator`` (:data:`EMULATOR_FILE`, :func:`save_emulator`) and, for latent emulators, ``autoencoder``
    (the registered autoencoder version's MLflow model directory); ``model_config``:
    ``digests``, the SHA-256 of every artifact file (:mod:`pipelines.serving.artifacts`).
    """

    _skip_type_hint_validation = True  # inputs are validated by the signature given at logging

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Verify every artifact file against the digests logged in ``model_config``, then
        rebuild the forecaster."""
        verify(context.artifacts, context.model_config.get("digests"))
        autoencoder = None
        self.autoencoder_dir: str | None = context.artifacts.get("autoencoder")  # its MLflow model directory
        if self.autoencoder_dir is not None:
            autoencoder = load_autoencoder_dir(self.autoencoder_dir)[0]
        self.forecaster = load_forecaster(context.artifacts["emulator"], autoencoder)
        if torch.cuda.is_available():
            self.forecaster.to("cuda")

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> np.ndarray:
        """``{"states": (B, K, H, W, C), "cond": (B, P)}`` -> ``(B, M, K + T, H, W, C)``; with
        sensor readings among the inputs, their analysis ``(1, M, 1 + T, H, W, C)``."""
        if OBSERVATION_INPUTS & set(model_input):
            return answer(self.forecaster, model_input, {**PREDICT_PARAMS, **(params or {})})
        return self.forecaster.predict(model_input, params)
