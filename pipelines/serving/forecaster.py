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

from typing import Any

import mlflow
import numpy as np
import torch

from models.forecaster import FORECAST_PARAMS, load_forecaster
from pipelines.serving.artifacts import verify
from pipelines.serving.assimilator import OBSERVATION_INPUTS, answer
from pipelines.serving.autoencoder import load_autoencoder_dir

__all__ = ["EMULATOR_FILE", "PREDICT_PARAMS", "ForecasterModel"]

EMULATOR_FILE = "emulator.pt"

#: Defaults of the params (also the registered model's ParamSchema); ``method`` applies to
#: requests with sensor readings only.
PREDICT_PARAMS: dict[str, int | str] = {**FORECAST_PARAMS, "method": "ensf"}


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """The registered form of a :class:`~models.forecaster.Forecaster` (MLflow pyfunc).

    Artifacts: ``emulator`` (``emulator.pt``) and, for latent emulators, ``autoencoder``
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
