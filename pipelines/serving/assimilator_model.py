"""The registered assimilator: a :class:`~pipelines.serving.assimilator.LatentAssimilator`
as an MLflow pyfunc (the ``<dataset>-assimilator`` versions).

A version bundles a registered emulator version (its emulator and autoencoder, as the
forecaster pyfunc holds them), the score filter's settings and ensemble size, the sensor
layout it assimilates, and on the encoder route the observation encoder of that layout.

Input: the assimilation request of :func:`~pipelines.serving.assimilator.request`, ``states
(1, 1, H, W, C)``, ``cond (1, P)`` (NaN: unknown; the encoder route estimates its
parameters), ``sensor_channel (S,)``, ``sensor_index (S, 2)``, ``noise_std (S,)``, ``readings
(T, S)``; param ``seed``. Output: ``{"analysis": (1, M, 1 + T, H, W, C)`` (the initial state,
then the analysis members, physical units), ``"cond": (1, M, T, P)}`` (each member's
conditioning at each cycle: the given entries and the estimates of the unknown ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import mlflow
import numpy as np
import torch

from models.assimilation import ScoreFilter
from pipelines.serving.assimilator import LatentAssimilator, physical, request
from pipelines.serving.forecaster import ForecasterModel
from pipelines.serving.observation import load_obs_encoder_dir

__all__ = ["ASSIMILATE_PARAMS", "AssimilatorModel", "settings"]

#: Defaults of the params (also the registered model's ParamSchema).
ASSIMILATE_PARAMS: dict[str, int] = {"seed": 0}


def settings(filter: ScoreFilter, members: int, parameters: Sequence[str], layout: dict[str, Any]) -> dict[str, Any]:
    """The ``model_config`` of a registered assimilator: its score ``filter``, ensemble size
    ``members``, the conditioning entries ``parameters`` its observation encoder estimates
    (none on the decoder route) and the sensor ``layout`` it assimilates
    (``pipelines.data.observations.Layout.to_dict``)."""
    return {"members": members, "filter": asdict(filter), "parameters": list(parameters), "layout": layout}


class AssimilatorModel(ForecasterModel):
    """The registered form of a :class:`LatentAssimilator` (see the module docstring).

    Artifacts: the forecaster's (``emulator``, ``autoencoder``) and, on the encoder route,
    ``obs_encoder`` (the registered encoder version's MLflow model directory); the
    ``model_config`` of :func:`settings` with the forecaster's ``digests`` of every artifact
    file (verified by :meth:`ForecasterModel.load_context` before anything loads).
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        super().load_context(context)
        config = context.model_config
        encoder = None
        if "obs_encoder" in context.artifacts:
            encoder = load_obs_encoder_dir(context.artifacts["obs_encoder"])
        self.layout: dict[str, Any] = config["layout"]
        self.assimilator = LatentAssimilator(self.forecaster, ScoreFilter(**config["filter"]), int(config["members"]),
                                             encoder, tuple(config["parameters"]))

    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The request of the module docstring -> ``{"analysis", "cond"}``."""
        seed = int({**ASSIMILATE_PARAMS, **(params or {})}["seed"])
        initial, cond, sensors, readings = request(self.forecaster, model_input)
        analysis = self.assimilator.run(initial, cond, sensors, readings, torch.Generator().manual_seed(seed))
        return {"analysis": physical(self.forecaster, initial, analysis.latents),
                "cond": analysis.cond[None].cpu().numpy()}
